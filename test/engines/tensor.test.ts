import { describe, expect, it } from 'vitest';
import {
  dequantize,
  quantize,
  roundHalfAwayFromZero,
  shapeSize,
  shapesEqual,
} from '../../runtime/engines/tensor.js';

describe('tensor quantization', () => {
  it('rounds half away from zero like TFLite, not half to even', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49].map(roundHalfAwayFromZero)).toEqual([
      1, 2, 3, -1, -2, -3, 0,
    ]);
  });

  it('quantizes int8 with scale and zero point, clamping to -128..127', () => {
    const q = quantize(new Float32Array([0, 0.25, -0.25, 0.125, 100, -100]), 'int8', {
      scale: 0.25,
      zeroPoint: -1,
    });
    expect(Array.from(q)).toEqual([-1, 0, -2, 0, 127, -128]);
    expect(q).toBeInstanceOf(Int8Array);
  });

  it('quantizes uint8, clamping to 0..255', () => {
    const q = quantize(new Float32Array([0, 1, -1, 2]), 'uint8', { scale: 1 / 255, zeroPoint: 0 });
    expect(Array.from(q)).toEqual([0, 255, 0, 255]);
    expect(q).toBeInstanceOf(Uint8Array);
  });

  it('dequantizes back within half a step', () => {
    const params = { scale: 1 / 256, zeroPoint: -128 };
    const values = new Float32Array([0, 0.1, 0.5, 0.99]);
    const back = dequantize(quantize(values, 'int8', params), params);
    values.forEach((v, i) => expect(Math.abs(back[i]! - v)).toBeLessThanOrEqual(params.scale / 2 + 1e-7));
    expect(back[0]).toBe(0);
  });

  it('computes shape sizes and compares shapes', () => {
    expect(shapeSize([1, 128, 128, 1])).toBe(16384);
    expect(shapesEqual([1, 2], [1, 2])).toBe(true);
    expect(shapesEqual([1, 2], [1, 2, 1])).toBe(false);
    expect(shapesEqual([1, 2], [2, 1])).toBe(false);
  });
});
