import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { Engine, TensorMap } from '../../runtime/engines/engine.js';
import { silentLogger } from '../../runtime/log.js';
import type { Manifest } from '../../runtime/model/manifest.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { Pipeline, type AlertPublisher, type ResultSink } from '../../runtime/pipeline/pipeline.js';
import type { Alert, Result } from '../../runtime/pipeline/result.js';
import type { FrameSample } from '../../runtime/pipeline/sample.js';

// A unit test of the pipeline's own logic: the engine, store and publisher are stand-ins here;
// the real ones are exercised end to end in test/e2e.
const manifest = {
  schemaVersion: 1,
  name: 'stub',
  version: '1',
  format: 'onnx',
  file: 'model.onnx',
  inputs: [{ name: 'in', dtype: 'float32', shape: [1, 16, 16, 1], layout: 'NHWC' }],
  outputs: [{ name: 'probs', dtype: 'float32', shape: [1, 2] }],
  preprocessing: {
    type: 'image',
    width: 16,
    height: 16,
    colorSpace: 'grayscale',
    resize: 'fill',
    normalize: { mean: [0], std: [255] },
    maxInputPixels: 1_000_000,
  },
  postprocessing: {
    type: 'classification',
    output: 'probs',
    labels: ['ok', 'crack'],
    activation: 'none',
    okLabel: 'ok',
    threshold: 0.5,
    alertKind: 'defect',
  },
  files: {},
} satisfies Manifest;

/** Most inferences seen running at the same time, across every stand-in engine. */
let maxConcurrentRuns = 0;
let runningNow = 0;

/** Says 'crack' for bright frames and 'ok' for dark ones, from the mean input value. */
function brightnessEngine(fail = false): Engine {
  return {
    manifest,
    backend: 'onnxruntime-node',
    provider: 'cpu',
    async run(inputs: TensorMap): Promise<TensorMap> {
      runningNow++;
      maxConcurrentRuns = Math.max(maxConcurrentRuns, runningNow);
      await new Promise((r) => setTimeout(r, 2));
      runningNow--;
      if (fail) throw new Error('worker died');
      const d = inputs.in!.data;
      const mean = Array.from(d).reduce((a, b) => a + b, 0) / d.length;
      const crack = mean > 0.5 ? 0.9 : 0.1;
      return { probs: { dtype: 'float32', shape: [1, 2], data: Float32Array.from([1 - crack, crack]) } };
    },
    async close() {},
  };
}

function harness(options: { engine?: Engine | undefined; sinkFails?: boolean; budgetMs?: number } = {}) {
  const results: Result[] = [];
  const alerts: Alert[] = [];
  const published: Alert[] = [];
  const sink: ResultSink = {
    saveResult(r, a) {
      if (options.sinkFails) throw new Error('disk full');
      results.push(r);
      if (a) alerts.push(a);
    },
  };
  const publisher: AlertPublisher = {
    async publishAlert(a) {
      // Store before publish: the alert must already be in the store when it is handed over.
      expect(alerts.map((x) => x.id)).toContain(a.id);
      published.push(a);
      return { ackMs: 1 };
    },
    publishResult() {},
  };
  const metrics = new Metrics({ processMetrics: false });
  const engine = 'engine' in options ? options.engine : brightnessEngine();
  const storeErrors: number[] = [];
  const pipeline = new Pipeline({
    name: 'p',
    config: {
      sources: ['cam'],
      model: 'm',
      budgetMs: options.budgetMs ?? 1000,
      concurrency: 2,
      severity: { crack: 'critical' },
      publishResults: false,
    },
    deviceId: 'gw',
    engine: () => engine,
    sink,
    publisher,
    metrics,
    inputError: (sample, reason) => metrics.inputErrors.inc({ source: sample.source, reason }),
    onStoreError: () => storeErrors.push(Date.now()),
    log: silentLogger(),
  });
  return { pipeline, results, alerts, published, metrics, storeErrors };
}

let n = 0;
async function frame(grey: number, source = 'cam'): Promise<FrameSample> {
  const data = await sharp({
    create: { width: 64, height: 48, channels: 3, background: { r: grey, g: grey, b: grey } },
  })
    .jpeg()
    .toBuffer();
  n++;
  return {
    kind: 'frame',
    id: `s${n}`,
    source,
    receivedAt: Date.now(),
    arrivedAt: performance.now(),
    data,
    origin: `f${n}.jpg`,
  };
}

