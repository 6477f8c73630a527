/**
 * Execution providers side by side (issue 7): each shipped ONNX package is loaded through Vigil's
 * own engine (runtime/engines) once with CPU only and once with WebGPU first, and both run the
 * same deterministic inputs. Prints, per package and provider: the provider really in use (an
 * unavailable one falls back to CPU, as the daemon does), load time, latency p50/p95/p99, and
 * agreement with CPU (max absolute output difference, same top class). Measures, never asserts.
 * Run: npm run build && node dist/bench/execution-providers.js [--runs N] [--out FILE.json]
 * On a machine without a GPU adapter WebGPU falls back to CPU and the table says so.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadEngine } from '../runtime/engines/load.js';
import { createLogger } from '../runtime/log.js';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '300' }, out: { type: 'string' } },
});
const runs = Number(values.runs);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PACKAGES = [
  'models/defect/packages/defect-fp32-onnx',
  'models/defect/packages/defect-int8-onnx',
  'models/engine-rul/packages/engine-rul-fp32-onnx',
];
const log = createLogger({ level: process.env.VIGIL_LOG_LEVEL ?? 'warn' });

/** The same pseudo-random inputs for every provider (an LCG: no dependency, reproducible). */
function inputs(n: number, count: number): Float32Array[] {
  let s = 7;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Array.from({ length: count }, () => Float32Array.from({ length: n }, next));
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const argmax = (a: number[]) => a.indexOf(Math.max(...a));
const rows: Array<Record<string, unknown>> = [];
for (const pkg of PACKAGES) {
  const firstOutputs = new Map<string, number[][]>();
  for (const asked of [['cpu'], ['webgpu', 'cpu']]) {
    const started = performance.now();
    const engine = await loadEngine(
      path.join(repo, pkg),
      {
        onnx: { executionProviders: asked, intraOpThreads: 1 },
        tflite: { threads: 1, xnnpack: true },
        warmupRuns: 3,
      },
      log,
    );
    const loadMs = performance.now() - started;
    const input = engine.manifest.inputs[0]!;
    const size = input.shape.reduce((a, b) => a * b, 1);
    const times: number[] = [];
    const outs: number[][] = [];
    for (const data of inputs(size, runs)) {
      const t = performance.now();
      const out = await engine.run({ [input.name]: { dtype: 'float32', shape: input.shape, data } });
      times.push(performance.now() - t);
      if (outs.length < 50) outs.push(Array.from(Object.values(out)[0]!.data as Float32Array));
    }
    await engine.close();
    firstOutputs.set(asked[0]!, outs);
    const cpu = firstOutputs.get('cpu')!;
    let maxDiff = 0;
    let agree = 0;
    outs.forEach((o, i) => {
      o.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - cpu[i]![j]!))));
      if (argmax(o) === argmax(cpu[i]!)) agree++;
    });
    rows.push({
      package: path.basename(pkg),
      asked: asked.join(','),
      provider: engine.provider,
      loadMs: Math.round(loadMs),
      p50: +percentile(times, 50).toFixed(3),
      p95: +percentile(times, 95).toFixed(3),
      p99: +percentile(times, 99).toFixed(3),
      maxAbsDiffVsCpu: maxDiff,
      sameTopClass: `${agree}/${outs.length}`,
    });
  }
}

const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'} x${os.cpus().length}, ${os.platform()} ${os.arch()}, Node ${process.version}`;
console.log(`Execution providers, ${runs} runs each, on ${machine}\n`);
console.log(
  '| package | asked | in use | load ms | p50 ms | p95 ms | p99 ms | max abs diff vs CPU | same top class |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${String(r.package)} | ${String(r.asked)} | ${String(r.provider)} | ${String(r.loadMs)} | ${String(r.p50)} | ${String(r.p95)} | ${String(r.p99)} | ${Number(r.maxAbsDiffVsCpu).toExponential(2)} | ${String(r.sameTopClass)} |`,
  );
const result = { machine, runs, rows };
console.log(`\n${JSON.stringify(result)}`);
if (values.out) writeFileSync(values.out, JSON.stringify(result, null, 2));
