"""Trains the pump anomaly model (Isolation Forest on normal behaviour only), chooses its alert
levels on normal validation data, measures false positives on held-out normal data and detection
of injected sensor faults, and writes the package, parity fixtures and metrics.json.
Run through models/anomaly/build.sh, which exports the runs first."""
import argparse
import datetime
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime
import sklearn
import skl2onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
# The simulator data, feature, hysteresis and package code is the failure model's: one definition.
sys.path.insert(0, os.path.join(HERE, "..", "..", "machine-failure", "pipeline"))

import iforest_onnx  # noqa: E402
import package  # noqa: E402
from hysteresis import episodes  # noqa: E402
from inject import FAULTS, PUMP_RANGES, WEAK_FAULTS, Fault, inject  # noqa: E402
from simdata import SUMMARY_STATS, TAGS, Normalization, Run, load_runs, split_runs, summary, window_index  # noqa: E402

KIND = "pump"
WINDOW = 6  # hours: short, so that a spike, a stuck sensor or a drift weighs in the summary
LOG_EPS = 1e-3  # std features enter as log(std + eps): a stuck sensor (std 0) stands out
IFOREST = dict(n_estimators=200, max_samples=512, random_state=0)
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 4242
RAISE_QUANTILE = 0.995  # of normal validation windows: a window false-positive rate of 0.5 %
CLEAR_QUANTILE = 0.95
CONSECUTIVE = 2
INJECT_SEED = 77
VERSION = "1.0.0"
FIXTURE_CASES = 16


def log(message: str) -> None:
    print(f"[anomaly {time.strftime('%H:%M:%S')}] {message}", flush=True)


def healthy(run: Run) -> np.ndarray:
    """The run's rows before its degradation starts: normal behaviour, every operating mode."""
    n = int(np.argmax(run.state != "healthy")) if np.any(run.state != "healthy") else len(run.state)
    return run.raw[:n]


def features(raw: np.ndarray, norm: Normalization) -> np.ndarray:
    """Summary features of every full window of `raw` [hours, tags] (what the runtime feeds)."""
    return summary(norm.apply(raw)[window_index(len(raw), WINDOW)])


def std_mask(tags: int) -> np.ndarray:
    mask = np.zeros(tags * len(SUMMARY_STATS), dtype=np.float32)
    mask[np.arange(tags) * len(SUMMARY_STATS) + SUMMARY_STATS.index("std")] = 1
    return mask


