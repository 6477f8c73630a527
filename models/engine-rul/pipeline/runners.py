"""The Python reference runtimes: onnxruntime for ONNX, tf.lite.Interpreter for TFLite. Each takes
float32 model inputs (N, ...) one at a time, as the runtime feeds them, and returns the RUL (N,)."""
import time

import numpy as np
import onnxruntime as ort
import tensorflow as tf


class OnnxRunner:
    def __init__(self, path: str, threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0]

    def tensors(self) -> dict:
        return {"input": (self.input.name, "float32", list(self.input.shape), None),
                "output": (self.output.name, "float32", list(self.output.shape), None)}

    def one(self, x: np.ndarray) -> float:
        return float(self.session.run([self.output.name], {self.input.name: x[np.newaxis]})[0].reshape(-1)[0])

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.array([self.one(x) for x in inputs.astype(np.float32)], dtype=np.float64)


class TfliteRunner:
    def __init__(self, path: str, threads: int = 1):
        # Built-in kernels without the default XNNPACK delegate: the reference the parity fixtures use.
        self.interpreter = tf.lite.Interpreter(
            model_path=path, num_threads=threads,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @staticmethod
    def _quant(detail):
        scale, zero = detail["quantization"]
        return {"scale": float(scale), "zeroPoint": int(zero)} if scale else None

    def tensors(self) -> dict:
        return {"input": (self.input["name"], np.dtype(self.input["dtype"]).name,
                          [int(d) for d in self.input["shape"]], self._quant(self.input)),
                "output": (self.output["name"], np.dtype(self.output["dtype"]).name,
                           [int(d) for d in self.output["shape"]], self._quant(self.output))}

    def one(self, x: np.ndarray) -> float:
        in_q, out_q = self._quant(self.input), self._quant(self.output)
        if in_q:
            # The engine's rule: q = round(x / scale) + zeroPoint (half away from zero), clamped.
            v = x.astype(np.float64) / in_q["scale"]
            q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + in_q["zeroPoint"], -128, 127)
            tensor = q.astype(self.input["dtype"])[np.newaxis]
        else:
            tensor = x[np.newaxis].astype(np.float32)
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        y = float(self.interpreter.get_tensor(self.output["index"]).reshape(-1)[0])
        return (y - out_q["zeroPoint"]) * out_q["scale"] if out_q else y

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.array([self.one(x) for x in inputs.astype(np.float32)], dtype=np.float64)


def latency_ms(runner, inputs: np.ndarray, runs: int = 2000, warmup: int = 50) -> dict:
    """Mean and median wall time of one inference (batch 1, one thread), inputs cycled."""
    inputs = inputs.astype(np.float32)
    for i in range(warmup):
        runner.one(inputs[i % len(inputs)])
    times = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        runner.one(inputs[i % len(inputs)])
        times[i] = time.perf_counter() - started
    return {"meanMs": round(float(times.mean() * 1e3), 4), "medianMs": round(float(np.median(times) * 1e3), 4),
            "p99Ms": round(float(np.percentile(times, 99) * 1e3), 4), "runs": runs}
