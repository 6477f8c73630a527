"""Trains the aircraft engine RUL models on NASA C-MAPSS FD001+FD003 and writes the packages,
metrics.json, validation-units.json and the parity fixtures. Run through models/engine-rul/build.sh."""
import argparse
import datetime
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import sklearn  # noqa: E402
import skl2onnx  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

import convert  # noqa: E402
import data  # noqa: E402
import evaluate  # noqa: E402
import package  # noqa: E402
from model import CNN, CNN_SENSORS, RF, build_cnn, channel_mask, towers, train_cnn, train_rf  # noqa: E402
from runners import OnnxRunner, TfliteRunner, latency_ms  # noqa: E402

CALIBRATION_WINDOWS = 1000
FIXTURE_CASES_PER_SUBSET = 8
FIXTURE_TARGETS = [0, 8, 20, 29, 45, 70, 110, 160]  # cycles to failure at the window's end

# (package folder, model name, format, work file, features, words)
VARIANTS = [
    ("engine-rul-rf-onnx", "engine-rul-rf", "onnx", "rf.onnx", "summary",
     "random forest on window summary features, ONNX (skl2onnx TreeEnsembleRegressor)"),
    ("engine-rul-int8-onnx", "engine-rul-cnn", "onnx", "cnn-int8.onnx", "window",
     "1D-CNN, int8 (static QDQ) ONNX, float input and output"),
    ("engine-rul-int8-tflite", "engine-rul-cnn", "tflite", "cnn-int8.tflite", "window",
     "1D-CNN, int8 TFLite, full-integer (int8 input and output)"),
    ("engine-rul-fp32-onnx", "engine-rul-cnn", "onnx", "cnn-fp32.onnx", "window",
     "1D-CNN, fp32 ONNX (the reference for the int8 packages)"),
]
# The default package: the model family with the lower validation RMSE (all windows), in its
# deployable form. For the CNN that is the int8 ONNX package (float input and output, run by
# onnxruntime-node everywhere); its int8 TFLite twin is for TFLite-only devices and is not a
# candidate, so that a coin-flip difference between two conversions of one network never renames
# the default that deployments point at.
CNN_DEFAULT = "engine-rul-int8-onnx"
RF_DEFAULT = "engine-rul-rf-onnx"


def log(message: str) -> None:
    print(f"[engine-rul {time.strftime('%H:%M:%S')}] {message}", flush=True)


