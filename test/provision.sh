#!/usr/bin/env bash
# Makes sure the real components the tests talk to are installed:
#  - Debian packages: Mosquitto (MQTT broker), socat (serial pseudo-terminal pairs), openssl
#    (certificates for the OPC-UA security tests);
#  - a Python virtual environment outside the clone with the independent protocol peers
#    (asyncua, an OPC-UA server from another implementation), from test/peers/requirements.txt.
# Installs Debian packages with apt-get when running as root (CI, a fresh gateway image);
# otherwise says exactly what to install and fails, rather than letting tests skip.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/bin/mosquitto_passwd ] || missing+=(mosquitto)
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "test/provision.sh: installing ${missing[*]} from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package's own service is not wanted: tests start their own brokers on free ports.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
  else
    echo "test/provision.sh: the tests need these Debian packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Python peers: re-installed only when the requirements file changes.
venv="${VIGIL_PEERS_VENV:-$HOME/.cache/vigil/venv-peers}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/peers/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test/provision.sh: preparing the Python peers in $venv (asyncua)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/peers/requirements.txt"
  echo "$want" >"$stamp"
fi
