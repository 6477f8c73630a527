#!/usr/bin/env bash
# Makes sure the real components the tests talk to are installed:
#  - Debian packages: Mosquitto (MQTT broker), socat (serial pseudo-terminal pairs), openssl
#    (certificates for the OPC-UA security tests), debootstrap, qemu-user-static and an aarch64
#    cross compiler (install and ARM64 tests), Chromium (status page test), faketime (the
#    clock-jump chaos drill);
#  - a Python virtual environment outside the clone with the independent protocol peers
#    (asyncua, an OPC-UA server from another implementation), from test/peers/requirements.txt;
#  - a second one with the real MLflow tracking server and client (model registry tests), from
#    test/peers/mlflow-requirements.txt.
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
# The install test (a fresh Debian root), the ARM64 smoke test (qemu user emulation, native
# modules cross-compiled) and the status page test (Debian's Chromium, driven by playwright-core).
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# libfaketime for the clock-jump chaos drill (npm run chaos -- --scenario clock-jump; docs/CHAOS.md).
command -v faketime >/dev/null 2>&1 || missing+=(faketime)

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

# Python virtual environments outside the clone, each re-installed only when its requirements
# file changes (a sha256 stamp inside the environment).
provision_venv() {
  local venv="$1" requirements="$2" what="$3"
  local stamp="$venv/.requirements.sha256" want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  echo "test/provision.sh: preparing $what in $venv" >&2
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"; then
    rm -f "$stamp"
    echo "test/provision.sh: pip could not install $requirements into $venv (see pip's message above)." >&2
    echo "  The tests need PyPI (or a mirror set with PIP_INDEX_URL) once to install it; retry with:" >&2
    echo "  $venv/bin/pip install -r $requirements" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
}

# The independent protocol peers (asyncua).
provision_venv "${VIGIL_PEERS_VENV:-$HOME/.cache/vigil/venv-peers}" "$here/peers/requirements.txt" \
  'the Python peers (asyncua)'
# The real MLflow server and client for the model registry tests (a fresh install takes minutes).
provision_venv "${VIGIL_MLFLOW_VENV:-$HOME/.cache/vigil/venv-mlflow}" "$here/peers/mlflow-requirements.txt" \
  'MLflow 3.17.2 (registry tests)'
