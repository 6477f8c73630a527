"""Run-to-failure data of the simulated pump and spindle (simulator/machines/export-runs.ts, one row
per simulated operating hour), its normalisation, windows and the 'summary' features the runtime
computes (runtime/model/manifest.ts TelemetryPreprocessing). Shared by the anomaly model's pipeline."""
import csv
import json
import os
from dataclasses import dataclass

import numpy as np

# The physical tags each model reads, in feature order. `mode` is left out (speed carries it) and
# `hours` is the axis, never a feature.
TAGS = {
    "pump": ["temperature", "vibration_rms", "current", "speed", "pressure"],
    "spindle": ["temperature", "vibration_rms", "current", "speed", "load"],
}
SUMMARY_STATS = ["mean", "std", "min", "max", "last", "slope"]
# Tags whose training std is below this would be normalised with std 1 (none is, here).
CONSTANT_STD = 1e-6


@dataclass
class Run:
    run_id: int
    seed: int
    hours: np.ndarray  # [n] the hour meter, 0, 1, 2, ... (one row per operating hour)
    raw: np.ndarray  # [n, tags] float64, sensor units
    ttf: np.ndarray  # [n] hours to failure at each row
    state: np.ndarray  # [n] 'healthy' | 'degrading'
    failure_mode: str
    failure_h: float


def load_runs(directory: str, kind: str) -> tuple[list[Run], dict]:
    """Every run of `<kind>-runs.csv` in `directory`, and meta.json."""
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    if meta["sampleHours"] != 1:
        raise SystemExit(f"{directory}: exported with --sample-hours {meta['sampleHours']}; the models step on 1 h")
    tags = TAGS[kind]
    by_run: dict[int, list[list[str]]] = {}
    with open(os.path.join(directory, f"{kind}-runs.csv")) as f:
        reader = csv.reader(f)
        header = next(reader)
        col = {c: i for i, c in enumerate(header)}
        for row in reader:
            by_run.setdefault(int(row[col["run_id"]]), []).append(row)
    summaries = {r["run_id"]: r for r in meta["runs"]}
    runs = []
    for run_id, rows in sorted(by_run.items()):
        hours = np.array([float(r[col["hours"]]) for r in rows])
        if not np.array_equal(hours, np.arange(len(rows), dtype=float)):
            raise SystemExit(f"{directory} run {run_id}: the hour meter does not step by 1 h from 0")
        runs.append(Run(
            run_id=run_id,
            seed=int(rows[0][col["seed"]]),
            hours=hours,
            raw=np.array([[float(r[col[t]]) for t in tags] for r in rows]),
            ttf=np.array([float(r[col["hours_to_failure"]]) for r in rows]),
            state=np.array([r[col["state"]] for r in rows]),
            failure_mode=rows[0][col["failure_mode"]],
            failure_h=float(summaries[run_id]["failure_h"]),
        ))
    return runs, meta


def split_runs(runs: list[Run], fraction: float, seed: int) -> tuple[list[Run], list[Run]]:
    """(fit, validation): a fixed random `fraction` of the runs for validation. By run, never by row."""
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(runs), int(round(fraction * len(runs))), replace=False).tolist())
    return [r for i, r in enumerate(runs) if i not in chosen], [r for i, r in enumerate(runs) if i in chosen]


@dataclass
class Normalization:
    mean: np.ndarray
    std: np.ndarray

    @staticmethod
    def fit(raw: np.ndarray) -> "Normalization":
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        # Rounded as written to vigil.json, so that Python and the runtime use the same numbers.
        mean = np.array([float(f"{m:.9g}") for m in mean])
        std = np.array([1.0 if s < CONSTANT_STD else float(f"{s:.9g}") for s in std])
        return Normalization(mean, std)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """z-scores in float64, as the runtime's windower keeps them (runtime/telemetry/window.ts)."""
        return (raw - self.mean) / self.std

    def to_json(self) -> dict:
        return {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std]}


def window_index(n: int, window: int) -> np.ndarray:
    """[windows, window] row indices of every full window of a run of n rows (stride 1): a window
    ends at row e >= window - 1, as in the runtime, which scores no shorter prefix."""
    ends = np.arange(window - 1, n)
    return ends[:, None] + np.arange(-window + 1, 1)[None, :]


def summary(z: np.ndarray) -> np.ndarray:
    """'summary' features of normalised windows [n, T, tags] -> [n, tags * 6]: per tag, in tag
    order, [mean, std (population, ddof 0), min, max, last, slope], slope being the least-squares
    slope per step over t = 0..T-1. In float64 from the float64 z-scores, then float32: what
    summarize() in runtime/telemetry/window.ts computes."""
    w = np.asarray(z, dtype=np.float64)
    t = np.arange(w.shape[1], dtype=np.float64)
    tc = t - t.mean()
    mean = w.mean(axis=1)
    slope = np.einsum("t,ntc->nc", tc, w - mean[:, None, :]) / np.sum(tc * tc)
    std = np.sqrt(np.mean((w - mean[:, None, :]) ** 2, axis=1))
    stats = np.stack([mean, std, w.min(axis=1), w.max(axis=1), w[:, -1, :], slope], axis=2)
    return stats.reshape(len(w), -1).astype(np.float32)


def feature_names(tags: list[str]) -> list[str]:
    return [f"{t}.{s}" for t in tags for s in SUMMARY_STATS]
