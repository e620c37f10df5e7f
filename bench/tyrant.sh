#!/usr/bin/env bash
# bench/tyrant.sh -- spawn latency of vassals started under another user:
# emperor as its own user, emperor --tyrant, and an exec helper that drops
# privileges then execs (see bench/tyrant.py for what is measured). As root.
#
#   sudo bench/tyrant.sh                 # TRIALS=30 N=1000, table on stdout
#   TRIALS=100 N=5000 sudo -E bench/tyrant.sh
#   SKIP_BUILD=1 EMPEROR=target/debug/emperor bench/tyrant.sh   # an existing binary
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
[[ $(id -u) == 0 ]] || { echo "bench/tyrant.sh: run as root" >&2; exit 1; }
CC=$(command -v cc || command -v gcc) || { echo "bench/tyrant.sh: no C compiler" >&2; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release --bin emperor) >&2
fi
EMPEROR=${EMPEROR:-${CARGO_TARGET_DIR:-$ROOT/target}/release/emperor}
[[ -x $EMPEROR ]] || { echo "bench/tyrant.sh: $EMPEROR not built" >&2; exit 1; }
TMP=/tmp
[[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] && TMP=/dev/shm
WORK=$(mktemp -d "$TMP/emperor-tyrant-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BIN=$WORK/bin
mkdir -p "$BIN"
chmod 755 "$WORK" "$BIN"
cp "$EMPEROR" "$BIN/emperor"
"$CC" -O2 -Wall -o "$BIN/vassal" "$BENCH/vassal.c"
"$CC" -O2 -Wall -o "$BIN/dropexec" "$BENCH/dropexec.c"
HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1048576
ulimit -n $((HARD < 20000 ? HARD : 20000))
python3 "$BENCH/tyrant.py" --emperor "$BIN/emperor" --vassal "$BIN/vassal" --dropexec "$BIN/dropexec" --work "$WORK/run"
