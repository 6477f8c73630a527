import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import { silentLogger } from '../../runtime/log.js';
import { isTelemetryManifest } from '../../runtime/model/manifest.js';
import { summarize } from '../../runtime/telemetry/window.js';
import { OPTIONS, ROOT } from './support.js';

/**
 * Parity of the simulator-trained telemetry models (models/machine-failure, models/anomaly) with
 * the Python reference: for 16 held-out windows per package, the runtime's summary features of the
 * raw hourly values must equal the ones the Python pipeline trained on, and onnxruntime-node must
 * give the outputs Python's onnxruntime 1.18 gave when the package was built.
 * Fixture format (test/fixtures/machine-models-parity/<package>.json, written by the pipelines):
 *   { package, tags, window, normalize: { mean, std }, input, output,
 *     cases: [{ name, hours: [window], raw: [window][tags] (sensor units), features: [tags * 6],
 *               expected: [output values] }] }
 *
 * Tolerances (absolute). Features: 1e-6 relative (float32 rounding of the same float64 numbers,
 * summed in another order). Outputs: 1e-5; measured on the development machine (x86-64): the
 * gradient-boosted trees agree to float rounding (~1e-7), the Isolation Forest, whose graph runs a
 * float32 PCA before the trees, to ~1e-6.
 */

const FIXTURES = path.join(ROOT, 'test/fixtures/machine-models-parity');
const PACKAGES: Record<string, string> = {
  'pump-failure-gbt': path.join(ROOT, 'models/machine-failure/packages/pump-failure-gbt'),
  'spindle-failure-gbt': path.join(ROOT, 'models/machine-failure/packages/spindle-failure-gbt'),
  'pump-anomaly-iforest': path.join(ROOT, 'models/anomaly/packages/pump-anomaly-iforest'),
};
const OUTPUT_TOLERANCE = 1e-5;
const FEATURE_TOLERANCE = 1e-6;

interface Fixture {
  package: string;
  tags: string[];
  window: number;
  normalize: { mean: number[]; std: number[] };
  input: string;
  output: string;
  cases: Array<{ name: string; hours: number[]; raw: number[][]; features: number[]; expected: number[] }>;
}

async function fixture(folder: string): Promise<Fixture> {
  return JSON.parse(await readFile(path.join(FIXTURES, `${folder}.json`), 'utf8')) as Fixture;
}

/** The window's z-scores as the runtime's windower holds them: rows are steps, columns tags. */
function zScores(f: Fixture, raw: number[][]): Float64Array {
  const n = f.tags.length;
  const rows = new Float64Array(f.window * n);
  raw.forEach((row, t) =>
    row.forEach((x, j) => (rows[t * n + j] = (x - f.normalize.mean[j]!) / f.normalize.std[j]!)),
  );
  return rows;
}

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

describe('machine failure and anomaly models: parity with the Python reference', () => {
  it.each(Object.keys(PACKAGES))(
    '%s: runtime features and onnxruntime-node outputs match the fixtures',
    async (folder) => {
      const f = await fixture(folder);
      const engine = await loadEngine(PACKAGES[folder]!, OPTIONS, silentLogger());
      engines.push(engine);
      const m = engine.manifest;
      if (!isTelemetryManifest(m)) throw new Error(`${folder} is not a telemetry model package`);
      // The fixture was made with this package's preprocessing: same tags, window and statistics.
      expect(m.preprocessing.tags).toEqual(f.tags);
      expect(m.preprocessing.window).toBe(f.window);
      expect(m.preprocessing.normalize).toEqual(f.normalize);
      expect(m.preprocessing.axis).toEqual({ type: 'counter', tag: 'hours', step: 1 });
      expect(m.preprocessing.features).toBe('summary');
      expect(f.cases).toHaveLength(16);

      const input = m.inputs[0]!;
      let totalMs = 0;
      let runs = 0;
      const run = async (data: Float32Array) => {
        const started = performance.now();
        const out = await engine.run({ [input.name]: { dtype: 'float32', shape: input.shape, data } });
        totalMs += performance.now() - started;
        runs++;
        return out[f.output]!.data;
      };
      let maxFeature = 0;
      let maxOutput = 0;
      for (const c of f.cases) {
        expect(c.raw).toHaveLength(f.window);
        expect(c.hours[c.hours.length - 1]! - c.hours[0]!).toBe(f.window - 1);
        const features = summarize(zScores(f, c.raw), f.window, f.tags.length);
        expect(features.length).toBe(c.features.length);
        features.forEach((v, k) => {
          const want = c.features[k]!;
          const d = Math.abs(v - want) / Math.max(1, Math.abs(want));
          maxFeature = Math.max(maxFeature, d);
        });
        // The model's inputs exactly as Python fed them, then as the runtime computed them.
        for (const data of [Float32Array.from(c.features), features]) {
          const got = await run(data);
          expect(got.length, c.name).toBe(c.expected.length);
          c.expected.forEach((want, k) => (maxOutput = Math.max(maxOutput, Math.abs(got[k]! - want))));
        }
      }
      console.info(
        `parity ${folder}: ${f.cases.length} windows, features max rel diff ${maxFeature.toExponential(2)}, ` +
          `outputs max |diff| ${maxOutput.toExponential(2)} (tolerance ${OUTPUT_TOLERANCE}), ` +
          `${(totalMs / runs).toFixed(3)} ms per window on ${engine.backend}/${engine.provider}`,
      );
      expect(maxFeature).toBeLessThanOrEqual(FEATURE_TOLERANCE);
      expect(maxOutput).toBeLessThanOrEqual(OUTPUT_TOLERANCE);
    },
  );
});
