import type { DType, Quantization, TensorSpec } from '../model/manifest.js';
import type { TensorArray } from './engine.js';

/**
 * Tensor arithmetic shared by the engines: affine quantization (real = scale * (q - zeroPoint))
 * and shape helpers. Kept free of any runtime library so that both engines and the tests agree
 * on one definition.
 */

const RANGE: Record<'int8' | 'uint8', { min: number; max: number }> = {
  int8: { min: -128, max: 127 },
  uint8: { min: 0, max: 255 },
};

/** Rounds half away from zero, as TFLite's reference kernels (std::round) do; Math.round does not. */
export function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** float32 values to int8/uint8 codes: q = clamp(round(x / scale) + zeroPoint). */
export function quantize(
  values: Float32Array,
  dtype: 'int8' | 'uint8',
  q: Quantization,
): Int8Array | Uint8Array {
  const out = dtype === 'int8' ? new Int8Array(values.length) : new Uint8Array(values.length);
  const { min, max } = RANGE[dtype];
  const inv = 1 / q.scale;
  for (let i = 0; i < values.length; i++) {
    const v = roundHalfAwayFromZero(values[i]! * inv) + q.zeroPoint;
    out[i] = v < min ? min : v > max ? max : v;
  }
  return out;
}

/** int8/uint8 codes back to float32: x = scale * (q - zeroPoint). */
export function dequantize(codes: Int8Array | Uint8Array, q: Quantization): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = q.scale * (codes[i]! - q.zeroPoint);
  return out;
}

/** Number of elements of a tensor with this shape. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapesEqual(a: readonly (number | string)[], b: readonly (number | string)[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(', ')}]`;
}

/** The typed array that holds a tensor of this dtype. */
export function allocate(dtype: DType, length: number): TensorArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(length);
    case 'int8':
      return new Int8Array(length);
    case 'uint8':
      return new Uint8Array(length);
  }
}

export function dtypeOf(data: TensorArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
}

/** A float32 input in model units to the dtype the model file takes, quantizing with the manifest's parameters. */
export function toModelDtype(spec: TensorSpec, values: Float32Array): TensorArray {
  if (spec.dtype === 'float32') return values;
  if (!spec.quantization)
    throw new Error(`tensor '${spec.name}' is ${spec.dtype} but has no quantization in vigil.json`);
  return quantize(values, spec.dtype, spec.quantization);
}

/** A model output to float32, dequantizing int8/uint8 with the manifest's parameters. */
export function toFloat32(spec: TensorSpec, data: TensorArray): Float32Array {
  if (data instanceof Float32Array) return data;
  if (!spec.quantization)
    throw new Error(`tensor '${spec.name}' is ${spec.dtype} but has no quantization in vigil.json`);
  return dequantize(data, spec.quantization);
}