def log_std(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Numpy twin of the graph's first nodes, in float32 like them (training input only: the
    evaluation runs the ONNX model)."""
    x = x.astype(np.float32)
    return (np.log(x * mask + np.float32(LOG_EPS)) * mask + x * (1 - mask)).astype(np.float32)


class Scorer:
    """The shipped ONNX model. published(): the score the runtime publishes (higher = more
    unusual): the negated Isolation Forest decision function, since higherIsAnomalous is false."""

    def __init__(self, model: onnx.ModelProto):
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def decision(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["scores"], {"input": x.astype(np.float32)})[0]

    def published(self, x: np.ndarray) -> np.ndarray:
        return -self.decision(x)[:, 0].astype(np.float64)


def stats(values) -> dict | None:
    if len(values) == 0:
        return None
    v = np.asarray(values, dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "mean": round(float(v.mean()), 2),
            "p90": float(np.percentile(v, 90)), "max": float(v.max())}


def false_positives(scorer: Scorer, runs: list[Run], norm: Normalization, alert: dict) -> dict:
    windows = hits = alerts = 0
    runs_with_alert = 0
    for r in runs:
        s = scorer.published(features(healthy(r), norm))
        windows += len(s)
        hits += int(np.sum(s >= alert["raise"]))
        eps = episodes(s, "above", alert["raise"], alert["clear"], CONSECUTIVE)
        alerts += len(eps)
        runs_with_alert += bool(eps)
    return {"runs": len(runs), "normalWindows": windows, "windowFalsePositiveRate": hits / windows,
            "falseAlarms": alerts, "falseAlarmsPer1000h": 1000 * alerts / windows,
            "runsWithAFalseAlarm": runs_with_alert}


def detection(scorer: Scorer, runs: list[Run], norm: Normalization, alert: dict, fault: Fault,
              rng: np.random.Generator, tags: list[str]) -> dict:
    """One injection per held-out run and tag, at a random hour of the run's normal part."""
    per_tag = {}
    delays_all: list[int] = []
    trials_all = detected_all = active_before_all = 0
    for j, tag in enumerate(tags):
        trials = detected = active_before = 0
        delays = []
        for r in runs:
            raw = healthy(r)
            lo, hi = WINDOW + 12, len(raw) - fault.hours - WINDOW
            if hi <= lo:
                continue
            t0 = int(rng.integers(lo, hi))
            sign = float(rng.choice([-1.0, 1.0]))
            x = inject(raw, j, t0, fault, norm.std[j], sign, PUMP_RANGES[tag])
            s = scorer.published(features(x, norm))
            ends = np.arange(WINDOW - 1, len(x))  # window i ends at hour ends[i]
            last = t0 + fault.hours - 1 + WINDOW - 1  # the last window that still holds a faulty hour
            trials += 1
            eps = episodes(s, "above", alert["raise"], alert["clear"], CONSECUTIVE)
            if any(ends[e.raised] < t0 and (e.cleared is None or ends[e.cleared] >= t0) for e in eps):
                active_before += 1  # a false alarm was still up when the fault came: not counted as caught
                continue
            hit = [e for e in eps if t0 <= ends[e.raised] <= last]
            if hit:
                detected += 1
                delays.append(int(ends[hit[0].raised] - t0))
        per_tag[tag] = {"trials": trials, "detected": detected, "detectionRate": detected / max(1, trials),
                        "medianDelayHours": float(np.median(delays)) if delays else None}
        trials_all += trials
        detected_all += detected
        active_before_all += active_before
        delays_all += delays
    return {"fault": fault.label, "kind": fault.kind, "hours": fault.hours, "trials": trials_all,
            "detected": detected_all, "detectionRate": detected_all / max(1, trials_all),
            "alertAlreadyActive": active_before_all, "delayHours": stats(delays_all), "byTag": per_tag}


def degradation(scorer: Scorer, runs: list[Run], norm: Normalization, alert: dict) -> dict:
    """Not what it was trained for, but worth knowing: does wear (not a sensor fault) raise it?"""
    flagged = []
    for r in runs:
        n = len(healthy(r))
        s = scorer.published(features(r.raw, norm))
        ends = np.arange(WINDOW - 1, len(r.raw))
        raised = [ends[e.raised] for e in episodes(s, "above", alert["raise"], alert["clear"], CONSECUTIVE)
                  if ends[e.raised] >= n]
        if raised:
            flagged.append(float(r.ttf[raised[0]]))
    return {"runs": len(runs), "runsAlertedWhileDegrading": len(flagged),
            "hoursBeforeFailureOfFirstAlert": stats(flagged)}


