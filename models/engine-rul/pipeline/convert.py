"""Exports: the random forest to ONNX (skl2onnx), the CNN to fp32 ONNX (tf2onnx), int8 QDQ ONNX
(onnxruntime static quantization) and int8 TFLite (full-integer post-training quantization)."""
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from data import TAGS, WINDOW

ONNX_OPSET = 13
# Upper bounds: skl2onnx declares the lowest opsets that express the forest (ONNX 9, ai.onnx.ml 1).
ML_OPSET = 3


def rf_to_onnx(model, features: int, path: str) -> None:
    proto = to_onnx(model, initial_types=[("summary", FloatTensorType([1, features]))],
                    final_types=[("rul", FloatTensorType([1, 1]))],
                    target_opset={"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET})
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def _window_spec():
    return [tf.TensorSpec([1, WINDOW, len(TAGS)], tf.float32, name="window")]


def cnn_to_onnx_fp32(model: tf.keras.Model, path: str) -> None:
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=_window_spec(), opset=ONNX_OPSET)
    # tf2onnx names the output after the Keras layer ('rul'); check rather than assume.
    if [o.name for o in proto.graph.output] != ["rul"] or [i.name for i in proto.graph.input] != ["window"]:
        raise RuntimeError(f"unexpected ONNX tensor names {[i.name for i in proto.graph.input]} -> "
                           f"{[o.name for o in proto.graph.output]}")
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


class _Calibration(CalibrationDataReader):
    def __init__(self, input_name: str, samples: np.ndarray):
        self.input_name = input_name
        self.samples = iter(samples)

    def get_next(self):
        sample = next(self.samples, None)
        return None if sample is None else {self.input_name: sample[np.newaxis].astype(np.float32)}


def cnn_to_onnx_int8(fp32_path: str, calibration: np.ndarray, path: str, scratch_path: str) -> None:
    """Static QDQ quantization (per-channel int8 weights, int8 activations); float input/output."""
    quant_pre_process(fp32_path, scratch_path, skip_symbolic_shape=True)
    input_name = onnx.load(scratch_path).graph.input[0].name
    quantize_static(scratch_path, path, _Calibration(input_name, calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def cnn_to_tflite_int8(model: tf.keras.Model, calibration: np.ndarray, path: str) -> None:
    """Full-integer quantization: int8 weights, activations, input and output (the engine
    quantizes the float window with the input's scale/zero point and dequantizes the RUL)."""
    fixed = tf.function(lambda x: model(x, training=False), input_signature=_window_spec())

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