const counter = async (
  m: Metrics,
  name: 'dropped' | 'inputErrors' | 'alerts' | 'processed',
  labels: Record<string, string>,
) =>
  (await m[name].get()).values.find((v) => {
    const have = v.labels as Record<string, unknown>;
    return Object.entries(labels).every(([k, val]) => have[k] === val);
  })?.value ?? 0;

describe('Pipeline', () => {
  it('stores every result, raises an alert at the threshold, stores it before publishing it', async () => {
    const h = harness();
    h.pipeline.offer(await frame(20));
    await h.pipeline.idle();
    h.pipeline.offer(await frame(240, 'cam2'));
    await h.pipeline.idle();
    expect(h.results.map((r) => r.label)).toEqual(['ok', 'crack']);
    expect(h.alerts).toHaveLength(1);
    expect(h.published.map((a) => a.id)).toEqual(h.alerts.map((a) => a.id));
    const a = h.alerts[0]!;
    expect(a).toMatchObject({
      kind: 'defect',
      label: 'crack',
      severity: 'critical',
      device: 'gw',
      threshold: 0.5,
    });
    expect(h.results[1]!.alertId).toBe(a.id);
    const s = h.pipeline.snapshot();
    expect(s).toMatchObject({ seen: 2, processed: 2, alerts: { defect: 1 }, dropped: {} });
    for (const stage of ['decode', 'preprocess', 'inference', 'postprocess', 'store', 'publish'])
      expect(s.stagesMs[stage]?.count).toBeGreaterThan(0);
  });

  it('overlaps frames from several cameras but never runs two inferences at once', async () => {
    const h = harness();
    maxConcurrentRuns = 0;
    const frames = await Promise.all(
      ['a', 'b', 'c', 'd', 'e', 'f'].map((cam, i) => frame(i % 2 ? 240 : 20, cam)),
    );
    for (const f of frames) h.pipeline.offer(f);
    await h.pipeline.idle();
    expect(h.pipeline.snapshot()).toMatchObject({ seen: 6, processed: 6, dropped: {} });
    expect(new Set(h.results.map((r) => r.source))).toEqual(new Set(['a', 'b', 'c', 'd', 'e', 'f']));
    expect(maxConcurrentRuns).toBe(1);
  });

  it('drops a frame that does not decode, counts it as an input error, and goes on', async () => {
    const h = harness();
    const bad = await frame(20);
    bad.data = Buffer.concat([bad.data.subarray(0, 200), Buffer.alloc(500, 7), Buffer.from([0xff, 0xd9])]);
    h.pipeline.offer(bad);
    await h.pipeline.idle();
    h.pipeline.offer(await frame(20));
    await h.pipeline.idle();
    expect(h.results).toHaveLength(1);
    expect(await counter(h.metrics, 'dropped', { reason: 'decode_error' })).toBe(1);
    expect(await counter(h.metrics, 'inputErrors', { source: 'cam', reason: 'decode_error' })).toBe(1);
  });

  it('drops frames as model_unavailable while there is no engine', async () => {
    const h = harness({ engine: undefined });
    h.pipeline.offer(await frame(20));
    await h.pipeline.idle();
    expect(h.results).toHaveLength(0);
    expect(h.pipeline.snapshot().dropped).toEqual({ model_unavailable: 1 });
  });

  it('counts inference and store failures as drops without throwing', async () => {
    const broken = harness({ engine: brightnessEngine(true) });
    broken.pipeline.offer(await frame(20));
    await broken.pipeline.idle();
    expect(broken.pipeline.snapshot().dropped).toEqual({ inference_error: 1 });

    const full = harness({ sinkFails: true });
    full.pipeline.offer(await frame(240));
    await full.pipeline.idle();
    expect(full.pipeline.snapshot().dropped).toEqual({ store_error: 1 });
    expect(full.published).toHaveLength(0); // nothing is published that was not stored
    expect(full.storeErrors).toHaveLength(1); // the frame sources are told (runtime/store/write-guard.ts)
    expect(broken.storeErrors).toHaveLength(0);
  });

  it('drops a frame that arrived longer ago than the budget', async () => {
    const h = harness({ budgetMs: 50 });
    const late = await frame(20);
    late.arrivedAt = performance.now() - 60;
    h.pipeline.offer(late);
    await h.pipeline.idle();
    expect(h.pipeline.snapshot().dropped).toEqual({ deadline: 1 });
    expect(await counter(h.metrics, 'dropped', { pipeline: 'p', reason: 'deadline' })).toBe(1);
  });
});
