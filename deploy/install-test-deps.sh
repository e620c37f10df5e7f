#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12. Idempotent: packages that
# are already installed are not touched, and apt is only called when
# something is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  uwsgi-core            # the real uWSGI, for the uWSGI interop test
  uwsgi-plugin-python3  # its Python plugin, for the test's WSGI app
  rabbitmq-server       # a private RabbitMQ node for the amqp:// source tests
  python3-zmq           # the real libzmq (via /usr/bin/python3) for the zmq:// source tests
  postgresql            # initdb/pg_ctl for the private PostgreSQL of the pg:// source tests
  python3-venv          # the venv holding SecantusDB, the MongoDB stand-in of the mongodb:// tests
  zookeeper             # the ZooKeeper server jar (with Java) for the private server of the zoo:// source tests
  slapd                 # a private OpenLDAP server (syncprov) for the ldap:// source tests
  openssl               # the CA and certificate of the TLS ldap:// tests
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

# SecantusDB (a MongoDB-wire-compatible server with change streams, from PyPI)
# for the mongodb:// source tests, in a venv of its own; created only if missing.
venv="$(cd "$(dirname "$0")/.." && pwd)/target/test-venv"
if [ ! -x "$venv/bin/secantusd-py" ]; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'SecantusDB==0.7.0b3'
fi
echo "SecantusDB present: $venv/bin/secantusd-py"