def subsets_of(split) -> list[str]:
    return [k.split("/")[0] for k in split.keys]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="scratch folder outside the repo (exports, Keras weights)")
    parser.add_argument("--repo", required=True, help="repository root")
    parser.add_argument("--reuse-keras", action="store_true", help="skip CNN training, reuse WORK/cnn.weights.h5")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    # Seeded and deterministic kernels: a rebuild on the same machine gives the same CNN.
    tf.config.experimental.enable_op_determinism()
    here = os.path.join(args.repo, "models", "engine-rul")
    export_dir = os.path.join(args.work, "export")
    os.makedirs(export_dir, exist_ok=True)
    timings = {}

    all_engines = {s: data.engines(s) for s in data.SUBSETS}
    val_units = data.split_units(all_engines)
    train_eng = {s: [e for e in all_engines[s] if e.unit not in val_units[s]] for s in data.SUBSETS}
    val_eng = {s: [e for e in all_engines[s] if e.unit in val_units[s]] for s in data.SUBSETS}
    train_list = [e for s in data.SUBSETS for e in train_eng[s]]
    val_list = [e for s in data.SUBSETS for e in val_eng[s]]
    norm = data.Normalization.fit(train_list)
    train, val = data.Split.of(train_list, norm), data.Split.of(val_list, norm)
    counts = {s: {"trainEngines": len(train_eng[s]), "validationEngines": len(val_eng[s]),
                  "trainWindows": int(sum(len(e.cycles) - data.WINDOW + 1 for e in train_eng[s])),
                  "validationWindows": int(sum(len(e.cycles) - data.WINDOW + 1 for e in val_eng[s]))}
              for s in data.SUBSETS}
    log(f"train {len(train.y)} windows of {len(train_list)} engines, validation {len(val.y)} windows of "
        f"{len(val_list)} engines; constant tags {[t for t, c in zip(data.TAGS, norm.constant) if c]}")
    write_validation_units(here, val_units, counts)

    # Random forest on summary features.
    started = time.time()
    train_summary, val_summary = train.summary(), val.summary()
    rf = train_rf(train_summary, train.y)
    timings["rfTrainSeconds"] = round(time.time() - started, 1)
    rf_nodes = int(sum(t.tree_.node_count for t in rf.estimators_))
    convert.rf_to_onnx(rf, train_summary.shape[1], os.path.join(export_dir, "rf.onnx"))
    rf_sklearn_val = rf.predict(val_summary)
    log(f"random forest: {rf_nodes} nodes, trained in {timings['rfTrainSeconds']} s")

    # 1D-CNN on the window.
    weights_path = os.path.join(args.work, "cnn.weights.h5")
    training_path = os.path.join(args.work, "cnn-training.json")
    cnn = build_cnn()
    if args.reuse_keras and os.path.exists(weights_path) and os.path.exists(training_path):
        cnn.load_weights(weights_path)
        with open(training_path) as f:
            training = json.load(f)
        log(f"reused {weights_path}, trained at {training['trainedAt']}")
    else:
        started = time.time()
        cnn.summary(print_fn=lambda line: print(line, flush=True))
        history = train_cnn(cnn, train.x, train.y, (val.x, val.y))
        cnn.save_weights(weights_path)
        training = {"trainedAt": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
                    "trainSeconds": round(time.time() - started, 1), "history": history}
        with open(training_path, "w") as f:
            json.dump(training, f)
        log(f"CNN trained in {training['trainSeconds']} s")
    timings["cnnTrainSeconds"] = training["trainSeconds"]
    keras_val = cnn.predict(val.x, batch_size=512, verbose=0)[:, 0].astype(np.float64)

    rng = np.random.default_rng(4242)
    calibration = train.x[rng.choice(len(train.y), CALIBRATION_WINDOWS, replace=False)]
    convert.cnn_to_onnx_fp32(cnn, os.path.join(export_dir, "cnn-fp32.onnx"))
    convert.cnn_to_onnx_int8(os.path.join(export_dir, "cnn-fp32.onnx"), calibration,
                             os.path.join(export_dir, "cnn-int8.onnx"), os.path.join(export_dir, "cnn-fp32-prep.onnx"))
    convert.cnn_to_tflite_int8(cnn, calibration, os.path.join(export_dir, "cnn-int8.tflite"))
    log("exported rf.onnx, cnn-fp32.onnx, cnn-int8.onnx, cnn-int8.tflite")

    runners, results, preds = {}, {}, {}
    for folder, _, fmt, file_name, features, words in VARIANTS:
        path = os.path.join(export_dir, file_name)
        runner = OnnxRunner(path) if fmt == "onnx" else TfliteRunner(path)
        runners[folder] = runner
        inputs = val_summary if features == "summary" else val.x
        started = time.time()
        preds[folder] = runner.predict(inputs)
        metrics = evaluate.evaluate(preds[folder], val, subsets_of(val))
        results[folder] = {"format": fmt, "features": features, "variant": words, "fileBytes": os.path.getsize(path),
                           "validation": metrics, "latency": latency_ms(runner, inputs)}
        log(f"{folder}: RMSE all {metrics['rmseAllWindows']} last {metrics['rmseLastWindow']} PHM08 "
            f"{metrics['phm08AllWindows']}, alert P/R {metrics['horizonPerWindow']['precision']}/"
            f"{metrics['horizonPerWindow']['recall']}, lead median {metrics['alert']['leadCyclesMedian']}, "
            f"missed {len(metrics['alert']['missed'])}, {results[folder]['latency']['meanMs']} ms "
            f"({time.time() - started:.0f} s)")
    results["engine-rul-rf-onnx"]["vsSklearn"] = diff(rf_sklearn_val, preds["engine-rul-rf-onnx"])
    results["engine-rul-fp32-onnx"]["vsKeras"] = diff(keras_val, preds["engine-rul-fp32-onnx"])
    for folder in ("engine-rul-int8-onnx", "engine-rul-int8-tflite"):
        results[folder]["vsFp32Onnx"] = diff(preds["engine-rul-fp32-onnx"], preds[folder])

    default = choose_default(results)

    started = time.time()
    fd001_only = train_fd001_only(all_engines, train_eng, val_eng)
    timings["fd001OnlySeconds"] = round(time.time() - started, 1)

    trained_at = training["trainedAt"]
    versions = {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__,
                "skl2onnx": skl2onnx.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    packages_dir = os.path.join(here, "packages")
    for folder, name, fmt, file_name, features, words in VARIANTS:
        r = results[folder]
        v = r["validation"]
        inputs = train_summary if features == "summary" else train.x.reshape(-1, len(data.TAGS))
        reference_stats = {"inputMean": [round(float(m), 6) for m in inputs.mean(axis=0)],
                           "inputStd": [round(float(s), 6) for s in inputs.std(axis=0)]}
        metadata = {
            "variant": words,
            "default": folder == default,
            "trainedAt": trained_at,
            "data": "NASA C-MAPSS train_FD001 + train_FD003, split by engine (models/engine-rul/validation-units.json)",
            "datasetCounts": counts,
            "asset": "one C-MAPSS unit (engine); tags setting1..setting3, s1..s21 in NASA's column order",
            "model": ({"type": "RandomForestRegressor", **RF, "nodes": rf_nodes} if features == "summary"
                      else {"type": "1D-CNN", **CNN, "parameters": int(cnn.count_params()),
                            "sensorsUsed": CNN_SENSORS}),
            "validationMetrics": {
                "rmseAllWindows": v["rmseAllWindows"], "rmseLastWindow": v["rmseLastWindow"],
                "phm08AllWindows": v["phm08AllWindows"], "phm08LastWindow": v["phm08LastWindow"],
                "bySubset": v["bySubset"],
                "horizonAlertPrecision": v["horizonPerWindow"]["precision"],
                "horizonAlertRecall": v["horizonPerWindow"]["recall"],
                "leadCyclesMean": v["alert"]["leadCyclesMean"], "leadCyclesMedian": v["alert"]["leadCyclesMedian"],
                "missedEngines": len(v["alert"]["missed"]), "engines": v["alert"]["engines"],
            },
            "latencyMsPythonOneThread": r["latency"]["meanMs"],
            "modelCard": "models/engine-rul/README.md",
            "builtWith": versions,
        }
        for key in ("vsSklearn", "vsKeras", "vsFp32Onnx"):
            if key in r:
                metadata[key] = r[key]
        package.write_package(os.path.join(packages_dir, folder), os.path.join(export_dir, file_name), fmt, name,
                              features, runners[folder].tensors(), norm, reference_stats,
                              f"Remaining useful life (cycles) of a turbofan engine from a {data.WINDOW}-cycle "
                              f"window of 24 tags: {words}.", metadata)
        log(f"wrote package {folder}")

    write_fixtures(args.repo, val, val_list, runners)

    report = {
        "trainedAt": trained_at, "timings": timings, "versions": versions, "defaultPackage": default,
        "defaultRule": f"{CNN_DEFAULT} if its validation RMSE (all windows) is at most {RF_DEFAULT}'s, "
                       f"else {RF_DEFAULT}",
        "data": {"subsets": list(data.SUBSETS), "window": data.WINDOW, "rulCap": data.RUL_CAP,
                 "splitSeed": data.SPLIT_SEED, "validationUnits": val_units, "counts": counts,
                 "constantTags": [t for t, c in zip(data.TAGS, norm.constant) if c],
                 "normalize": {"mean": norm.mean.tolist(), "std": norm.std.tolist()}},
        "randomForest": {**RF, "nodes": rf_nodes},
        "cnn": {**CNN, "parameters": int(cnn.count_params()), "sensorsUsed": CNN_SENSORS,
                "towersValidationRmse": towers_rmse(cnn, val),
                "mask": channel_mask().tolist(), "history": training["history"]},
        "kerasFp32Validation": evaluate.evaluate(keras_val, val, subsets_of(val)),
        "sklearnValidation": evaluate.evaluate(rf_sklearn_val, val, subsets_of(val)),
        "packages": results,
        "fd001Only": fd001_only,
    }
    with open(os.path.join(here, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    log("wrote models/engine-rul/metrics.json")
    return 0


def towers_rmse(cnn, val) -> list[float]:
    """Validation RMSE of each tower alone (Keras fp32): the seed-to-seed spread."""
    return [round(evaluate.rmse(evaluate.clip(t.predict(val.x, batch_size=512, verbose=0)[:, 0]), val.y), 3)
            for t in towers(cnn)]


def choose_default(results: dict) -> str:
    rmse = {f: results[f]["validation"]["rmseAllWindows"] for f in (CNN_DEFAULT, RF_DEFAULT)}
    default = CNN_DEFAULT if rmse[CNN_DEFAULT] <= rmse[RF_DEFAULT] else RF_DEFAULT
    words = f"{CNN_DEFAULT} RMSE {rmse[CNN_DEFAULT]}, {RF_DEFAULT} RMSE {rmse[RF_DEFAULT]}"
    if default != CNN_DEFAULT:
        log(f"WARNING: the default is now {default} ({words}); update README.md and the deploy examples")
    else:
        log(f"default package: {default} ({words})")
    return default


def diff(reference: np.ndarray, other: np.ndarray) -> dict:
    """Differences of what the runtime publishes (outputs clipped to [0, cap])."""
    d = np.abs(evaluate.clip(reference) - evaluate.clip(other))
    return {"maxAbsDiff": round(float(d.max()), 6), "meanAbsDiff": round(float(d.mean()), 6),
            "rmseBetween": round(float(np.sqrt(np.mean(d ** 2))), 6)}


def train_fd001_only(all_engines, train_eng, val_eng) -> dict:
    """The same two models trained on the FD001 training engines only (normalised on them), scored
    on the FD001 validation engines, against the FD001 part of the FD001+FD003 models' scores."""
    norm = data.Normalization.fit(train_eng["FD001"])
    train, val = data.Split.of(train_eng["FD001"], norm), data.Split.of(val_eng["FD001"], norm)
    rf = train_rf(train.summary(), train.y)
    rf_metrics = evaluate.evaluate(rf.predict(val.summary()), val, subsets_of(val))
    cnn = build_cnn()
    train_cnn(cnn, train.x, train.y)
    cnn_metrics = evaluate.evaluate(cnn.predict(val.x, batch_size=512, verbose=0)[:, 0], val, subsets_of(val))
    pick = ("rmseAllWindows", "rmseLastWindow", "phm08AllWindows", "horizonPerWindow", "alert")
    log(f"FD001 only: RF RMSE {rf_metrics['rmseAllWindows']}, CNN (Keras fp32) RMSE {cnn_metrics['rmseAllWindows']}")
    return {"about": "trained on FD001 training engines only, validated on the FD001 validation engines "
                     "(sklearn and Keras fp32, before conversion)",
            "randomForest": {k: rf_metrics[k] for k in pick}, "cnnKerasFp32": {k: cnn_metrics[k] for k in pick}}


def write_validation_units(here: str, val_units: dict, counts: dict) -> None:
    doc = {"about": "Validation engines (C-MAPSS unit numbers per training file), held out of training; "
                    "models/engine-rul/cmapss_to_csv.py --validation-only converts just these.",
           "seed": data.SPLIT_SEED, "fraction": data.VALIDATION_FRACTION,
           "units": {f"train_{s}.txt": val_units[s] for s in data.SUBSETS},
           "counts": counts}
    with open(os.path.join(here, "validation-units.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def write_fixtures(repo: str, val, val_list, runners: dict) -> None:
    """Validation windows spread over the RUL range, their model inputs and the Python reference
    runtimes' outputs, for the engine parity test (test/engines/engine-rul-parity.test.ts)."""
    out = os.path.join(repo, "test", "fixtures", "engine-rul-parity")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    chosen, cases = [], []
    for subset in data.SUBSETS:
        engines_s = [i for i, e in enumerate(val_list) if e.subset == subset][:FIXTURE_CASES_PER_SUBSET]
        for target, e in zip(FIXTURE_TARGETS, engines_s):
            idx = np.flatnonzero(val.engine == e)
            # The window whose end is closest to `target` cycles before failure.
            i = int(idx[np.argmin(np.abs(val.cycles_to_failure[idx] - target))])
            engine = val_list[e]
            end = int(val.cycle[i])
            rows = np.flatnonzero((engine.cycles > end - data.WINDOW) & (engine.cycles <= end))
            chosen.append(i)
            cases.append({"id": f"{subset}-unit-{engine.unit}-cycle-{end}", "file": f"train_{subset}.txt",
                          "asset": f"unit-{engine.unit}", "unit": engine.unit,
                          "cycles": [int(engine.cycles[rows[0]]), end],
                          "cyclesToFailure": int(val.cycles_to_failure[i]), "trueRul": float(val.y[i]),
                          "raw": engine.raw[rows].tolist()})
    window = val.x[chosen].astype("<f4")
    summary = data.summary(val.x64[chosen]).astype("<f4")
    window.tofile(os.path.join(out, "window.f32"))
    summary.tofile(os.path.join(out, "summary.f32"))
    expected = {}
    for folder, runner in runners.items():
        features = "summary" if folder == "engine-rul-rf-onnx" else "window"
        got = runner.predict(summary if features == "summary" else window)
        expected[folder] = {c["id"]: round(float(v), 6) for c, v in zip(cases, got)}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    info = {
        "about": "Validation windows of C-MAPSS engines (never trained on) and the RUL the Python reference "
                 "runtimes (onnxruntime for ONNX, tf.lite.Interpreter for TFLite) gave for each package in "
                 "models/engine-rul/packages. expected.json holds the raw model output (before clipping to "
                 "[0, cap]).",
        "tags": data.TAGS,
        "window": data.WINDOW,
        "inputs": {
            "window.f32": {"dtype": "float32", "endian": "little", "shape": [len(cases), data.WINDOW, len(data.TAGS)],
                           "layout": "NTC",
                           "howMade": "(raw - normalize.mean[tag]) / normalize.std[tag] in float64, then float32"},
            "summary.f32": {"dtype": "float32", "endian": "little", "shape": [len(cases), len(data.TAGS) * 6],
                            "howMade": "per tag in tags order [mean, std (population), min, max, last, "
                                       "least-squares slope per step over t = 0..window-1] of the normalised "
                                       "window in float64 (before rounding to float32), then float32"},
        },
        "raw": "cases[i].raw: the 30 rows (oldest first) x 24 tags exactly as in NASA's file",
        "tfliteInputQuantization": "q = clamp(round_half_away_from_zero(x / scale) + zeroPoint, -128, 127); output "
                                   "dequantized as (q - zeroPoint) * scale",
        "referenceRuntimes": {"onnx": f"onnxruntime {onnxruntime.__version__} (Python), CPU provider, 1 thread",
                              "tflite": f"tf.lite.Interpreter {tf.__version__} (Python), built-in kernels "
                                        "without the default XNNPACK delegate"},
        "cases": cases,
    }
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    log(f"wrote {len(cases)} parity fixtures")


if __name__ == "__main__":
    sys.exit(main())
