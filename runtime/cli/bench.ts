import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { renderFrame } from '../../simulator/camera/render.js';
import { DEFECT_CLASSES } from '../../simulator/camera/types.js';
import type { HttpCameraSource } from '../../adapters/camera/http.js';
import { startEmbeddedBroker } from '../broker/embedded.js';
import { parseConfig } from '../config/load.js';
import { Daemon } from '../daemon.js';
import type { EngineOptions } from '../engines/engine.js';
import { loadEngine } from '../engines/load.js';
import { silentLogger } from '../log.js';
import { isImageManifest } from '../model/manifest.js';
import { LatencyRecorder, type LatencySummary } from '../pipeline/latency.js';
import type { PipelineStats } from '../pipeline/pipeline.js';
import { decodeAndResize, normalize } from '../pipeline/preprocess.js';
import { repoRoot } from './simulate/defaults.js';
import { VERSION } from '../version.js';

export interface BenchOptions {
  iterations: number;
  duration: number;
  out?: string;
  python?: string;
  /** Only these packages (names under models/defect/packages); default all three. */
  packages?: string[];
  /** Pipeline concurrency for the end-to-end runs (default: the config default). */
  concurrency?: number;
}

const PACKAGES = ['defect-int8-onnx', 'defect-int8-tflite', 'defect-fp32-onnx'];
const ENGINE_OPTIONS: EngineOptions = {
  onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
  tflite: { threads: 1, xnnpack: true },
  warmupRuns: 10,
};

interface E2ERun {
  package: string;
  fps: number;
  seconds: number;
  stats: PipelineStats;
  sustained: boolean;
}

/**
 * `vigil bench`: inference-only latency of every shipped defect package, next to Python
 * onnxruntime on the same ONNX model and inputs; then end-to-end latency (HTTP ingest to stored
 * and to the alert's PUBACK) at 10 fps and at the highest rate the machine sustains. Prints a
 * Markdown summary for docs/BENCHMARKS.md. Nothing here is asserted: it measures.
 */
