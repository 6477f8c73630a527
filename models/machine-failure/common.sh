# Shared steps of models/machine-failure/build.sh and models/anomaly/build.sh (sourced, not run).
# Both models learn from the same simulator runs: one export, one venv, one way to check packages.
#
# Knobs (environment): VIGIL_VENV, VIGIL_MODEL_WORK (default ~/.cache/vigil/machine-work),
# MACHINE_TRAIN_RUNS (200 per machine kind), MACHINE_TEST_RUNS (80), MACHINE_REUSE_DATA=1 (keep
# exported runs whose settings match).

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${VIGIL_VENV:-$HOME/.cache/vigil/venv-models}"
work="${VIGIL_MODEL_WORK:-$HOME/.cache/vigil/machine-work}"
train_runs="${MACHINE_TRAIN_RUNS:-200}"
test_runs="${MACHINE_TEST_RUNS:-80}"
# Different seeds: every held-out run is a machine never seen in training or threshold choice.
train_seed=1001
test_seed=2002

say() { echo "[build.sh $(date +%H:%M:%S)] $*"; }

setup_venv() { # requirements.txt
  say "python venv at $venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$1"
}

compile_ts() {
  say "compiling TypeScript"
  cd "$repo"
  # tsc still emits when files someone else is editing have type errors; what we need is checked next.
  npx tsc -p tsconfig.json || say "tsc reported errors (see above); continuing with the emitted JavaScript"
  for f in dist/simulator/machines/export-runs.js dist/runtime/model/package.js; do
    [ -f "$f" ] || { echo "build.sh: $f was not built; fix the TypeScript errors above" >&2; exit 1; }
  done
}

export_set() { # name runs seed
  local dir="$work/data/$1"
  if [ "${MACHINE_REUSE_DATA:-0}" = 1 ] && [ -f "$dir/meta.json" ] &&
    node -e "const m=require(process.argv[1]); process.exit(m.seed===+process.argv[2] && m.runsPerSpec===+process.argv[3] ? 0 : 1)" \
      "$dir/meta.json" "$3" "$2"; then
    say "reusing $dir"
    return
  fi
  rm -rf "$dir"
  # One row per simulated operating hour: the models step on the machines' hour meter.
  node "$repo/dist/simulator/machines/export-runs.js" --out "$dir" --runs "$2" --seed "$3" --kind both --sample-hours 1
}

export_runs() {
  say "exporting run-to-failure runs to $work/data (train: $train_runs per kind, seed $train_seed; held out: $test_runs, seed $test_seed)"
  mkdir -p "$work/data"
  # Two at a time: the machine has two cores.
  export_set train "$train_runs" "$train_seed" &
  local pid=$!
  export_set test "$test_runs" "$test_seed"
  wait "$pid"
}

validate_packages() { # packages folder
  say "validating packages with the runtime's loader (manifest schema, consistency, sha256)"
  for pkg in "$1"/*/; do
    node --input-type=module -e "
      import { loadModelPackage } from '$repo/dist/runtime/model/package.js';
      const p = await loadModelPackage(process.argv[1]);
      const m = p.manifest;
      console.log('valid:', m.name + '@' + m.version, m.inputs[0].name, JSON.stringify(m.inputs[0].shape), '->',
        m.postprocessing.output, m.postprocessing.type, 'alert', JSON.stringify(m.postprocessing.alert));
    " "$pkg"
  done
}
