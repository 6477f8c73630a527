"""C-MAPSS loading, the split by engine, normalisation, windows and the two feature forms the
runtime computes (runtime/model/manifest.ts TelemetryPreprocessing): 'window' and 'summary'."""
import os
from dataclasses import dataclass

import numpy as np

# NASA's column order after unit and cycle: what the package reads, as tags of one asset.
TAGS = ["setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]
COLUMNS = ["unit", "cycle"] + TAGS
SUBSETS = ("FD001", "FD003")
WINDOW = 30
RUL_CAP = 125
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 20080101  # PHM08; fixed so that validation-units.json is reproducible
# A tag whose training std is below this is constant in training (setting3, s1, s5, s16, s18,
# s19): it is still read, normalised with std 1 so that its value stays near 0, and both models
# ignore it (trees cannot split on it; the CNN's weights on it are zeroed).
CONSTANT_STD = 1e-6
SUMMARY_STATS = ["mean", "std", "min", "max", "last", "slope"]


def data_dir() -> str:
    return os.environ.get("VIGIL_CMAPSS_DIR") or os.path.normpath(
        os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "shared", "datasets", "cmapss"))


def load_subset(subset: str, directory: str | None = None) -> np.ndarray:
    """Rows of train_<subset>.txt as float64 [rows, 26], sorted by unit then cycle."""
    path = os.path.join(directory or data_dir(), f"train_{subset}.txt")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: set VIGIL_CMAPSS_DIR to the folder with NASA's train_FD00x.txt files")
    rows = np.loadtxt(path)
    if rows.ndim != 2 or rows.shape[1] != len(COLUMNS):
        raise SystemExit(f"{path}: expected {len(COLUMNS)} space-separated columns, got {rows.shape}")
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


@dataclass
class Engine:
    subset: str
    unit: int
    cycles: np.ndarray  # [T]
    raw: np.ndarray  # [T, tags] float64, as in the file

    @property
    def key(self) -> str:
        return f"{self.subset}/unit-{self.unit}"

    def to_failure(self) -> np.ndarray:
        """Cycles from each row to the last (failure) cycle of the run."""
        return (self.cycles[-1] - self.cycles).astype(np.float64)

    def rul(self) -> np.ndarray:
        """Piece-wise linear target: cycles to failure, capped at RUL_CAP."""
        return np.minimum(self.to_failure(), RUL_CAP)


def engines(subset: str, directory: str | None = None) -> list[Engine]:
    rows = load_subset(subset, directory)
    out = []
    for unit in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == unit]
        if not np.array_equal(np.diff(r[:, 1]), np.ones(len(r) - 1)):
            raise SystemExit(f"{subset} unit {unit}: cycles are not consecutive")
        out.append(Engine(subset, int(unit), r[:, 1].astype(int), r[:, 2:]))
    return out


def split_units(all_engines: dict[str, list[Engine]]) -> dict[str, list[int]]:
    """20 % of the units of each subset, drawn with a fixed seed: the validation engines."""
    rng = np.random.default_rng(SPLIT_SEED)
    chosen = {}
    for subset in SUBSETS:
        units = sorted(e.unit for e in all_engines[subset])
        count = int(round(VALIDATION_FRACTION * len(units)))
        chosen[subset] = sorted(int(u) for u in rng.choice(units, count, replace=False))
    return chosen


@dataclass
class Normalization:
    mean: np.ndarray
    std: np.ndarray
    constant: np.ndarray  # bool per tag

    @staticmethod
    def fit(train: list[Engine]) -> "Normalization":
        raw = np.concatenate([e.raw for e in train])
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        constant = std < CONSTANT_STD
        # Rounded as written to vigil.json, so that Python and the runtime use the same numbers.
        mean = np.array([float(f"{m:.9g}") for m in mean])
        std = np.array([1.0 if c else float(f"{s:.9g}") for s, c in zip(std, constant)])
        return Normalization(mean, std, constant)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Normalised values in float64, as the runtime keeps them (runtime/telemetry/window.ts);
        the 'window' input is these rounded to float32, 'summary' is computed from them."""
        return (raw - self.mean) / self.std


def windows(engine: Engine, norm: Normalization, stride: int = 1):
    """All full windows of one engine (a window ends at cycle index t >= WINDOW - 1; the first
    WINDOW - 1 cycles of a run are never scored on their own, as in the runtime, which only
    scores full windows). Returns (x [n, WINDOW, tags] normalised, capped RUL at the window's last
    cycle [n], last cycle [n], uncapped cycles to failure [n]); x is float64."""
    x = norm.apply(engine.raw)
    ends = np.arange(WINDOW - 1, len(x), stride)
    idx = ends[:, None] + np.arange(-WINDOW + 1, 1)[None, :]
    return x[idx], engine.rul()[ends], engine.cycles[ends], engine.to_failure()[ends]


def summary(x: np.ndarray) -> np.ndarray:
    """'summary' features of normalised windows [n, T, tags] -> [n, tags * 6]: per tag, in tag
    order, [mean, std (population, ddof 0), min, max, last, slope], slope being the least-squares
    slope per step over t = 0..T-1. Computed in float64 from the float64 normalised values (as the
    runtime's summarize() does), then float32."""
    w = x.astype(np.float64)
    t = np.arange(w.shape[1], dtype=np.float64)
    tc = t - t.mean()
    mean = w.mean(axis=1)
    slope = np.einsum("t,ntc->nc", tc, w - mean[:, None, :]) / np.sum(tc * tc)
    stats = np.stack([mean, w.std(axis=1), w.min(axis=1), w.max(axis=1), w[:, -1, :], slope], axis=2)
    return stats.reshape(len(w), -1).astype(np.float32)


@dataclass
class Split:
    x64: np.ndarray  # [n, WINDOW, tags] float64, normalised
    y: np.ndarray  # [n] RUL target (capped)
    engine: np.ndarray  # [n] index into `keys`
    cycle: np.ndarray  # [n] last cycle of the window
    cycles_to_failure: np.ndarray  # [n] uncapped
    keys: list[str]
    _x32: np.ndarray | None = None

    @staticmethod
    def of(engine_list: list[Engine], norm: Normalization) -> "Split":
        xs, ys, es, cs, fs = [], [], [], [], []
        for i, e in enumerate(engine_list):
            x, y, c, f = windows(e, norm)
            xs.append(x)
            ys.append(y)
            cs.append(c)
            fs.append(f)
            es.append(np.full(len(y), i))
        return Split(np.concatenate(xs), np.concatenate(ys), np.concatenate(es), np.concatenate(cs),
                     np.concatenate(fs), [e.key for e in engine_list])

    @property
    def x(self) -> np.ndarray:
        """The 'window' model input: float32 [n, WINDOW, tags]."""
        if self._x32 is None:
            self._x32 = self.x64.astype(np.float32)
        return self._x32

    def summary(self) -> np.ndarray:
        return summary(self.x64)
