#!/usr/bin/env bash
# Rebuilds the machine failure model packages (pump and spindle) from nothing, in one command:
#   bash models/machine-failure/build.sh
# Creates a Python venv OUTSIDE the repo, compiles the TypeScript, exports run-to-failure runs from
# the simulator (training and held-out runs from different seeds), trains, chooses the alert
# thresholds on validation runs, evaluates on the held-out runs, writes
# models/machine-failure/packages/*, models/machine-failure/metrics.json and
# test/fixtures/machine-models-parity/*-failure-gbt.json, validates every package with the
# runtime's own loader and checks parity with onnxruntime-node. Knobs: see common.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=models/machine-failure/common.sh
source "$here/common.sh"
started=$(date +%s)

setup_venv "$here/requirements.txt"
compile_ts
export_runs
say "training, choosing thresholds, evaluating, packaging"
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
