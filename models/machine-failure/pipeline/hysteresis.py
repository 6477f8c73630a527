"""The alert hysteresis of runtime/pipeline/hysteresis.ts (manifest AlertHysteresis), as the runtime
applies it to the sequence of window scores of one asset. For direction 'above': raised once the
score is >= raise in `consecutive` windows in a row, cleared once it is < clear in `consecutive`
windows in a row ('below' mirrors it). A window that does not qualify breaks the streak."""
from dataclasses import dataclass

import numpy as np


@dataclass
class Episode:
    raised: int  # index of the window at which the alert was raised
    cleared: int | None  # index at which it was cleared; None: still active at the end


def episodes(scores: np.ndarray, direction: str, raise_at: float, clear_at: float, consecutive: int) -> list[Episode]:
    if direction == "above" and clear_at > raise_at or direction == "below" and clear_at < raise_at:
        raise ValueError(f"clear {clear_at} is past raise {raise_at} for direction {direction}")
    out: list[Episode] = []
    active = False
    streak = 0
    for i, v in enumerate(np.asarray(scores, dtype=np.float64)):
        if active:
            past = v < clear_at if direction == "above" else v > clear_at
        else:
            past = v >= raise_at if direction == "above" else v <= raise_at
        if not past:
            streak = 0
            continue
        streak += 1
        if streak < consecutive:
            continue
        streak = 0
        if active:
            out[-1].cleared = i
        else:
            out.append(Episode(i, None))
        active = not active
    return out
