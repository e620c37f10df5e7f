#!/usr/bin/env bash
# bench/run.sh -- emperor and the uWSGI Emperor side by side, in one run.
#
#   bench/run.sh                      # full run (about 25 minutes), table on stdout
#   QUICK=1 bench/run.sh              # about 5 minutes: 5 trials, 1000 vassals, short windows
#   RESULTS=bench/RESULTS.md bench/run.sh   # also write the table there
#
# It builds emperor in release, compiles the trivial C vassal (bench/vassal.c)
# and the fork+exec floor program (bench/forkexec.c), then measures, on the
# same machine, with the same vassal binary, the same workloads, the same
# trials and the same fd limit (set here with `ulimit -n`):
#   - the floor: a bare fork+exec of the vassal until its first instruction;
#     and, before each scale run, N vassals forked back to back and kept
#     running (the floor of that convergence: `forkexec --keep N`);
#   - latencies: spawn, reload, destroy (stop byte received, pid reaped) and
#     respawn after SIGKILL: p50, p90 and max over TRIALS trials;
#   - scale, for each N of SCALE_NS: convergence with N configs present at
#     start, emperor CPU % and RSS over an idle window, time to stop all on SIGTERM;
#   - emperor only: re-adoption of ADOPT_N running vassals after kill -9 of
#     the emperor (uWSGI vassals die with their emperor);
#   - emperor only: new configs and SIGTERM while BURST_N vassals are being
#     started (uWSGI picks up a new config on its next 3 s scan anyway);
#   - emperor only: one row of a PG_N-row pg:// table changed → its vassal
#     reloaded, and the emperor's CPU per change.
# The measurements are in bench/harness.py. Every wait is bounded; every
# process started is tracked (by pid, and by a token in its environment) and
# killed on exit.
#
# Knobs (environment; defaults in brackets, QUICK=1 defaults in braces):
#   TRIALS [20] {5}            latency trials per emperor
#   PERIOD_S [3]               random pre-action delay window (uWSGI's scan period)
#   FREQ []                    uWSGI --emperor-freq (empty: uWSGI's default, 3 s)
#   WAIT_S [15]                bound of each latency wait
#   SCALE_NS ["1000 10000"] {"1000"}   vassal counts of the scale runs
#   SCALE_WAIT_S [300] {60}    bound of each convergence
#   NATIVE_NS ["10000 25000"] {""}   emperor-only scale runs with native vassals (the same binary
#                              run directly, no control socket: no fd per vassal)
#   UWSGI_MAX_N [0]            skip uWSGI scale runs above this N (0: no cap)
#                              (SCALE_NS= or NATIVE_NS= set but empty skips those rows; every
#                              other knob set empty takes its default)
#   SETTLE_S [15] {3}  SETTLE_MAX_S [120] {10}  SETTLE_QUIET_PCT [1]   settle before the idle window
#   IDLE_S [60] {10}           idle window (60 s spans one emperor --resync period)
#   STOP_WAIT_S [120]          bound of each SIGTERM stop
#   ADOPT_N [10000] {200}      re-adoption run size (0 skips it)
#   BURST_N [10000] {1000}     emperor only: new configs written while BURST_N configs present at start
#                              are being started (their spawn latency), then SIGTERM during such a
#                              start (how long starts go on after it); 0 skips it
#   BURST_PROBES [20]          new configs written during that start, one after the other
#   PG_N [10000] {1000}        emperor only: a private PostgreSQL (bench/pg_rows.py) with a pg://
#                              table of PG_N rows, all running; PG_CHANGES [50] {20} rows' ts
#                              updated one after the other → that vassal reloaded, and the
#                              emperor's CPU per change; 0 skips it
#   FLOOR_TRIALS [500] {100}   fork+exec floor trials
#   NOFILE [min(hard limit, 20000)]   `ulimit -n` for both emperors
#   ONLY [] (uwsgi|emperor)    run one side only
#   EMPEROR_ARGS, UWSGI_ARGS   extra arguments for either emperor
#   UWSGI [uwsgi in PATH]      the uWSGI binary
#   SKIP_BUILD [0]             use target/release/emperor as it is
#   RESULTS [] RESULTS_JSON [] also write the table / the raw figures there
#                              (python3 bench/harness.py --render FILE.json prints the table again)
#   BENCH_TMPDIR [/dev/shm if tmpfs with > 2 GiB free, else /tmp]   where the work dir goes
#   KEEP [0]                   keep the work directory
# Needs: bash, python3 (>= 3.8, standard library only), cc, cargo, uwsgi
# (Debian: apt-get install gcc python3 uwsgi-core), and for PG_N the
# PostgreSQL server binaries (postgresql).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
die() { echo "bench: $*" >&2; exit 1; }

UWSGI=${UWSGI:-$(command -v uwsgi || true)}
if [[ ${ONLY:-} != emperor ]]; then
  [[ -n $UWSGI && -x $UWSGI ]] || die "uwsgi not found (apt-get install uwsgi-core) or set UWSGI=, or ONLY=emperor"
