import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import { silentLogger } from '../../runtime/log.js';
import type { TelemetryPreprocessing } from '../../runtime/model/manifest.js';
import { summarize } from '../../runtime/telemetry/window.js';
import { OPTIONS, ROOT } from './support.js';

/**
 * Engine parity of the aircraft engine RUL packages (models/engine-rul/packages): Vigil's engines
 * must give, on the same model inputs, the RUL the Python reference runtimes gave when the
 * packages were built (models/engine-rul/pipeline/main.py write_fixtures). Fixture format
 * (test/fixtures/engine-rul-parity/):
 *   cases.json    { tags, window, cases: [{ id, asset, cycles: [first, last], raw: [window][tags] }] }
 *                 raw = the 30 rows of 24 tags exactly as in NASA's C-MAPSS file, oldest first
 *   window.f32    N x 30 x 24 float32 LE: the normalised windows ('window' features, NTC)
 *   summary.f32   N x 144 float32 LE: their 'summary' features
 *   expected.json { '<package folder>': { '<case id>': RUL before clipping } }
 *
 * Tolerances, in cycles of RUL. Measured on the development machine (x86-64, 2 cores): every
 * package within 5e-7 (onnxruntime 1.18 in Python and onnxruntime-node 1.30 compute the same
 * numbers; TFLite with and without XNNPACK gave the same int8 codes). The limits leave room for
 * other CPUs, whose kernels may sum in another order or requantize one step differently:
 * - fp32 CNN and random forest (ONNX): 1e-4 relative (of max(1, |RUL|));
 * - int8 QDQ CNN (ONNX): 0.5 cycles;
 * - int8 TFLite CNN: two steps of the output's quantization scale (about 1.2 cycles).
 * The first test checks that the runtime's normalisation and summarize() (runtime/telemetry/
 * window.ts) give, from NASA's raw rows, exactly the inputs the packages were built and scored on.
 */

const FIXTURES = path.join(ROOT, 'test/fixtures/engine-rul-parity');
const PACKAGES = path.join(ROOT, 'models/engine-rul/packages');

interface Case {
  id: string;
  asset: string;
  cycles: [number, number];
  raw: number[][];
}
interface CasesInfo {
  tags: string[];
  window: number;
  cases: Case[];
}

async function floats(file: string): Promise<Float32Array> {
  const bytes = await readFile(path.join(FIXTURES, file));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

async function fixtures(): Promise<{
  info: CasesInfo;
  inputs: Record<'window' | 'summary', Float32Array>;
  expected: Record<string, Record<string, number>>;
}> {
  const info = JSON.parse(await readFile(path.join(FIXTURES, 'cases.json'), 'utf8')) as CasesInfo;
  const expected = JSON.parse(await readFile(path.join(FIXTURES, 'expected.json'), 'utf8')) as Record<
    string,
    Record<string, number>
  >;
  return {
    info,
    inputs: { window: await floats('window.f32'), summary: await floats('summary.f32') },
    expected,
  };
}

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

const CASES: Array<{ folder: string; tolerance: (want: number, outputScale: number | undefined) => number }> =
  [
    { folder: 'engine-rul-rf-onnx', tolerance: (want) => 1e-4 * Math.max(1, Math.abs(want)) },
    { folder: 'engine-rul-fp32-onnx', tolerance: (want) => 1e-4 * Math.max(1, Math.abs(want)) },
    { folder: 'engine-rul-int8-onnx', tolerance: () => 0.5 },
    { folder: 'engine-rul-int8-tflite', tolerance: (_want, scale) => 2 * scale! + 1e-6 },
  ];

describe('engine RUL packages: parity with the Python reference runtimes', () => {
  it('the runtime normalises the raw windows and summarises them as the Python build did', async () => {
    const { info, inputs } = await fixtures();
    const manifest = JSON.parse(
      await readFile(path.join(PACKAGES, 'engine-rul-fp32-onnx', 'vigil.json'), 'utf8'),
    ) as { preprocessing: TelemetryPreprocessing };
    const pre = manifest.preprocessing;
    expect(pre.tags).toEqual(info.tags);
    const steps = pre.window;
    const tags = pre.tags.length;
    let maxWindow = 0;
    let maxSummary = 0;
    info.cases.forEach((c, i) => {
      expect(c.raw.length).toBe(steps);
      expect(c.cycles[1] - c.cycles[0] + 1).toBe(steps);
      // The runtime's arithmetic (runtime/telemetry/window.ts): z in float64, the window input is
      // z rounded to float32, summary features are computed from z.
      const z = new Float64Array(steps * tags);
      c.raw.forEach((row, t) =>
        row.forEach((x, k) => (z[t * tags + k] = (x - pre.normalize.mean[k]!) / pre.normalize.std[k]!)),
      );
      const window = Float32Array.from(z);
      const stored = inputs.window.subarray(i * steps * tags, (i + 1) * steps * tags);
      for (let k = 0; k < window.length; k++)
        maxWindow = Math.max(maxWindow, Math.abs(window[k]! - stored[k]!));
      const summary = summarize(z, steps, tags);
      const storedSummary = inputs.summary.subarray(i * tags * 6, (i + 1) * tags * 6);
      expect(summary.length).toBe(storedSummary.length);
      summary.forEach((v, k) => (maxSummary = Math.max(maxSummary, Math.abs(v - storedSummary[k]!))));
    });
    // The same float64 arithmetic rounded to float32 on both sides; summation order may differ.
    expect(maxWindow).toBe(0);
    expect(maxSummary).toBeLessThanOrEqual(1e-6);
  });

  it.each(CASES)(
    '$folder reproduces the reference RUL within its tolerance',
    async ({ folder, tolerance }) => {
      const { info, inputs, expected } = await fixtures();
      const engine = await loadEngine(path.join(PACKAGES, folder), OPTIONS, silentLogger());
      engines.push(engine);
      const m = engine.manifest;
      const pre = m.preprocessing as TelemetryPreprocessing;
      const input = m.inputs[0]!;
      const output = m.outputs.find((o) => o.name === m.postprocessing.output)!;
      const data = inputs[pre.features];
      const size = input.shape.reduce((a, b) => a * b, 1);
      expect(data.length).toBe(info.cases.length * size);

      let maxDiff = 0;
      let totalMs = 0;
      for (let i = 0; i < info.cases.length; i++) {
        const c = info.cases[i]!;
        const started = performance.now();
        const out = await engine.run({
          [input.name]: { dtype: 'float32', shape: input.shape, data: data.slice(i * size, (i + 1) * size) },
        });
        totalMs += performance.now() - started;
        const got = out[output.name]!.data;
        expect(got.length).toBe(1);
        const want = expected[folder]![c.id]!;
        const diff = Math.abs(got[0]! - want);
        maxDiff = Math.max(maxDiff, diff);
        expect(diff, `${folder} ${c.id}: got ${got[0]}, Python gave ${want}`).toBeLessThanOrEqual(
          tolerance(want, output.quantization?.scale),
        );
      }
      console.info(
        `parity ${folder}: ${info.cases.length} windows, max |diff| ${maxDiff.toExponential(2)} cycles, ` +
          `${(totalMs / info.cases.length).toFixed(3)} ms per inference on ${engine.backend}/${engine.provider}`,
      );
    },
  );
});
