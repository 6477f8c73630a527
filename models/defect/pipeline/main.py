"""Trains the reference defect model and writes the three committed packages, the parity
fixtures and metrics.json. Run through models/defect/build.sh, which exports the data first."""
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
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

import convert  # noqa: E402
import evaluate  # noqa: E402
import package  # noqa: E402
from data import LABELS, load_split  # noqa: E402
from model import build_model, train  # noqa: E402
from runners import OnnxRunner, TfliteRunner  # noqa: E402

CALIBRATION_SAMPLES = 300
FIXTURE_FRAMES_PER_CLASS = 4

VARIANTS = [
    # (package folder, format, file in the work folder, precision words)
    ("defect-int8-onnx", "onnx", "model-int8.onnx", "int8 (static QDQ) ONNX, float input and output"),
    ("defect-int8-tflite", "tflite", "model-int8.tflite", "int8 TFLite, full-integer (int8 input and output)"),
    ("defect-fp32-onnx", "onnx", "model-fp32.onnx", "fp32 ONNX"),
]


def log(message: str) -> None:
    print(f"[defect {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="scratch folder outside the repo (data sets, Keras model)")
    parser.add_argument("--repo", required=True, help="repository root")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--reuse-keras", action="store_true", help="skip training, reuse WORK/model.keras")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    splits = {name: load_split(name, os.path.join(args.work, "data", name)) for name in ("train", "validation", "test")}
    seeds = {name: s.seed for name, s in splits.items()}
    if len(set(seeds.values())) != 3:
        raise SystemExit(f"train, validation and test must have different seeds, got {seeds}")
    size = splits["train"].pixels.shape[1]
    for name, s in splits.items():
        log(f"{name}: {len(s.labels)} frames, seed {s.seed}, counts {np.bincount(s.labels, minlength=4).tolist()}")

    keras_path = os.path.join(args.work, "model.keras")
    training_path = os.path.join(args.work, "training.json")
    if args.reuse_keras and os.path.exists(keras_path) and os.path.exists(training_path):
        model = tf.keras.models.load_model(keras_path)
        with open(training_path) as f:
            training = json.load(f)
        log(f"reused {keras_path}, trained at {training['trainedAt']}")
    else:
        started = time.time()
        model = build_model(size)
        model.summary(print_fn=lambda line: print(line, flush=True))
        history = train(model, splits["train"], splits["validation"], args.epochs)
        model.save(keras_path)
        training = {"trainedAt": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
                    "trainSeconds": round(time.time() - started), "epochs": args.epochs, "history": history}
        with open(training_path, "w") as f:
            json.dump(training, f)
        log(f"trained in {training['trainSeconds']} s")

    export_dir = os.path.join(args.work, "export")
    os.makedirs(export_dir, exist_ok=True)
    rng = np.random.default_rng(1234)
    calibration = splits["train"].inputs()[rng.choice(len(splits["train"].labels), CALIBRATION_SAMPLES, replace=False)]
    # Pin the calibrated input range to the full [0, 1]: one black and one white pixel. Without
    # them the int8 input scale follows the brightest calibration pixel and clips brighter ones
    # (bright scratches); with them the TFLite input is simply q = pixel - 128.
    calibration[0, 0, 0, 0], calibration[0, 0, 1, 0] = 0.0, 1.0
    convert.to_tflite_int8(model, calibration, os.path.join(export_dir, "model-int8.tflite"))
    log("wrote int8 TFLite")
    convert.to_onnx_fp32(model, os.path.join(export_dir, "model-fp32.onnx"))
    log("wrote fp32 ONNX")
    convert.to_onnx_int8(os.path.join(export_dir, "model-fp32.onnx"), calibration,
                         os.path.join(export_dir, "model-int8.onnx"), os.path.join(export_dir, "model-fp32-prep.onnx"))
    log("wrote int8 ONNX")

    val_x, test_x = splits["validation"].inputs(), splits["test"].inputs()
    keras_test = model.predict(test_x, batch_size=128, verbose=0).astype(np.float64)
    train_x = splits["train"].inputs()
    reference_stats = {"inputMean": [round(float(train_x.mean()), 6)], "inputStd": [round(float(train_x.std()), 6)]}
    del train_x

    runners, results = {}, {}
    for folder, fmt, file_name, words in VARIANTS:
        path = os.path.join(export_dir, file_name)
        runner = OnnxRunner(path) if fmt == "onnx" else TfliteRunner(path)
        runners[folder] = runner
        val_probs = runner.predict(val_x)
        chosen = evaluate.choose_threshold(splits["validation"].labels, evaluate.defect_scores(val_probs))
        test_probs = runner.predict(test_x)
        results[folder] = {
            "format": fmt, "precision": words, "fileBytes": os.path.getsize(path),
            "threshold": chosen,
            "validation": evaluate.evaluate(splits["validation"].labels, val_probs, chosen["threshold"]),
            "test": evaluate.evaluate(splits["test"].labels, test_probs, chosen["threshold"]),
            "vsKerasFp32OnTest": evaluate.agreement(keras_test, test_probs),
        }
        results[folder]["_test_probs"] = test_probs
        t = results[folder]["test"]["defect"]
        log(f"{folder}: threshold {chosen['threshold']:.3f}, test defect precision {t['precision']:.4f} "
            f"recall {t['recall']:.4f}, accuracy {results[folder]['test']['accuracy']:.4f}")
    fp32 = results["defect-fp32-onnx"]["_test_probs"]
    for folder in ("defect-int8-onnx", "defect-int8-tflite"):
        results[folder]["vsFp32OnnxOnTest"] = evaluate.agreement(fp32, results[folder]["_test_probs"])

    trained_at = training["trainedAt"]
    counts = {name: {"frames": int(len(s.labels)), "perClass": dict(zip(LABELS, np.bincount(s.labels, minlength=4).tolist()))}
              for name, s in splits.items()}
    versions = {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    packages_dir = os.path.join(args.repo, "models", "defect", "packages")
    for folder, fmt, file_name, words in VARIANTS:
        r = results[folder]
        metadata = {
            "variant": words,
            "trainedAt": trained_at,
            "datasetSeeds": seeds,
            "datasetCounts": counts,
            "parameters": int(model.count_params()),
            "thresholdChoice": {k: r["threshold"][k] for k in ("rule", "goodRange", "precision", "recall")},
            "testMetrics": {"defectPrecision": round(r["test"]["defect"]["precision"], 5),
                            "defectRecall": round(r["test"]["defect"]["recall"], 5),
                            "accuracy": round(r["test"]["accuracy"], 5),
                            "confusion": r["test"]["confusion"]["matrix"]},
            "agreementWithFp32": r.get("vsFp32OnnxOnTest", {"argmaxAgreement": 1.0, "maxAbsProbDiff": 0.0}),
            "modelCard": "models/defect/README.md",
            "builtWith": versions,
        }
        package.write_package(os.path.join(packages_dir, folder), os.path.join(export_dir, file_name), fmt,
                              runners[folder].tensors(), round(r["threshold"]["threshold"], 4), size,
                              reference_stats, f"Surface defect classifier (ok/scratch/crack/inclusion), {words}.",
                              metadata)
        log(f"wrote package {folder}")

    write_fixtures(args.repo, splits["test"], runners)

    report = {"trainedAt": trained_at, "trainSeconds": training["trainSeconds"], "epochs": training["epochs"],
              "parameters": int(model.count_params()), "datasetSeeds": seeds, "datasetCounts": counts,
              "referenceStats": reference_stats, "history": training["history"], "versions": versions,
              "kerasFp32Test": evaluate.evaluate(splits["test"].labels, keras_test,
                                                 results["defect-fp32-onnx"]["threshold"]["threshold"]),
              "variants": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in results.items()}}
    with open(os.path.join(args.repo, "models", "defect", "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    log("wrote models/defect/metrics.json")
    return 0


def write_fixtures(repo: str, test, runners: dict) -> None:
    """Held-out test frames with the Python reference runtimes' outputs, for the engine parity tests."""
    frames_src = os.path.join(test.directory, "frames")
    kept = sorted(int(n.split(".")[0]) for n in os.listdir(frames_src) if n.endswith(".jpg"))
    chosen = []
    for label_index in range(len(LABELS)):
        chosen += [i for i in kept if test.labels[i] == label_index][:FIXTURE_FRAMES_PER_CLASS]
    chosen.sort()
    out = os.path.join(repo, "test", "fixtures", "defect-parity")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "frames"))
    names, frames = [], []
    for i in chosen:
        name = f"test-{i:05d}.jpg"
        shutil.copyfile(os.path.join(frames_src, f"{i}.jpg"), os.path.join(out, "frames", name))
        names.append(name)
        frames.append({"file": f"frames/{name}", "label": LABELS[test.labels[i]], "seed": int(test.frame_seeds[i]),
                       "datasetSeed": test.seed, "datasetIndex": int(i)})
    pixels = test.pixels[chosen]
    pixels.tofile(os.path.join(out, "inputs.u8"))
    inputs = pixels.astype(np.float32) / 255.0
    expected = {}
    for folder, runner in runners.items():
        probs = runner.predict(inputs)
        expected[folder] = {name: [round(float(p), 7) for p in row] for name, row in zip(names, probs)}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    info = {
        "about": "Held-out test frames of the simulated camera and the probabilities the Python reference "
                 "runtimes (onnxruntime for ONNX, tf.lite.Interpreter for TFLite) gave for each package in "
                 "models/defect/packages, on the inputs in inputs.u8.",
        "inputs": {"file": "inputs.u8", "dtype": "uint8", "shape": [len(names), pixels.shape[1], pixels.shape[2], 1],
                   "layout": "NHWC", "order": names,
                   "howMade": "runtime decodeAndResize (dist/runtime/pipeline/preprocess.js) of each JPEG with the "
                              "packages' preprocessing; the model input is pixel / 255"},
        "tfliteInputQuantization": "q = clamp(round(x / scale) + zeroPoint, -128, 127); outputs dequantized as "
                                   "(q - zeroPoint) * scale",
        "referenceRuntimes": {"onnx": f"onnxruntime {onnxruntime.__version__} (Python), CPU provider",
                              "tflite": f"tf.lite.Interpreter {tf.__version__} (Python), built-in kernels without "
                                        "the default XNNPACK delegate (as tfjs-tflite-node runs them)"},
        "suggestedTolerance": {"defect-fp32-onnx": 1e-4, "defect-int8-onnx": 1e-4,
                               "defect-int8-tflite": "0 quantization steps expected with built-in kernels; "
                                                     "allow 1 step (1/256) for other kernel builds"},
        "frames": frames,
    }
    with open(os.path.join(out, "frames.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    log(f"wrote {len(names)} parity fixtures")


if __name__ == "__main__":
    sys.exit(main())
