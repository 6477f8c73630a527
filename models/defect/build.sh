#!/usr/bin/env bash
# Rebuilds the reference defect model packages from nothing, in one command:
#   bash models/defect/build.sh
# Creates a Python venv OUTSIDE the repo, compiles the TypeScript, exports train / validation /
# test sets from the simulated camera (three different seeds), trains, quantizes, evaluates,
# writes models/defect/packages/*, models/defect/metrics.json and test/fixtures/defect-parity/,
# and validates every vigil.json with the runtime's own Manifest schema.
#
# Knobs (environment): VIGIL_VENV, VIGIL_MODEL_WORK, DEFECT_TRAIN_COUNT, DEFECT_VAL_COUNT,
# DEFECT_TEST_COUNT, DEFECT_EPOCHS, DEFECT_REUSE_DATA=1 (keep exported sets), DEFECT_REUSE_KERAS=1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VIGIL_VENV:-$HOME/.cache/vigil/venv-models}"
work="${VIGIL_MODEL_WORK:-$HOME/.cache/vigil/defect-work}"
train_count="${DEFECT_TRAIN_COUNT:-9000}"
val_count="${DEFECT_VAL_COUNT:-3000}"
test_count="${DEFECT_TEST_COUNT:-4000}"
epochs="${DEFECT_EPOCHS:-14}"
# Different seeds: the test set is never seen in training or in the choice of the threshold.
train_seed=101
val_seed=202
test_seed=303
started=$(date +%s)
say() { echo "[build.sh $(date +%H:%M:%S)] $*"; }

say "python venv at $venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

say "compiling TypeScript"
cd "$repo"
# tsc still emits when files someone else is editing have type errors; what we need is checked next.
npx tsc -p tsconfig.json || say "tsc reported errors (see above); continuing with the emitted JavaScript"
for f in dist/simulator/camera/export-dataset.js dist/runtime/model/manifest.js dist/runtime/pipeline/preprocess.js; do
  [ -f "$f" ] || { echo "build.sh: $f was not built; fix the TypeScript errors above" >&2; exit 1; }
done

export_set() { # name count seed keep-images
  local dir="$work/data/$1"
  if [ "${DEFECT_REUSE_DATA:-0}" = 1 ] && [ -f "$dir/meta.json" ]; then say "reusing $dir"; return; fi
  rm -rf "$dir"
  node dist/simulator/camera/export-dataset.js --out "$dir" --count "$2" --seed "$3" --keep-images "$4" \
    --width 640 --height 480 --size 128
}
say "exporting data sets to $work/data (train $train_count, validation $val_count, test $test_count)"
mkdir -p "$work/data"
# Two at a time: the machine has two cores.
export_set train "$train_count" "$train_seed" 0 &
pid_train=$!
export_set validation "$val_count" "$val_seed" 0
export_set test "$test_count" "$test_seed" 200
wait "$pid_train"

say "training and exporting"
reuse=()
[ "${DEFECT_REUSE_KERAS:-0}" = 1 ] && reuse=(--reuse-keras)
OMP_NUM_THREADS=2 TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 \
  "$venv/bin/python" "$here/pipeline/main.py" --work "$work" --repo "$repo" --epochs "$epochs" "${reuse[@]}"

say "validating manifests with runtime/model/manifest.ts"
for pkg in "$here"/packages/*/; do
  node --input-type=module -e "
    import { readFileSync } from 'node:fs';
    import { createHash } from 'node:crypto';
    import { Manifest } from '$repo/dist/runtime/model/manifest.js';
    const dir = process.argv[1];
    const m = Manifest.parse(JSON.parse(readFileSync(dir + 'vigil.json', 'utf8')));
    for (const [file, sha] of Object.entries(m.files)) {
      const actual = createHash('sha256').update(readFileSync(dir + file)).digest('hex');
      if (actual !== sha) throw new Error(dir + file + ': sha256 ' + actual + ' does not match vigil.json');
    }
    console.log('valid:', dir, m.format, m.inputs[0].name, m.inputs[0].dtype, '->', m.outputs[0].name, 'threshold', m.postprocessing.threshold);
  " "$pkg"
done
say "checking that the Node runtimes reproduce the Python reference outputs"
node "$here/check-node-parity.mjs" "$repo"
say "computing the reference distributions for drift monitoring (vigil models reference)"
(cd "$repo" && npm run build --silent && node dist/runtime/cli/main.js models reference "$here"/packages/*/)
say "building the acceptance holdouts and running the acceptance tests (vigil models holdout, checks in acceptance.json)"
(cd "$repo" && node dist/runtime/cli/main.js models holdout "$here"/packages/*/)
say "done in $(( $(date +%s) - started )) s"
