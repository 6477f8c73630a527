import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import { isImageManifest } from '../../runtime/model/manifest.js';
import { silentLogger } from '../../runtime/log.js';
import { decodeAndResize, normalize } from '../../runtime/pipeline/preprocess.js';
import { OPTIONS, ROOT } from './support.js';

/**
 * Engine parity: Vigil's engines must give, on the same preprocessed pixels, the probabilities
 * the Python reference runtimes gave when the packages were built (models/defect/pipeline/main.py
 * write_fixtures: onnxruntime for ONNX, tf.lite.Interpreter for TFLite). Fixture format
 * (test/fixtures/defect-parity/):
 *   frames.json   { inputs: { file: 'inputs.u8', shape: [N, H, W, 1], order: [frame names] },
 *                   frames: [{ file: 'frames/<name>', label }] }
 *   inputs.u8     N*H*W bytes: decodeAndResize of each JPEG with the package preprocessing
 *   expected.json { '<package folder>': { '<frame name>': [probability per label] } }
 *
 * Tolerances (absolute, per probability). Measured on the development machine (x86-64, 2 cores)
 * on two builds of the packages: fp32 ONNX and int8 ONNX at most 5e-8 (the rounding of
 * expected.json's 7 decimals: onnxruntime 1.18 in Python and onnxruntime-node 1.30 computed the
 * same numbers); int8 TFLite 5e-8 on one build and exactly one output step (1/256) on another.
 * The limits leave room for other CPUs, whose kernels (AVX2, AVX-512, VNNI, NEON) may sum in
 * another order or requantize one step differently:
 * - fp32 ONNX: 1e-5;
 * - int8 QDQ ONNX: 1e-3 (about a quarter of one int8 step of a probability);
 * - int8 TFLite: one step of the output's quantization scale (1/256). tfjs-tflite-node ships an
 *   older TFLite C library than the Python tf.lite used to make expected.json, and the Python side
 *   rounds the input half to even (np.round) where Vigil and TFLite round half away from zero, so
 *   a single output code may land one step away.
 * And the predicted class (arg max) must agree on every frame.
 */

const FIXTURES = path.join(ROOT, 'test/fixtures/defect-parity');
const PACKAGES = path.join(ROOT, 'models/defect/packages');

interface FramesInfo {
  inputs: { file: string; shape: [number, number, number, number]; order: string[] };
  frames: Array<{ file: string; label: string }>;
}

async function fixtures(): Promise<{
  info: FramesInfo;
  pixels: Uint8Array;
  expected: Record<string, Record<string, number[]>>;
}> {
  const info = JSON.parse(await readFile(path.join(FIXTURES, 'frames.json'), 'utf8')) as FramesInfo;
  const pixels = new Uint8Array(await readFile(path.join(FIXTURES, info.inputs.file)));
  const expected = JSON.parse(await readFile(path.join(FIXTURES, 'expected.json'), 'utf8')) as Record<
    string,
    Record<string, number[]>
  >;
  return { info, pixels, expected };
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

const CASES: Array<{ folder: string; tolerance: (outputScale: number | undefined) => number }> = [
  { folder: 'defect-fp32-onnx', tolerance: () => 1e-5 },
  { folder: 'defect-int8-onnx', tolerance: () => 1e-3 },
  { folder: 'defect-int8-tflite', tolerance: (scale) => (scale ?? 1 / 256) + 1e-6 },
];

describe('engine parity with the Python reference runtimes', () => {
  it.each(CASES)(
    '$folder matches within its tolerance and agrees on every predicted class',
    async ({ folder, tolerance }) => {
      const { info, pixels, expected } = await fixtures();
      const engine = await loadEngine(path.join(PACKAGES, folder), OPTIONS, silentLogger());
      engines.push(engine);
      const m = engine.manifest;
      if (!isImageManifest(m)) throw new Error(`${folder} is not an image model`);
      const input = m.inputs[0]!;
      const output = m.outputs.find((o) => o.name === m.postprocessing.output)!;
      const limit = tolerance(output.quantization?.scale);
      const [n, h, w, c] = info.inputs.shape;
      const frameSize = h * w * c;
      expect(pixels.length).toBe(n * frameSize);

      let maxDiff = 0;
      let totalMs = 0;
      for (let i = 0; i < n; i++) {
        const name = info.inputs.order[i]!;
        const image = {
          pixels: pixels.subarray(i * frameSize, (i + 1) * frameSize),
          width: w,
          height: h,
          channels: c,
          sourceWidth: w,
          sourceHeight: h,
        };
        const data = normalize(image, m.preprocessing, input.layout === 'NCHW' ? 'NCHW' : 'NHWC');
        const started = performance.now();
        const out = await engine.run({ [input.name]: { dtype: 'float32', shape: input.shape, data } });
        totalMs += performance.now() - started;
        const got = out[output.name]!.data;
        const want = expected[folder]![name]!;
        expect(got.length).toBe(want.length);
        for (let k = 0; k < want.length; k++) maxDiff = Math.max(maxDiff, Math.abs(got[k]! - want[k]!));
        expect(argmax(got), `${folder} ${name}: predicted class`).toBe(argmax(want));
      }
      console.info(
        `parity ${folder}: ${n} frames, max |diff| ${maxDiff.toExponential(2)} (tolerance ${limit.toExponential(2)}), ` +
          `${(totalMs / n).toFixed(2)} ms per inference on ${engine.backend}/${engine.provider}`,
      );
      expect(maxDiff).toBeLessThanOrEqual(limit);
    },
  );

  it('decodeAndResize of the JPEG frames gives exactly the stored preprocessed pixels', async () => {
    const { info, pixels } = await fixtures();
    const manifest = JSON.parse(
      await readFile(path.join(PACKAGES, 'defect-fp32-onnx', 'vigil.json'), 'utf8'),
    );
    const [, h, w, c] = info.inputs.shape;
    const frameSize = h * w * c;
    let maxDiff = 0;
    let differing = 0;
    for (let i = 0; i < info.inputs.order.length; i++) {
      const name = info.inputs.order[i]!;
      const frame = info.frames.find((f) => f.file.endsWith(`/${name}`))!;
      const decoded = await decodeAndResize(
        await readFile(path.join(FIXTURES, frame.file)),
        manifest.preprocessing,
      );
      expect([decoded.width, decoded.height, decoded.channels]).toEqual([w, h, c]);
      const stored = pixels.subarray(i * frameSize, (i + 1) * frameSize);
      for (let k = 0; k < frameSize; k++) {
        const d = Math.abs(decoded.pixels[k]! - stored[k]!);
        if (d > 0) differing++;
        maxDiff = Math.max(maxDiff, d);
      }
    }
    expect({ maxDiff, differing }).toEqual({ maxDiff: 0, differing: 0 });
  });
});
