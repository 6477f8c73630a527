"""Writes a model package: the model file plus a vigil.json that runtime/model/manifest.ts accepts."""
import hashlib
import json
import os
import shutil

from data import RUL_CAP, TAGS, WINDOW
from evaluate import ALERT

VERSION = "1.0.0"


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensor(name: str, dtype: str, shape: list, quantization, layout: str) -> dict:
    spec = {"name": name, "dtype": dtype, "shape": shape, "layout": layout}
    if quantization:
        spec["quantization"] = quantization
    return spec


def preprocessing(norm, features: str) -> dict:
    return {
        "type": "telemetry",
        "tags": TAGS,
        "axis": {"type": "counter", "tag": "cycle", "step": 1},
        "window": WINDOW,
        "stride": 1,
        "holdSteps": 1,
        "normalize": {"mean": [float(m) for m in norm.mean], "std": [float(s) for s in norm.std]},
        "features": features,
    }


def write_package(directory: str, model_path: str, fmt: str, name: str, features: str, tensors: dict, norm,
                  reference_stats: dict, description: str, metadata: dict) -> dict:
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    file_name = "model.tflite" if fmt == "tflite" else "model.onnx"
    shutil.copyfile(model_path, os.path.join(directory, file_name))
    in_name, in_dtype, in_shape, in_q = tensors["input"]
    out_name, out_dtype, out_shape, out_q = tensors["output"]
    want = [1, WINDOW, len(TAGS)] if features == "window" else [1, len(TAGS) * 6]
    if in_shape != want or out_shape != [1, 1]:
        raise ValueError(f"{model_path}: tensor shapes {in_shape} -> {out_shape}, expected {want} -> [1, 1]")
    manifest = {
        "schemaVersion": 1,
        "name": name,
        "version": VERSION,
        "description": description,
        "format": fmt,
        "file": file_name,
        "inputs": [_tensor(in_name, in_dtype, in_shape, in_q, "NTC" if features == "window" else "NC")],
        "outputs": [_tensor(out_name, out_dtype, out_shape, out_q, "NC")],
        "preprocessing": preprocessing(norm, features),
        "postprocessing": {"type": "rul", "output": out_name, "cap": RUL_CAP, "unit": "cycles",
                           "alert": ALERT, "alertKind": "failure_risk"},
        "referenceStats": reference_stats,
        "metadata": metadata,
        "files": {file_name: sha256(os.path.join(directory, file_name))},
    }
    with open(os.path.join(directory, "vigil.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
