"""Inference-only latency of a model in Python onnxruntime: the baseline Vigil's overhead is
measured against (`vigil bench` runs it on the same model, inputs and thread count).

Usage: python bench/ort_baseline.py --model M.onnx --inputs inputs.f32 --shape 1,128,128,1 \
           --iterations 300 --threads 1
Prints one JSON object: {"runtime": "onnxruntime-python", "version": ..., "ms": [...]}.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help="float32 raw file of N inputs of --shape")
    ap.add_argument("--shape", required=True)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()

    shape = [int(x) for x in a.shape.split(",")]
    per = int(np.prod(shape))
    data = np.fromfile(a.inputs, dtype=np.float32)
    inputs = data.reshape(-1, *shape[1:])
    n = inputs.shape[0]

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feeds = [{name: inputs[i : i + 1].reshape(shape)} for i in range(n)]
    assert per == feeds[0][name].size
    for i in range(a.warmup):
        sess.run(None, feeds[i % n])
    ms = []
    for i in range(a.iterations):
        t = time.perf_counter()
        sess.run(None, feeds[i % n])
        ms.append((time.perf_counter() - t) * 1000.0)
    print(json.dumps({"runtime": "onnxruntime-python", "version": ort.__version__, "ms": ms}))


if __name__ == "__main__":
    main()
