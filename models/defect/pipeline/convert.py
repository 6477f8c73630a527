"""Exports of the trained Keras model: int8 TFLite, fp32 ONNX, int8 (QDQ) ONNX."""
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

ONNX_OPSET = 13


def to_tflite_int8(model: tf.keras.Model, calibration: np.ndarray, path: str) -> None:
    """Full-integer quantization: int8 weights, activations, input and output."""
    size = model.input_shape[1]
    # A fixed batch of 1 so that the file's input shape is [1,128,128,1], as the manifest says.
    fixed = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec([1, size, size, 1], tf.float32, name="input")])

    def representative():
        for sample in calibration:
            yield [sample[np.newaxis].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with open(path, "wb") as f:
        f.write(converter.convert())


def to_onnx_fp32(model: tf.keras.Model, path: str) -> None:
    size = model.input_shape[1]
    spec = [tf.TensorSpec([1, size, size, 1], tf.float32, name="input")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


class _Calibration(CalibrationDataReader):
    def __init__(self, input_name: str, samples: np.ndarray):
        self.input_name = input_name
        self.samples = iter(samples)

    def get_next(self):
        sample = next(self.samples, None)
        return None if sample is None else {self.input_name: sample[np.newaxis].astype(np.float32)}


def to_onnx_int8(fp32_path: str, calibration: np.ndarray, path: str, scratch_path: str) -> None:
    """Static QDQ quantization (int8 weights per channel, int8 activations); float input/output."""
    quant_pre_process(fp32_path, scratch_path, skip_symbolic_shape=True)
    input_name = onnx.load(scratch_path).graph.input[0].name
    quantize_static(scratch_path, path, _Calibration(input_name, calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