fi
CC=$(command -v cc || command -v gcc || true)
[[ -n $CC ]] || die "no C compiler (apt-get install gcc)"
PYTHON=$(command -v python3 || true)
[[ -n $PYTHON ]] || die "python3 not found"

# The work dir (configs, markers, state dir, logs) goes to tmpfs when there is
# one with room: mass deletions between phases then cannot slow down later
# file creations (ext4 without a journal skips recently deleted inodes one by one).
if [[ -z ${BENCH_TMPDIR:-} ]]; then
  BENCH_TMPDIR=/tmp
  if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]] && (($(df -Pk /dev/shm | awk 'NR==2{print $4}') > 2097152)); then
    BENCH_TMPDIR=/dev/shm
  fi
fi
WORK=$(mktemp -d "$BENCH_TMPDIR/emperor-bench.XXXXXX")
WORKFS="$BENCH_TMPDIR ($(stat -f -c %T "$WORK"))"
TOKEN="emperor-bench-$$-${EPOCHSECONDS}-${RANDOM}"
HARNESS_PID=

# Kills every process of this run: the harness (which stops what it started),
# then anything still carrying the run's token in its environment, by pid.
cleanup() {
  local rc=$? i pid f
  trap - EXIT INT TERM HUP
  if [[ -n $HARNESS_PID ]] && kill -0 "$HARNESS_PID" 2>/dev/null; then
    kill -TERM "$HARNESS_PID" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$HARNESS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HARNESS_PID" 2>/dev/null || true
    wait "$HARNESS_PID" 2>/dev/null || true
  fi
  for ((i = 0; i < 50; i++)); do
    local left=()
    for f in /proc/[0-9]*/environ; do
      pid=${f#/proc/}; pid=${pid%/environ}
      [[ $pid == "$$" ]] && continue
      if grep -qzxF "BENCH_RUN_TOKEN=$TOKEN" "$f" 2>/dev/null; then left+=("$pid"); fi
    done
    ((${#left[@]} == 0)) && break
    kill -KILL "${left[@]}" 2>/dev/null || true
    sleep 0.1
  done
  if [[ ${KEEP:-0} == 1 ]]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ------------------------------------------------------------------ build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  echo "bench: cargo build --release --bins" >&2
  (cd "$ROOT" && cargo build --release --bins) >&2
fi
REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then REV="$REV+changes"; fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x $TARGET_DIR/release/emperor ]] || die "$TARGET_DIR/release/emperor not built"
# run a private copy: target/ may be rebuilt while the bench runs
EMPEROR=$WORK/emperor
cp "$TARGET_DIR/release/emperor" "$EMPEROR"
"$CC" -O2 -Wall -o "$WORK/vassal" "$BENCH/vassal.c"
"$CC" -O2 -Wall -o "$WORK/forkexec" "$BENCH/forkexec.c"

# ------------------------------------------------------------------ limits
HARD=$(ulimit -Hn)
if [[ $HARD == unlimited ]]; then HARD=1048576; fi
NOFILE=${NOFILE:-$((HARD < 20000 ? HARD : 20000))}
ulimit -n "$NOFILE" || die "cannot set ulimit -n $NOFILE (hard limit $HARD)"
PID_MAX=$(cat /proc/sys/kernel/pid_max)
THREADS_MAX=$(cat /proc/sys/kernel/threads-max)
MAX_N=0
for n in ${SCALE_NS-$([[ ${QUICK:-0} == 1 ]] && echo 1000 || echo "1000 10000")} ${NATIVE_NS-10000 25000} ${ADOPT_N:-10000} ${BURST_N:-10000} ${PG_N:-10000}; do
  ((n > MAX_N)) && MAX_N=$n
done
# every vassal is one process; each emperor holds at least one fd per vassal
((PID_MAX > MAX_N + 2000)) || die "pid_max $PID_MAX is too small for $MAX_N vassals (sysctl kernel.pid_max)"
((THREADS_MAX > MAX_N + 2000)) || die "threads-max $THREADS_MAX is too small for $MAX_N vassals"
((NOFILE > MAX_N + 100)) || echo "bench: warning: ulimit -n $NOFILE leaves little room for $MAX_N vassals" >&2

UW_VERSION=$([[ -n $UWSGI ]] && "$UWSGI" --version 2>/dev/null || echo "?")

"$PYTHON" "$BENCH/harness.py" \
  --token "$TOKEN" --work "$WORK" --vassal "$WORK/vassal" --floor "$WORK/forkexec" \
  --emperor "$EMPEROR" --uwsgi "${UWSGI:-uwsgi}" --uwsgi-label "uWSGI $UW_VERSION" \
  --emperor-version "$("$EMPEROR" --version 2>/dev/null | awk '{print $2}') (git $REV, release)" \
  --rustc "$(rustc --version 2>/dev/null | awk '{print $1, $2}')" \
  --cc "$("$CC" --version | head -1)" \
  --nofile "$NOFILE" --nofile-hard "$HARD" --workfs "$WORKFS" \
  --json "${RESULTS_JSON:-}" --results "${RESULTS:-}" &
HARNESS_PID=$!
wait "$HARNESS_PID"
