"""Sensor faults injected into held-out normal data, to measure what the anomaly model catches.
The same three kinds the simulator's FaultyMachine injects live (simulator/machines/faults.ts),
applied to the hourly rows of one tag, in sensor units:

- spike: one hour reads value + sign * k * sigma (sign drawn +/-1), clipped to the sensor's range;
- stuck: for `hours` hours the tag repeats, with good quality, the last value before the fault;
- drift: an offset sign * rate * sigma * (h + 1) in the fault's hour h = 0 .. hours - 1, clipped.

sigma is the tag's standard deviation over normal training data (the package's normalize.std),
so that one setting means the same for a temperature and a pressure."""
from dataclasses import dataclass

import numpy as np

# The sensors' physical ranges (simulator/machines/profiles.ts, pump): a sensor cannot read beyond.
PUMP_RANGES = {"temperature": (-20, 150), "vibration_rms": (0, 50), "current": (0, 100), "speed": (0, 3600),
               "pressure": (0, 16)}


@dataclass(frozen=True)
class Fault:
    kind: str  # spike | stuck | drift
    label: str  # how the model card names the setting
    hours: int  # how long the fault lasts
    sigmas: float = 0.0  # spike height, in sigma
    rate: float = 0.0  # drift, sigma per hour


FAULTS = [
    Fault("spike", "spike 6 sigma, 1 h", 1, sigmas=6),
    Fault("stuck", "stuck 12 h", 12),
    Fault("drift", "drift 0.25 sigma/h, 24 h", 24, rate=0.25),
]
# Weaker settings, to show where detection fades.
WEAK_FAULTS = [
    Fault("spike", "spike 3 sigma, 1 h", 1, sigmas=3),
    Fault("stuck", "stuck 6 h", 6),
    Fault("drift", "drift 0.1 sigma/h, 24 h", 24, rate=0.1),
]


def inject(raw: np.ndarray, tag: int, t0: int, fault: Fault, sigma: float, sign: float,
           sensor_range: tuple[float, float]) -> np.ndarray:
    """A copy of `raw` [hours, tags] with `fault` on column `tag` from row t0."""
    x = raw.copy()
    end = min(len(x), t0 + fault.hours)
    if fault.kind == "spike":
        x[t0:end, tag] += sign * fault.sigmas * sigma
    elif fault.kind == "stuck":
        x[t0:end, tag] = x[t0 - 1, tag]
    elif fault.kind == "drift":
        x[t0:end, tag] += sign * fault.rate * sigma * np.arange(1, end - t0 + 1)
    else:
        raise ValueError(fault.kind)
    x[t0:end, tag] = np.clip(x[t0:end, tag], *sensor_range)
    return x
