#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12. Idempotent: packages that
# are already installed are not touched, and apt is only called when
# something is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  uwsgi-core            # the real uWSGI, for the uWSGI interop test
  uwsgi-plugin-python3  # its Python plugin, for the test's WSGI app
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi
echo "test dependencies present: ${packages[*]}"
