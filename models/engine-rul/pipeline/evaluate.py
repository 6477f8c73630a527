"""Metrics on the validation engines: RMSE (all windows, last window), the PHM08 score, the
horizon alert per window, and the alert's lead time with the manifest's hysteresis."""
import numpy as np

from data import RUL_CAP

HORIZON = 30
ALERT = {"direction": "below", "raise": HORIZON, "clear": 40, "consecutive": 2}


def clip(pred: np.ndarray) -> np.ndarray:
    """What the runtime publishes: outputs clipped to [0, cap] (RulPostprocessing)."""
    return np.clip(pred, 0.0, RUL_CAP)


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def phm08(pred: np.ndarray, true: np.ndarray) -> float:
    """PHM08 challenge score: late predictions (d > 0) cost more than early ones."""
    d = pred - true
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1.0, np.exp(d / 10.0) - 1.0)))


def alert_events(pred: np.ndarray, alert: dict = ALERT) -> list[tuple[str, int]]:
    """Replays the hysteresis over one engine's windows in order, as runtime/pipeline/hysteresis.ts
    does for direction 'below': raised after `consecutive` windows in a row with RUL <= `raise`,
    cleared after `consecutive` windows in a row with RUL > `clear`.
    Returns [('raise' | 'clear', window index)]."""
    events, active, run = [], False, 0
    for i, p in enumerate(pred):
        crossing = (p > alert["clear"]) if active else (p <= alert["raise"])
        run = run + 1 if crossing else 0
        if run >= alert["consecutive"]:
            active = not active
            events.append(("raise" if active else "clear", i))
            run = 0
    return events


def evaluate(pred_raw: np.ndarray, split, subset_of_engine: list[str]) -> dict:
    """pred_raw: model outputs for every validation window (split order: engine by engine, cycle
    ascending). The true RUL is the capped training target for RMSE/PHM08 and the real cycles
    to failure (uncapped) for the alert."""
    pred = clip(pred_raw)
    true = split.y
    last = np.array([np.flatnonzero(split.engine == e)[-1] for e in range(len(split.keys))])
    out = {
        "windows": int(len(true)),
        "engines": int(len(split.keys)),
        "rmseAllWindows": round(rmse(pred, true), 3),
        "maeAllWindows": round(float(np.mean(np.abs(pred - true))), 3),
        "rmseLastWindow": round(rmse(pred[last], true[last]), 3),
        "phm08AllWindows": round(phm08(pred, true), 1),
        "phm08PerWindow": round(phm08(pred, true) / len(true), 3),
        "phm08LastWindow": round(phm08(pred[last], true[last]), 1),
        "rmseTrueRulBelow60": round(rmse(pred[true < 60], true[true < 60]), 3),
        "bySubset": {},
    }
    subsets = np.array(subset_of_engine)[split.engine]
    for s in sorted(set(subset_of_engine)):
        sel = subsets == s
        last_s = last[np.array(subset_of_engine) == s]
        out["bySubset"][s] = {"windows": int(sel.sum()), "rmseAllWindows": round(rmse(pred[sel], true[sel]), 3),
                              "rmseLastWindow": round(rmse(pred[last_s], true[last_s]), 3),
                              "phm08AllWindows": round(phm08(pred[sel], true[sel]), 1)}

    # Per window: does the alert condition (predicted RUL under the horizon) match the truth?
    to_failure = split.cycles_to_failure
    positive, flagged = to_failure < HORIZON, pred < HORIZON
    tp, fp, fn = int(np.sum(positive & flagged)), int(np.sum(~positive & flagged)), int(np.sum(positive & ~flagged))
    out["horizonPerWindow"] = {"horizon": HORIZON, "truePositives": tp, "falsePositives": fp, "falseNegatives": fn,
                               "precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4)}

    # Per engine: when does the hysteresis alert first fire, in cycles before the failure?
    leads, missed, early, raises, clears = [], [], [], 0, 0
    for e, key in enumerate(split.keys):
        idx = np.flatnonzero(split.engine == e)
        events = alert_events(pred[idx])
        raises += sum(1 for k, _ in events if k == "raise")
        clears += sum(1 for k, _ in events if k == "clear")
        first = next((i for k, i in events if k == "raise"), None)
        if first is None:
            missed.append(key)
            continue
        lead = int(to_failure[idx][first])
        leads.append(lead)
        if lead > 2 * HORIZON:
            early.append({"engine": key, "leadCycles": lead})
    leads_a = np.array(leads) if leads else np.array([np.nan])
    out["alert"] = {
        "rule": ALERT,
        "engines": len(split.keys),
        "raisedBeforeFailure": len(leads),
        "missed": missed,
        "leadCyclesMean": round(float(np.mean(leads_a)), 1),
        "leadCyclesMedian": round(float(np.median(leads_a)), 1),
        "leadCyclesMin": int(np.min(leads_a)) if leads else None,
        "leadCyclesMax": int(np.max(leads_a)) if leads else None,
        "firstRaiseEarlierThan2xHorizon": early,
        "raises": raises,
        "clears": clears,
    }
    return out