export async function benchCommand(opts: BenchOptions): Promise<void> {
  const root = repoRoot();
  const say = (l: string) => process.stdout.write(l + '\n');
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'vigil-bench-'));
  say(
    `vigil bench ${VERSION} on ${os.cpus()[0]?.model ?? 'unknown CPU'} x${os.cpus().length}, Node ${process.version}`,
  );

  // A fixed bank of frames: the same inputs for every engine and for Python.
  const bank: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const f = await renderFrame({
      width: 640,
      height: 480,
      label: DEFECT_CLASSES[i % 4]!,
      seed: 1000 + i,
      format: 'jpeg',
    });
    bank.push(f.data);
  }

  const inference: Record<
    string,
    { vigil: LatencySummary; python?: LatencySummary; pythonVersion?: string }
  > = {};
  const python = opts.python ?? pickPython();
  const packages = opts.packages ?? PACKAGES;
  for (const name of packages) {
    const dir = path.join(root, 'models/defect/packages', name);
    if (!existsSync(dir)) {
      say(`  ${name}: not found, skipped`);
      continue;
    }
    const engine = await loadEngine(dir, ENGINE_OPTIONS, silentLogger());
    const m = engine.manifest;
    if (!isImageManifest(m)) {
      await engine.close();
      say(`  ${name}: not an image model, skipped`);
      continue;
    }
    const input = m.inputs[0]!;
    const tensors: Float32Array[] = [];
    for (const b of bank) tensors.push(normalize(await decodeAndResize(b, m.preprocessing), m.preprocessing));
    const rec = new LatencyRecorder();
    for (let i = 0; i < opts.iterations; i++) {
      const t = performance.now();
      await engine.run({
        [input.name]: { dtype: 'float32', shape: input.shape, data: tensors[i % tensors.length]! },
      });
      rec.add(performance.now() - t);
    }
    await engine.close();
    inference[name] = { vigil: rec.summary()! };
    if (m.format === 'onnx' && python) {
      const inputsFile = path.join(tmp, `${name}.f32`);
      const all = new Float32Array(tensors.length * tensors[0]!.length);
      tensors.forEach((t, i) => all.set(t, i * t.length));
      await writeFile(inputsFile, Buffer.from(all.buffer));
      const py = spawnSync(
        python,
        [
          path.join(root, 'bench/ort_baseline.py'),
          '--model',
          path.join(dir, m.file),
          '--inputs',
          inputsFile,
          '--shape',
          input.shape.join(','),
          '--iterations',
          String(opts.iterations),
          '--threads',
          '1',
        ],
        { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } },
      );
      if (py.status === 0) {
        const out = JSON.parse(py.stdout) as { version: string; ms: number[] };
        const prec = new LatencyRecorder();
        out.ms.forEach((v) => prec.add(v));
        inference[name]!.python = prec.summary()!;
        inference[name]!.pythonVersion = out.version;
      } else say(`  Python baseline for ${name} failed: ${py.stderr.trim().split('\n').slice(-1)[0]}`);
    }
    const r = inference[name]!;
    say(
      `  ${name}: vigil p50 ${r.vigil.p50} ms p99 ${r.vigil.p99} ms${r.python ? `; python onnxruntime ${r.pythonVersion} p50 ${r.python.p50} ms p99 ${r.python.p99} ms` : ''}`,
    );
  }
  if (!python)
    say('  no Python with onnxruntime found: run bench/setup.sh or pass --python; baseline skipped');

  const e2e: E2ERun[] = [];
  const maxRate: Record<string, number> = {};
  for (const name of packages) {
    const dir = path.join(root, 'models/defect/packages', name);
    if (!existsSync(dir)) continue;
    const at10 = await runEndToEnd(dir, name, 10, opts.duration, bank, tmp, opts.concurrency);
    e2e.push(at10);
    say(`  e2e ${name} @10 fps: ${describe(at10)}`);
    let best = at10.sustained ? 10 : 0;
    for (const fps of [20, 30, 45, 60, 80, 100, 130, 160]) {
      const run = await runEndToEnd(
        dir,
        name,
        fps,
        Math.max(5, opts.duration / 2),
        bank,
        tmp,
        opts.concurrency,
      );
      e2e.push(run);
      say(`  e2e ${name} @${fps} fps: ${describe(run)}`);
      if (!run.sustained) break;
      best = fps;
    }
    maxRate[name] = best;
  }

  const results = {
    vigil: VERSION,
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
    },
    iterations: opts.iterations,
    inference,
    endToEnd: e2e.map((r) => ({
      package: r.package,
      fps: r.fps,
      seconds: r.seconds,
      sustained: r.sustained,
      ...summaryOf(r.stats),
    })),
    maxSustainedFps: maxRate,
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  say('');
  say(markdown(results));
  if (opts.out) await writeFile(opts.out, JSON.stringify(results, null, 2) + '\n');
  await rm(tmp, { recursive: true, force: true });
}

/** The bench venv (bench/setup.sh), else the models venv, else the system python3. */
function pickPython(): string | undefined {
  const candidates = [
    path.join(
      process.env.VIGIL_BENCH_VENV ?? path.join(os.homedir(), '.cache/vigil/venv-bench'),
      'bin/python',
    ),
    path.join(process.env.VIGIL_VENV ?? path.join(os.homedir(), '.cache/vigil/venv-models'), 'bin/python'),
    'python3',
  ];
  for (const p of candidates) {
    const r = spawnSync(p, ['-c', 'import onnxruntime'], { encoding: 'utf8' });
    if (r.status === 0) return p;
  }
  return undefined;
}

