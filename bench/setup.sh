#!/usr/bin/env bash
# Creates the Python environment of the bench baseline outside the clone:
#   ${VIGIL_BENCH_VENV:-$HOME/.cache/vigil/venv-bench}
set -euo pipefail
venv="${VIGIL_BENCH_VENV:-$HOME/.cache/vigil/venv-bench}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$(dirname "$0")/requirements.txt"
echo "bench baseline ready: $venv/bin/python"
