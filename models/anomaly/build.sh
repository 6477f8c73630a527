#!/usr/bin/env bash
# Rebuilds the pump anomaly model package from nothing, in one command:
#   bash models/anomaly/build.sh
# Same runs, venv and checks as the failure models (models/machine-failure/common.sh): exports
# simulator runs (training and held-out from different seeds), trains an Isolation Forest on the
# normal part of the training runs, sets the alert levels on normal validation runs, measures false
# positives on held-out normal data and detection of injected faults, writes
# models/anomaly/packages/*, models/anomaly/metrics.json and
# test/fixtures/machine-models-parity/pump-anomaly-iforest.json, validates the package with the
# runtime's own loader and checks parity with onnxruntime-node.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=models/machine-failure/common.sh
source "$here/../machine-failure/common.sh"
started=$(date +%s)

setup_venv "$here/requirements.txt"
compile_ts
export_runs
say "training, choosing the alert levels, injecting faults, packaging"
OMP_NUM_THREADS=2 "$venv/bin/python" "$here/pipeline/main.py" --work "$work" --repo "$repo"
validate_packages "$here/packages"
say "checking that onnxruntime-node reproduces the Python reference outputs"
cd "$repo"
npx vitest run test/engines/machine-models-parity.test.ts
say "computing the reference distributions for drift monitoring (vigil models reference)"
(cd "$repo" && npm run build --silent && node dist/runtime/cli/main.js models reference "$here"/packages/*/)
say "building the acceptance holdouts and running the acceptance tests (vigil models holdout, checks in acceptance.json)"
(cd "$repo" && node dist/runtime/cli/main.js models holdout "$here"/packages/*/)
say "done in $(( $(date +%s) - started )) s"
