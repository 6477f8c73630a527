"""Trains the machine failure models (P(failure within HORIZON operating hours)) of the simulated
pump and spindle, chooses their alert thresholds on validation runs, measures them on held-out
runs (other simulator seeds), and writes the packages, parity fixtures and metrics.json.
Run through models/machine-failure/build.sh, which exports the runs first."""
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
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import package
from hysteresis import episodes
from simdata import TAGS, Normalization, Run, feature_names, load_runs, split_runs, summary, window_index

WINDOW = 24  # hours of history per prediction
HORIZON = 24.0  # P(failure within HORIZON operating hours)
CONSECUTIVE = 2  # windows in a row to raise or clear
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 4242
# Threshold rule (validation runs): the lowest raise level (longest lead) whose false alarms stay
# within the budget and whose alerts are mostly right; clear at half the raise level.
FALSE_ALARM_BUDGET = 0.3  # per 1000 h of healthy operation
MIN_EVENT_PRECISION = 0.9
GRID = [round(x, 2) for x in np.arange(0.05, 0.951, 0.05)]
GBT = dict(n_estimators=200, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=0)
OPSETS = {"": 15, "ai.onnx.ml": 3}
VERSION = "1.0.0"
FIXTURE_CASES = 16


def log(message: str) -> None:
    print(f"[machine-failure {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_windows(run: Run, norm: Normalization) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(summary features [n, 30], hours to failure at each window's last hour [n], last hour [n])."""
    idx = window_index(len(run.raw), WINDOW)
    return summary(norm.apply(run.raw)[idx]), run.ttf[idx[:, -1]], run.hours[idx[:, -1]]


def dataset(runs: list[Run], norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    parts = [run_windows(r, norm) for r in runs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]) <= HORIZON


class Scorer:
    """The shipped ONNX model, as the evaluation runs it."""

    def __init__(self, model: onnx.ModelProto):
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def proba(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["probabilities"], {self.input: x.astype(np.float32)})[0]


def evaluate(scored: list[tuple[Run, np.ndarray, np.ndarray]], raise_at: float, clear_at: float) -> dict:
    """Event metrics of the alert (hysteresis as the runtime applies it) over whole runs, and
    window metrics of the bare threshold. `scored`: (run, p(fail) per window, ttf per window)."""
    true_eps = false_eps = early = 0
    healthy_hours = 0
    leads: list[float] = []
    by_mode: dict[str, list] = {}
    tp = fp = fn = tn = 0
    for run, p, ttf in scored:
        healthy_hours += int(np.sum(ttf > HORIZON))
        first_lead = None
        for e in episodes(p, "above", raise_at, clear_at, CONSECUTIVE):
            last = len(p) - 1 if e.cleared is None else e.cleared - 1
            if ttf[last] <= HORIZON:  # active at some window within the horizon
                true_eps += 1
                if first_lead is None:
                    first_lead = float(ttf[e.raised])
                    early += first_lead > HORIZON
            else:
                false_eps += 1
        if first_lead is not None:
            leads.append(first_lead)
        by_mode.setdefault(run.failure_mode, []).append(first_lead)
        hit, pos = p >= raise_at, ttf <= HORIZON
        tp += int(np.sum(hit & pos))
        fp += int(np.sum(hit & ~pos))
        fn += int(np.sum(~hit & pos))
        tn += int(np.sum(~hit & ~pos))
    runs = len(scored)
    return {
        "runs": runs,
        "eventRecall": len(leads) / runs,
        "eventPrecision": true_eps / max(1, true_eps + false_eps),
        "alerts": true_eps + false_eps,
        "falseAlarms": false_eps,
        "healthyHours": healthy_hours,
        "falseAlarmsPer1000h": 1000 * false_eps / max(1, healthy_hours),
        "missedFailures": runs - len(leads),
        "alertsRaisedBeforeHorizon": int(early),
        "leadTimeHours": stats(leads),
        "byFailureMode": {
            mode: {"runs": len(v), "detected": sum(x is not None for x in v),
                   "medianLeadHours": round(float(np.median([x for x in v if x is not None])), 1)
                   if any(x is not None for x in v) else None}
            for mode, v in sorted(by_mode.items())
        },
        "windowPrecision": tp / max(1, tp + fp),
        "windowRecall": tp / max(1, tp + fn),
        "windowFalsePositiveRate": fp / max(1, fp + tn),
    }


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    v = np.asarray(values)
    return {"min": round(float(v.min()), 1), "p10": round(float(np.percentile(v, 10)), 1),
            "median": round(float(np.median(v)), 1), "mean": round(float(v.mean()), 1),
            "p90": round(float(np.percentile(v, 90)), 1), "max": round(float(v.max()), 1)}


def choose_threshold(scored) -> tuple[float, list[dict]]:
    table = []
    for t in GRID:
        m = evaluate(scored, t, round(t / 2, 3))
        table.append({"raise": t, "clear": round(t / 2, 3), "eventRecall": round(m["eventRecall"], 4),
                      "eventPrecision": round(m["eventPrecision"], 4),
                      "falseAlarmsPer1000h": round(m["falseAlarmsPer1000h"], 3),
                      "medianLeadHours": m["leadTimeHours"]["median"] if m["leadTimeHours"] else None})
    ok = [r for r in table if r["falseAlarmsPer1000h"] <= FALSE_ALARM_BUDGET and r["eventPrecision"] >= MIN_EVENT_PRECISION]
    if not ok:
        raise SystemExit(f"no threshold meets the false-alarm budget on validation: {table}")
    best_recall = max(r["eventRecall"] for r in ok)
    return min(r["raise"] for r in ok if r["eventRecall"] == best_recall), table


def round_floats(x, digits=4):
    """Four significant digits: what a model card can claim."""
    if isinstance(x, float):
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: round_floats(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [round_floats(v, digits) for v in x]
    return x


def build(kind: str, work: str, repo: str) -> dict:
    tags = TAGS[kind]
    train_runs, train_meta = load_runs(os.path.join(work, "data", "train"), kind)
    test_runs, test_meta = load_runs(os.path.join(work, "data", "test"), kind)
    shared = {r.seed for r in train_runs} & {r.seed for r in test_runs}
    if shared or train_meta["seed"] == test_meta["seed"]:
        raise SystemExit(f"training and held-out runs share seeds: {sorted(shared)[:5]}")
    fit_runs, val_runs = split_runs(train_runs, VALIDATION_FRACTION, SPLIT_SEED)
    log(f"{kind}: {len(fit_runs)} training runs, {len(val_runs)} validation runs (seed {train_meta['seed']}), "
        f"{len(test_runs)} held-out runs (seed {test_meta['seed']})")

    norm = Normalization.fit(np.concatenate([r.raw for r in fit_runs]))
    x_fit, y_fit = dataset(fit_runs, norm)
    log(f"{kind}: {len(x_fit)} training windows, {y_fit.mean():.1%} within {HORIZON:g} h of a failure; training")
    started = time.time()
    clf = GradientBoostingClassifier(**GBT).fit(x_fit, y_fit)
    train_seconds = time.time() - started
    log(f"{kind}: trained in {train_seconds:.0f} s")

    onx = convert_sklearn(clf, initial_types=[("input", FloatTensorType([None, x_fit.shape[1]]))],
                          options={id(clf): {"zipmap": False}}, target_opset=OPSETS)
    onx = package.keep_outputs(onx, ["probabilities"])
    scorer = Scorer(onx)

    def scored(runs):
        out = []
        for r in runs:
            x, ttf, _ = run_windows(r, norm)
            out.append((r, scorer.proba(x)[:, 1], ttf))
        return out

    val_scored = scored(val_runs)
    x_val = np.concatenate([run_windows(r, norm)[0] for r in val_runs])
    onnx_vs_sklearn = float(np.max(np.abs(scorer.proba(x_val) - clf.predict_proba(x_val))))
    raise_at, table = choose_threshold(val_scored)
    clear_at = round(raise_at / 2, 3)
    log(f"{kind}: threshold {raise_at} (clear {clear_at}); ONNX vs scikit-learn max |diff| {onnx_vs_sklearn:.2e}")
    validation = evaluate(val_scored, raise_at, clear_at)
    test_scored = scored(test_runs)
    test = evaluate(test_scored, raise_at, clear_at)
    y_test = np.concatenate([ttf <= HORIZON for _, _, ttf in test_scored])
    p_test = np.concatenate([p for _, p, _ in test_scored])
    test["windowRocAuc"] = float(roc_auc_score(y_test, p_test))
    log(f"{kind}: held-out recall {test['eventRecall']:.3f}, precision {test['eventPrecision']:.3f}, "
        f"false alarms {test['falseAlarmsPer1000h']:.2f}/1000 h, lead {test['leadTimeHours']}")

    x_single = x_val[:1].astype(np.float32)
    for _ in range(20):
        scorer.proba(x_single)
    t0 = time.perf_counter()
    for _ in range(500):
        scorer.proba(x_single)
    latency_ms = (time.perf_counter() - t0) / 500 * 1000

    name = f"{kind}-failure"
    folder = f"{kind}-failure-gbt"
    features = x_fit.shape[1]
    importances = sorted(zip(feature_names(tags), clf.feature_importances_), key=lambda kv: -kv[1])[:8]
    metrics = round_floats({
        "package": folder,
        "horizonHours": HORIZON,
        "windowHours": WINDOW,
        "alert": {"raise": raise_at, "clear": clear_at, "consecutive": CONSECUTIVE},
        "data": {
            "trainSeed": train_meta["seed"], "heldOutSeed": test_meta["seed"],
            "trainingRuns": len(fit_runs), "validationRuns": len(val_runs), "heldOutRuns": len(test_runs),
            "trainingHours": int(sum(len(r.raw) for r in fit_runs)),
            "validationHours": int(sum(len(r.raw) for r in val_runs)),
            "heldOutHours": int(sum(len(r.raw) for r in test_runs)),
            "trainingWindows": int(len(x_fit)), "positiveFraction": float(y_fit.mean()),
            "failureModes": sorted({r.failure_mode for r in train_runs}),
        },
        "model": {"type": "GradientBoostingClassifier", **{k: v for k, v in GBT.items()}, "features": features,
                  "trainSeconds": round(train_seconds, 1), "onnxBytes": len(onx.SerializeToString()),
                  "onnxOpsets": package.opsets(onx), "onnxOperators": package.operators(onx),
                  "onnxVsSklearnMaxAbsDiff": onnx_vs_sklearn,
                  "pythonOnnxruntimeLatencyMs": round(latency_ms, 4),
                  "topFeatures": [[k, round(float(v), 4)] for k, v in importances]},
        "thresholdTable": table,
        "validation": validation,
        "heldOut": test,
    })

    manifest = {
        "schemaVersion": 1,
        "name": name,
        "version": VERSION,
        "description": (f"Probability that the simulated {kind} fails within {HORIZON:g} operating hours, from the "
                        f"last {WINDOW} hours of {', '.join(tags)} (summary features; gradient-boosted trees). "
                        "Trained on simulator run-to-failure data; see models/machine-failure/README.md."),
        "inputs": [package.tensor("input", [1, features])],
        "outputs": [package.tensor("probabilities", [1, 2])],
        "preprocessing": package.telemetry_preprocessing(tags, WINDOW, norm.to_json()),
        "postprocessing": {
            "type": "failure_probability", "output": "probabilities", "index": 1, "horizon": HORIZON,
            "unit": "hours",
            "alert": {"direction": "above", "raise": raise_at, "clear": clear_at, "consecutive": CONSECUTIVE},
            "alertKind": "failure_risk",
        },
        "referenceStats": {"inputMean": [round(float(v), 6) for v in x_fit.mean(axis=0)],
                           "inputStd": [round(float(v), 6) for v in x_fit.std(axis=0)]},
        "metadata": {
            "trainedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "framework": f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}",
            "data": f"simulator run-to-failure runs: train seed {train_meta['seed']}, held-out seed {test_meta['seed']}",
            "metrics": {"heldOut": {k: metrics["heldOut"][k] for k in (
                "runs", "eventRecall", "eventPrecision", "falseAlarmsPer1000h", "leadTimeHours",
                "windowPrecision", "windowRecall", "windowRocAuc")}},
        },
    }
    written = package.write_package(os.path.join(repo, "models", "machine-failure", "packages", folder), onx, manifest)
    write_fixtures(repo, folder, written, scorer, norm, test_runs)
    return metrics


def write_fixtures(repo: str, folder: str, manifest: dict, scorer: Scorer, norm: Normalization,
                   runs: list[Run]) -> None:
    """16 held-out windows: 8 from far before a failure, 8 from the last horizon before one."""
    rng = np.random.default_rng(99)
    cases = []
    for i, r in enumerate(rng.choice(len(runs), FIXTURE_CASES, replace=False)):
        run = runs[int(r)]
        idx = window_index(len(run.raw), WINDOW)
        ttf = run.ttf[idx[:, -1]]
        pool = np.flatnonzero(ttf <= HORIZON) if i % 2 else np.flatnonzero(ttf > 3 * HORIZON)
        w = idx[int(rng.choice(pool))]
        features = summary(norm.apply(run.raw[w])[None])
        cases.append({
            "name": f"run{run.run_id}-h{int(run.hours[w[-1]])}",
            "hours": [float(h) for h in run.hours[w]],
            "raw": [[float(v) for v in row] for row in run.raw[w]],
            "features": [float(v) for v in features[0]],
            "expected": [float(v) for v in scorer.proba(features)[0]],
        })
    package.write_fixture(
        os.path.join(repo, "test", "fixtures", "machine-models-parity", f"{folder}.json"), folder, manifest, cases,
        "Held-out windows (raw sensor values per hour, in tag order), their summary features as "
        "models/machine-failure/pipeline/simdata.py computes them, and the Python onnxruntime "
        f"{onnxruntime.__version__} output of the package.")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="scratch folder outside the repo (exported runs)")
    parser.add_argument("--repo", required=True, help="repository root")
    parser.add_argument("--kinds", default="pump,spindle")
    args = parser.parse_args()
    started = time.time()
    metrics = {kind: build(kind, args.work, args.repo) for kind in args.kinds.split(",")}
    out = {
        "builtAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "buildSeconds": round(time.time() - started),
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                     "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
        **metrics,
    }
    with open(os.path.join(args.repo, "models", "machine-failure", "metrics.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    log(f"done in {out['buildSeconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
