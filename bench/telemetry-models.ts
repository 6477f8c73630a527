/**
 * Telemetry model benchmark (issue 4). Measures, never asserts: windows scored per second by
 * each shipped telemetry model through Vigil's engines (worker thread, one inference at a time,
 * one thread), the same input fed repeatedly, median of three rounds. Replay throughput is
 * measured separately with `vigil replay --speed max` (docs/BENCHMARKS.md says how).
 * Run: npm run build && node dist/bench/telemetry-models.js [--seconds N]
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { EngineOptions } from '../runtime/engines/engine.js';
import { loadEngine } from '../runtime/engines/load.js';
import { silentLogger } from '../runtime/log.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKAGES = [
  'models/engine-rul/packages/engine-rul-int8-onnx',
  'models/engine-rul/packages/engine-rul-fp32-onnx',
  'models/engine-rul/packages/engine-rul-int8-tflite',
  'models/engine-rul/packages/engine-rul-rf-onnx',
  'models/machine-failure/packages/pump-failure-gbt',
  'models/machine-failure/packages/spindle-failure-gbt',
  'models/anomaly/packages/pump-anomaly-iforest',
];
const OPTIONS: EngineOptions = {
  onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
  tflite: { threads: 1, xnnpack: true },
  warmupRuns: 20,
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const i = args.indexOf('--seconds');
  const seconds = i >= 0 ? Number(args[i + 1]) : 3;
  const say = (l: string) => process.stdout.write(l + '\n');
  say(
    `vigil telemetry model bench on ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, Node ${process.version}; ${seconds} s per round`,
  );
  say('\n| package | format | input | windows/s (median of 3) | ms per window |');
  say('|---|---|---|---|---|');
  for (const rel of PACKAGES) {
    const dir = path.join(ROOT, rel);
    if (!existsSync(path.join(dir, 'vigil.json'))) continue;
    const engine = await loadEngine(dir, OPTIONS, silentLogger());
    try {
      const input = engine.manifest.inputs[0]!;
      const size = input.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(size).map((_, k) => Math.sin(k) * 0.5);
      const rates: number[] = [];
      for (let round = 0; round < 3; round++) {
        let n = 0;
        const t0 = performance.now();
        while (performance.now() - t0 < seconds * 1000) {
          await engine.run({ [input.name]: { dtype: 'float32', shape: input.shape, data } });
          n += 1;
        }
        rates.push(n / ((performance.now() - t0) / 1000));
      }
      const median = rates.sort((a, b) => a - b)[1]!;
      say(
        `| ${path.basename(dir)} | ${engine.manifest.format} | [${input.shape.join('x')}] | ${Math.round(median)} | ${(1000 / median).toFixed(3)} |`,
      );
    } finally {
      await engine.close();
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