/** A run sustains its rate when under 1% of frames are dropped and p99 stays within budget. */
async function runEndToEnd(
  pkg: string,
  name: string,
  fps: number,
  seconds: number,
  bank: Buffer[],
  tmp: string,
  concurrency?: number,
): Promise<E2ERun> {
  const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, log: silentLogger() });
  const loaded = parseConfig(
    {
      device: { id: 'bench' },
      http: { enabled: false },
      mqtt: { url: broker.url },
      store: { path: path.join(tmp, `${name}-${fps}.db`) },
      models: { m: { package: pkg, warmupRuns: 10 } },
      sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: 0 } } },
      pipelines: {
        p: { sources: ['cam'], model: 'm', budgetMs: 100, ...(concurrency ? { concurrency } : {}) },
      },
    },
    '(bench)',
    tmp,
  );
  const daemon = await Daemon.start(loaded, silentLogger());
  const port = (daemon.sources.get('cam') as HttpCameraSource).port!;
  const url = `http://127.0.0.1:${port}/frames`;
  const total = Math.round(fps * seconds);
  const start = performance.now();
  const posts: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / fps;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    posts.push(
      fetch(url, {
        method: 'POST',
        body: bank[i % bank.length]!,
        headers: { 'content-type': 'image/jpeg', 'x-frame-origin': `f${i}` },
      }).then(
        (r) => r.arrayBuffer(),
        () => undefined,
      ),
    );
  }
  await Promise.all(posts);
  await daemon.pipelines.get('p')!.idle();
  const stats = daemon.pipelines.get('p')!.snapshot();
  await daemon.stop();
  await broker.close();
  const dropped = Object.values(stats.dropped).reduce((a, b) => a + b, 0);
  const sustained = dropped <= stats.seen * 0.01 && (stats.latencyMs?.p99 ?? Infinity) <= 100;
  return { package: name, fps, seconds, stats, sustained };
}

function summaryOf(s: PipelineStats) {
  const stages: Record<string, number | undefined> = {};
  for (const [k, v] of Object.entries(s.stagesMs)) stages[k] = v?.p50;
  return {
    seen: s.seen,
    processed: s.processed,
    dropped: s.dropped,
    latencyMs: s.latencyMs,
    alertLatencyMs: s.alertLatencyMs,
    stageP50Ms: stages,
  };
}

function describe(r: E2ERun): string {
  const l = r.stats.latencyMs;
  const a = r.stats.alertLatencyMs;
  const dropped = Object.values(r.stats.dropped).reduce((x, y) => x + y, 0);
  return `${r.stats.processed}/${r.stats.seen} processed, ${dropped} dropped${dropped ? ` ${JSON.stringify(r.stats.dropped)}` : ''}, stored p50 ${l?.p50} p95 ${l?.p95} p99 ${l?.p99} ms, alert ack p99 ${a?.p99 ?? '-'} ms${r.sustained ? '' : ' (not sustained)'}`;
}

function markdown(r: {
  inference: Record<string, { vigil: LatencySummary; python?: LatencySummary; pythonVersion?: string }>;
  endToEnd: Array<ReturnType<typeof summaryOf> & { package: string; fps: number; sustained: boolean }>;
  maxSustainedFps: Record<string, number>;
  peakRssMb: number;
}): string {
  const lines = [
    '### Inference only (1 thread, ms)',
    '',
    '| package | Vigil p50 | Vigil p99 | Python ORT p50 | Python ORT p99 | Vigil / Python (p50) |',
    '|---|---|---|---|---|---|',
  ];
  for (const [name, v] of Object.entries(r.inference)) {
    const ratio = v.python ? (v.vigil.p50 / v.python.p50).toFixed(2) : '-';
    lines.push(
      `| ${name} | ${v.vigil.p50} | ${v.vigil.p99} | ${v.python?.p50 ?? '-'} | ${v.python?.p99 ?? '-'} | ${ratio} |`,
    );
  }
  lines.push('', '### End to end (HTTP ingest of 640x480 JPEG to result stored; alert to PUBACK), ms', '');
  lines.push(
    '| package | fps | processed/seen | dropped | p50 | p95 | p99 | alert p99 | decode | preprocess | inference | postprocess | store | publish |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const e of r.endToEnd) {
    const d = Object.values(e.dropped).reduce((a, b) => a + b, 0);
    const s = e.stageP50Ms;
    lines.push(
      `| ${e.package} | ${e.fps}${e.sustained ? '' : ' ✗'} | ${e.processed}/${e.seen} | ${d} | ${e.latencyMs?.p50} | ${e.latencyMs?.p95} | ${e.latencyMs?.p99} | ${e.alertLatencyMs?.p99 ?? '-'} | ${s.decode} | ${s.preprocess} | ${s.inference} | ${s.postprocess} | ${s.store} | ${s.publish ?? '-'} |`,
    );
  }
  lines.push(
    '',
    `Highest sustained rate (<1% dropped, p99 within 100 ms): ${Object.entries(r.maxSustainedFps)
      .map(([k, v]) => `${k} ${v} fps`)
      .join(', ')}. Peak RSS of the bench process: ${r.peakRssMb} MB.`,
  );
  return lines.join('\n');
}
