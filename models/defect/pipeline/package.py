"""Writes a model package: the model file plus a vigil.json that runtime/model/manifest.ts accepts."""
import hashlib
import json
import os
import shutil

from data import LABELS

MODEL_NAME = "defect-cnn"
MODEL_VERSION = "1.0.0"


def preprocessing(size: int) -> dict:
    # Must equal modelPreprocessing() in simulator/camera/export-dataset.ts: the training pixels.
    return {"type": "image", "width": size, "height": size, "colorSpace": "grayscale", "resize": "fill",
            "normalize": {"mean": [0], "std": [255]}, "maxInputPixels": 16777216}


def _tensor(name: str, dtype: str, shape: list, quantization, layout=None) -> dict:
    spec = {"name": name, "dtype": dtype, "shape": shape}
    if layout:
        spec["layout"] = layout
    if quantization:
        spec["quantization"] = quantization
    return spec


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_package(directory: str, model_path: str, fmt: str, tensors: dict, threshold: float,
                  size: int, reference_stats: dict, description: str, metadata: dict) -> dict:
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    file_name = "model.tflite" if fmt == "tflite" else "model.onnx"
    shutil.copyfile(model_path, os.path.join(directory, file_name))
    in_name, in_dtype, in_shape, in_q = tensors["input"]
    out_name, out_dtype, out_shape, out_q = tensors["output"]
    if in_shape != [1, size, size, 1] or out_shape != [1, len(LABELS)]:
        raise ValueError(f"{model_path}: unexpected tensor shapes {in_shape} -> {out_shape}")
    manifest = {
        "schemaVersion": 1,
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "description": description,
        "format": fmt,
        "file": file_name,
        "inputs": [_tensor(in_name, in_dtype, in_shape, in_q, "NHWC")],
        "outputs": [_tensor(out_name, out_dtype, out_shape, out_q, "NC")],
        "preprocessing": preprocessing(size),
        "postprocessing": {"type": "classification", "output": out_name, "labels": LABELS, "activation": "none",
                           "okLabel": "ok", "threshold": threshold, "alertKind": "defect"},
        "referenceStats": reference_stats,
        "metadata": metadata,
        "files": {file_name: sha256(os.path.join(directory, file_name))},
    }
    with open(os.path.join(directory, "vigil.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
