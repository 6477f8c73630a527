"""The Python reference runtimes: onnxruntime for ONNX, tf.lite.Interpreter for TFLite.
Each takes normalised float inputs (N,128,128,1) in [0,1] and returns probabilities (N,4)."""
import numpy as np
import onnxruntime as ort
import tensorflow as tf

THREADS = 2


class OnnxRunner:
    def __init__(self, path: str):
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0]

    def tensors(self) -> dict:
        return {"input": (self.input.name, "float32", list(self.input.shape), None),
                "output": (self.output.name, "float32", list(self.output.shape), None)}

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        out = [self.session.run([self.output.name], {self.input.name: x[np.newaxis].astype(np.float32)})[0][0]
               for x in inputs]
        return np.array(out, dtype=np.float64)


class TfliteRunner:
    def __init__(self, path: str):
        # Without the default XNNPACK delegate: the plain built-in kernels are what tfjs-tflite-node
        # runs, and with them both give bit-identical int8 outputs (XNNPACK differs by a few steps).
        self.interpreter = tf.lite.Interpreter(
            model_path=path, num_threads=THREADS,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @staticmethod
    def _quant(detail):
        scale, zero = detail["quantization"]
        return {"scale": float(scale), "zeroPoint": int(zero)} if scale else None

    def tensors(self) -> dict:
        return {"input": (self.input["name"], np.dtype(self.input["dtype"]).name, [int(d) for d in self.input["shape"]],
                          self._quant(self.input)),
                "output": (self.output["name"], np.dtype(self.output["dtype"]).name,
                           [int(d) for d in self.output["shape"]], self._quant(self.output))}

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        in_q = self._quant(self.input)
        out_q = self._quant(self.output)
        results = []
        for x in inputs:
            if in_q:
                # The engine's rule: q = round(x / scale) + zeroPoint, clamped to the int8 range.
                q = np.clip(np.round(x / in_q["scale"]) + in_q["zeroPoint"], -128, 127)
                tensor = q.astype(self.input["dtype"])[np.newaxis]
            else:
                tensor = x[np.newaxis].astype(np.float32)
            self.interpreter.set_tensor(self.input["index"], tensor)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])[0]
            results.append((y.astype(np.float64) - out_q["zeroPoint"]) * out_q["scale"] if out_q else y)
        return np.array(results, dtype=np.float64)
