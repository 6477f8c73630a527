"""Loading of the data sets written by simulator/camera/export-dataset.ts."""
import csv
import json
import os
from dataclasses import dataclass

import numpy as np

LABELS = ["ok", "scratch", "crack", "inclusion"]
OK_INDEX = LABELS.index("ok")


@dataclass
class Split:
    name: str
    directory: str
    seed: int
    pixels: np.ndarray  # (N, H, W, 1) uint8, exactly what the runtime's decodeAndResize produced
    labels: np.ndarray  # (N,) int64 index into LABELS
    frame_seeds: np.ndarray  # (N,) seed of each frame in the simulator

    def inputs(self) -> np.ndarray:
        """Normalised model input: (pixel - 0) / 255, as the manifest's preprocessing says."""
        return self.pixels.astype(np.float32) / 255.0


def load_split(name: str, directory: str) -> Split:
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    count, height, width, channels = meta["inputShape"]
    pixels = np.fromfile(os.path.join(directory, "pixels.u8"), dtype=np.uint8)
    if pixels.size != count * height * width * channels:
        raise ValueError(f"{directory}/pixels.u8 holds {pixels.size} bytes, meta.json promises {count}x{height}x{width}x{channels}")
    labels, seeds = [], []
    with open(os.path.join(directory, "labels.csv")) as f:
        for row in csv.DictReader(f):
            labels.append(LABELS.index(row["label"]))
            seeds.append(int(row["seed"]))
    if len(labels) != count:
        raise ValueError(f"{directory}/labels.csv has {len(labels)} rows, expected {count}")
    return Split(name, directory, int(meta["seed"]), pixels.reshape(count, height, width, channels),
                 np.array(labels, dtype=np.int64), np.array(seeds, dtype=np.int64))