def round_floats(x, digits=4):
    if isinstance(x, float):
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: round_floats(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [round_floats(v, digits) for v in x]
    return x


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="scratch folder outside the repo (exported runs)")
    parser.add_argument("--repo", required=True, help="repository root")
    args = parser.parse_args()
    started = time.time()
    tags = TAGS[KIND]
    train_runs, train_meta = load_runs(os.path.join(args.work, "data", "train"), KIND)
    test_runs, test_meta = load_runs(os.path.join(args.work, "data", "test"), KIND)
    if {r.seed for r in train_runs} & {r.seed for r in test_runs} or train_meta["seed"] == test_meta["seed"]:
        raise SystemExit("training and held-out runs share seeds")
    fit_runs, val_runs = split_runs(train_runs, VALIDATION_FRACTION, SPLIT_SEED)
    norm = Normalization.fit(np.concatenate([healthy(r) for r in fit_runs]))
    x_fit = np.concatenate([features(healthy(r), norm) for r in fit_runs])
    mask = std_mask(len(tags))
    log(f"{len(fit_runs)} training runs ({len(x_fit)} normal windows), {len(val_runs)} validation runs, "
        f"{len(test_runs)} held-out runs (seed {test_meta['seed']})")

    t0 = time.time()
    pipe = Pipeline([("scale", StandardScaler()), ("pca", PCA(whiten=True, random_state=0)),
                     ("iforest", IsolationForest(**IFOREST))]).fit(log_std(x_fit, mask))
    train_seconds = time.time() - t0
    onx = iforest_onnx.build(pipe, mask, LOG_EPS)
    scorer = Scorer(onx)

    # The compact graph against scikit-learn and against skl2onnx's own conversion of the pipeline.
    x_val = np.concatenate([features(healthy(r), norm) for r in val_runs])
    mine = scorer.decision(x_val)[:, 0]
    onnx_vs_sklearn = float(np.max(np.abs(mine - pipe.decision_function(log_std(x_val, mask)))))
    converted = convert_sklearn(pipe, initial_types=[("features", FloatTensorType([None, x_fit.shape[1]]))],
                                target_opset={"": 15, "ai.onnx.ml": 3})
    t1 = time.time()
    reference = onnxruntime.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    skl2onnx_load_seconds = time.time() - t1
    theirs = reference.run(["scores"], {"features": log_std(x_val, mask)})[0][:, 0]
    onnx_vs_skl2onnx = float(np.max(np.abs(mine - theirs)))
    log(f"compact graph vs scikit-learn max |diff| {onnx_vs_sklearn:.2e}, vs skl2onnx {onnx_vs_skl2onnx:.2e} "
        f"({len(converted.graph.node)} nodes, {len(converted.SerializeToString())} bytes, "
        f"loads in {skl2onnx_load_seconds:.1f} s)")
    published = scorer.published(x_val)
    alert = {"direction": "above",
             "raise": float(np.ceil(np.quantile(published, RAISE_QUANTILE) * 1e4) / 1e4),
             "clear": float(np.floor(np.quantile(published, CLEAR_QUANTILE) * 1e4) / 1e4),
             "consecutive": CONSECUTIVE}
    log(f"alert {alert}")

    validation = false_positives(scorer, val_runs, norm, alert)
    held_out = false_positives(scorer, test_runs, norm, alert)
    log(f"held-out normal: window FPR {held_out['windowFalsePositiveRate']:.4f}, "
        f"{held_out['falseAlarmsPer1000h']:.2f} false alarms per 1000 h")
    rng = np.random.default_rng(INJECT_SEED)
    faults = [detection(scorer, test_runs, norm, alert, f, rng, tags) for f in FAULTS]
    weak = [detection(scorer, test_runs, norm, alert, f, rng, tags) for f in WEAK_FAULTS]
    for f in faults + weak:
        log(f"{f['fault']}: detected {f['detected']}/{f['trials']}, delay {f['delayHours']}")
    degrading = degradation(scorer, test_runs, norm, alert)

    x1 = x_val[:1].astype(np.float32)
    for _ in range(20):
        scorer.decision(x1)
    t1 = time.perf_counter()
    for _ in range(500):
        scorer.decision(x1)
    latency_ms = (time.perf_counter() - t1) / 500 * 1000

    folder = "pump-anomaly-iforest"
    metrics = round_floats({
        "package": folder,
        "windowHours": WINDOW,
        "alert": alert,
        "data": {"trainSeed": train_meta["seed"], "heldOutSeed": test_meta["seed"],
                 "trainingRuns": len(fit_runs), "validationRuns": len(val_runs), "heldOutRuns": len(test_runs),
                 "trainingNormalHours": int(sum(len(healthy(r)) for r in fit_runs)),
                 "trainingWindows": int(len(x_fit))},
        "model": {"type": "log(std) -> StandardScaler -> PCA(whiten) -> IsolationForest", **IFOREST,
                  "logEps": LOG_EPS, "features": int(x_fit.shape[1]), "trainSeconds": round(train_seconds, 2),
                  "onnxBytes": len(onx.SerializeToString()), "onnxOpsets": package.opsets(onx),
                  "onnxOperators": package.operators(onx), "onnxNodes": len(onx.graph.node),
                  "onnxVsSklearnMaxAbsDiff": onnx_vs_sklearn, "onnxVsSkl2onnxMaxAbsDiff": onnx_vs_skl2onnx,
                  "skl2onnxGraph": {"nodes": len(converted.graph.node), "bytes": len(converted.SerializeToString()),
                                    "loadSeconds": skl2onnx_load_seconds},
                  "pythonOnnxruntimeLatencyMs": latency_ms},
        "validationNormal": validation,
        "heldOutNormal": held_out,
        "injectedFaults": faults,
        "weakerFaults": weak,
        "degradation": degrading,
    })
    manifest = {
        "schemaVersion": 1,
        "name": "pump-anomaly",
        "version": VERSION,
        "description": (f"Unusual behaviour of the simulated pump over the last {WINDOW} operating hours of "
                        f"{', '.join(tags)} (summary features; Isolation Forest trained on normal operation only). "
                        "Output: the Isolation Forest decision function (lower = more unusual); the published "
                        "score and the alert levels are its negation. See models/anomaly/README.md."),
        "inputs": [package.tensor("input", [1, int(x_fit.shape[1])])],
        "outputs": [package.tensor("scores", [1, 1])],
        "preprocessing": package.telemetry_preprocessing(tags, WINDOW, norm.to_json()),
        "postprocessing": {"type": "anomaly", "output": "scores", "index": 0, "higherIsAnomalous": False,
                           "alert": alert, "alertKind": "anomaly"},
        "referenceStats": {"inputMean": [round(float(v), 6) for v in x_fit.mean(axis=0)],
                           "inputStd": [round(float(v), 6) for v in x_fit.std(axis=0)]},
        "metadata": {
            "trainedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "framework": f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}",
            "data": f"normal operation of simulated pumps: train seed {train_meta['seed']}, "
                    f"held-out seed {test_meta['seed']}",
            "metrics": {
                "heldOutNormal": {k: metrics["heldOutNormal"][k] for k in ("windowFalsePositiveRate",
                                                                           "falseAlarmsPer1000h")},
                "injectedFaults": {f["fault"]: {"detectionRate": f["detectionRate"],
                                                "medianDelayHours": (f["delayHours"] or {}).get("median")}
                                   for f in metrics["injectedFaults"]},
            },
        },
    }
    written = package.write_package(os.path.join(args.repo, "models", "anomaly", "packages", folder), onx, manifest)
    write_fixtures(args.repo, folder, written, scorer, norm, test_runs, tags)
    out = {
        "builtAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "buildSeconds": round(time.time() - started),
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                     "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
        KIND: metrics,
    }
    with open(os.path.join(args.repo, "models", "anomaly", "metrics.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    log(f"done in {out['buildSeconds']} s")
    return 0


def write_fixtures(repo: str, folder: str, manifest: dict, scorer: Scorer, norm: Normalization,
                   runs: list[Run], tags: list[str]) -> None:
    """16 held-out windows: 8 normal, 8 holding an injected fault (spike, stuck, drift)."""
    rng = np.random.default_rng(98)
    cases = []
    kinds = [FAULTS[i % len(FAULTS)] for i in range(FIXTURE_CASES // 2)]
    for i in range(FIXTURE_CASES):
        run = runs[int(rng.integers(len(runs)))]
        raw = healthy(run)
        end = int(rng.integers(WINDOW + 20, len(raw) - 20))
        name = f"run{run.run_id}-h{end}-normal"
        if i % 2:
            fault = kinds[i // 2]
            j = int(rng.integers(len(tags)))
            t0 = end - int(rng.integers(0, min(fault.hours, WINDOW)))
            raw = inject(raw, j, t0, fault, norm.std[j], float(rng.choice([-1.0, 1.0])), PUMP_RANGES[tags[j]])
            name = f"run{run.run_id}-h{end}-{fault.kind}-{tags[j]}"
        rows = np.arange(end - WINDOW + 1, end + 1)
        x = summary(norm.apply(raw[rows])[None])
        cases.append({"name": name, "hours": [float(h) for h in run.hours[rows]],
                      "raw": [[float(v) for v in r] for r in raw[rows]], "features": [float(v) for v in x[0]],
                      "expected": [float(v) for v in scorer.decision(x)[0]]})
    package.write_fixture(
        os.path.join(repo, "test", "fixtures", "machine-models-parity", f"{folder}.json"), folder, manifest, cases,
        "Held-out windows (raw sensor values per hour, in tag order; half with an injected fault), their summary "
        "features as models/machine-failure/pipeline/simdata.py computes them, and the Python onnxruntime "
        f"{onnxruntime.__version__} output (the decision function) of the package.")


if __name__ == "__main__":
    sys.exit(main())
