#!/usr/bin/env bash
# Rebuilds the aircraft engine remaining-useful-life packages from nothing, in one command:
#   bash models/engine-rul/build.sh
# Creates a Python venv OUTSIDE the repo, compiles the TypeScript, reads NASA C-MAPSS
# train_FD001.txt and train_FD003.txt (never copied into the repo), splits by engine, trains the
# random forest and the 1D-CNN, converts and quantizes, evaluates on the validation engines, writes
# models/engine-rul/packages/*, metrics.json, validation-units.json and
# test/fixtures/engine-rul-parity/, validates every package with the runtime's own loader
# (runtime/model/package.ts: Manifest schema, consistency, sha256s), and checks that the Node runtimes reproduce the Python reference outputs.
#
# Knobs (environment): VIGIL_CMAPSS_DIR (default ../shared/datasets/cmapss next to the repo),
# VIGIL_VENV, VIGIL_MODEL_WORK, ENGINE_RUL_REUSE_KERAS=1 (keep the trained CNN weights).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VIGIL_VENV:-$HOME/.cache/vigil/venv-models}"
work="${VIGIL_MODEL_WORK:-$HOME/.cache/vigil/engine-rul-work}"
export VIGIL_CMAPSS_DIR="${VIGIL_CMAPSS_DIR:-$(cd "$repo/.." && pwd)/shared/datasets/cmapss}"
started=$(date +%s)
say() { echo "[build.sh $(date +%H:%M:%S)] $*"; }

for f in train_FD001.txt train_FD003.txt; do
  [ -f "$VIGIL_CMAPSS_DIR/$f" ] || {
    echo "build.sh: $VIGIL_CMAPSS_DIR/$f not found; set VIGIL_CMAPSS_DIR to the folder with NASA's C-MAPSS files" >&2
    exit 1
  }
done

say "python venv at $venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

say "compiling TypeScript"
cd "$repo"
# tsc still emits when files someone else is editing have type errors; what we need is checked next.
npx tsc -p tsconfig.json || say "tsc reported errors (see above); continuing with the emitted JavaScript"
[ -f dist/runtime/model/package.js ] || { echo "build.sh: dist/runtime/model/package.js was not built" >&2; exit 1; }

say "training, converting and evaluating (data from $VIGIL_CMAPSS_DIR, scratch in $work)"
mkdir -p "$work"
reuse=()
[ "${ENGINE_RUL_REUSE_KERAS:-0}" = 1 ] && reuse=(--reuse-keras)
OMP_NUM_THREADS=2 TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 PYTHONHASHSEED=0 \
  "$venv/bin/python" "$here/pipeline/main.py" --work "$work" --repo "$repo" "${reuse[@]}"
# validation-units.json is checked by `prettier --check .`; give it the house format.
npx prettier --log-level warn --write "$here/validation-units.json"

say "validating packages with the runtime's own loader (schema, consistency, sha256, no stray files)"
for pkg in "$here"/packages/*/; do
  node --input-type=module -e "
    import { loadModelPackage } from '$repo/dist/runtime/model/package.js';
    const { manifest: m } = await loadModelPackage(process.argv[1]);
    const p = m.preprocessing, q = m.postprocessing;
    console.log('valid:', process.argv[1], m.format, m.inputs[0].name, m.inputs[0].dtype, '[' + m.inputs[0].shape + ']',
      p.features, '->', q.type, q.output, 'alert', q.alert.direction, q.alert.raise + '/' + q.alert.clear);
  " "$pkg"
done

say "checking that the Node runtimes reproduce the Python reference outputs"
node "$here/check-node-parity.mjs" "$repo"
say "computing the reference distributions for drift monitoring (vigil models reference)"
(cd "$repo" && npm run build --silent && node dist/runtime/cli/main.js models reference "$here"/packages/*/)
say "building the acceptance holdouts and running the acceptance tests (vigil models holdout, checks in acceptance.json)"
(cd "$repo" && node dist/runtime/cli/main.js models holdout "$here"/packages/*/)
say "done in $(($(date +%s) - started)) s"
