"""ONNX clean-up and model packages: a model.onnx plus a vigil.json that runtime/model/manifest.ts
accepts (checked again by build.sh with the runtime's own schema). Shared with models/anomaly."""
import hashlib
import json
import os
import shutil

import onnx

BATCH = "batch"


def keep_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Drops the graph outputs not in `names` (skl2onnx's int64 `label`, which a Vigil manifest
    cannot describe and no postprocessing reads) and names the batch dimension, so that the
    runtime's check of the model's tensors against vigil.json accepts a batch of 1."""
    kept = [o for o in model.graph.output if o.name in names]
    if [o.name for o in kept] != names:
        raise ValueError(f"model outputs are {[o.name for o in model.graph.output]}, wanted {names}")
    del model.graph.output[:]
    model.graph.output.extend(kept)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0 and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH
    onnx.checker.check_model(model, full_check=True)
    return model


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def opsets(model: onnx.ModelProto) -> dict:
    return {(o.domain or "ai.onnx"): o.version for o in model.opset_import}


def operators(model: onnx.ModelProto) -> list[str]:
    return sorted({(f"{n.domain}." if n.domain else "") + n.op_type for n in model.graph.node})


def write_package(directory: str, model: onnx.ModelProto, manifest: dict) -> dict:
    """Writes directory/model.onnx and directory/vigil.json (manifest + files with sha256)."""
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    model_path = os.path.join(directory, "model.onnx")
    onnx.save(model, model_path)
    manifest = {**manifest, "format": "onnx", "file": "model.onnx", "files": {"model.onnx": sha256(model_path)}}
    with open(os.path.join(directory, "vigil.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


def telemetry_preprocessing(tags: list[str], window: int, normalization: dict) -> dict:
    """The TelemetryPreprocessing both model kinds use: one step per operating hour on the
    machine's hour meter, 'summary' features of the normalised window."""
    return {
        "type": "telemetry",
        "tags": tags,
        "axis": {"type": "counter", "tag": "hours", "step": 1},
        "window": window,
        "stride": 1,
        "holdSteps": 1,
        "normalize": normalization,
        "features": "summary",
    }


def tensor(name: str, shape: list[int]) -> dict:
    return {"name": name, "dtype": "float32", "shape": shape, "layout": "NC"}


def write_fixture(path: str, package: str, manifest: dict, cases: list[dict], note: str) -> None:
    """test/fixtures/machine-models-parity/<package>.json: inputs and the Python onnxruntime outputs."""
    pre = manifest["preprocessing"]
    fixture = {
        "package": package,
        "note": note,
        "tags": pre["tags"],
        "window": pre["window"],
        "normalize": pre["normalize"],
        "input": manifest["inputs"][0]["name"],
        "output": manifest["outputs"][0]["name"],
        "cases": cases,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
