import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DriftConfig, driftWindow } from '../../runtime/config/drift.js';
import { MqttConfig, PipelineConfig, StoreConfig } from '../../runtime/config/schema.js';
import { IMAGE_FEATURE_SET, TELEMETRY_FEATURE_SET } from '../../runtime/drift/features.js';
import { DriftMonitor } from '../../runtime/drift/monitor.js';
import { DriftTracker } from '../../runtime/drift/tracker.js';
import { silentLogger } from '../../runtime/log.js';
import { Manifest } from '../../runtime/model/manifest.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import type { ScoredSample } from '../../runtime/pipeline/observer.js';
import type { Result } from '../../runtime/pipeline/result.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { Store } from '../../runtime/store/store.js';
import { ROOT } from '../helpers/daemon.js';

// The tracker alone: which reference it compares against (manifest, Gaussian stand-in, learned
// live), what it measures, and the shipped packages' reference statistics.

const PACKAGES = [
  'models/defect/packages/defect-fp32-onnx',
  'models/defect/packages/defect-int8-onnx',
  'models/defect/packages/defect-int8-tflite',
  'models/engine-rul/packages/engine-rul-fp32-onnx',
  'models/engine-rul/packages/engine-rul-int8-onnx',
  'models/engine-rul/packages/engine-rul-int8-tflite',
  'models/engine-rul/packages/engine-rul-rf-onnx',
  'models/machine-failure/packages/pump-failure-gbt',
  'models/machine-failure/packages/spindle-failure-gbt',
  'models/anomaly/packages/pump-anomaly-iforest',
];

function manifest(pkg: string): Manifest {
  return Manifest.parse(JSON.parse(readFileSync(path.join(ROOT, pkg, 'vigil.json'), 'utf8')));
}

/** The manifest as an older package had it: inputMean/inputStd only. */
function withoutDistributions(m: Manifest): Manifest {
  return {
    ...m,
    referenceStats: { inputMean: m.referenceStats!.inputMean, inputStd: m.referenceStats!.inputStd },
  };
}

function sample(m: Manifest, input: Float32Array, score: number, label: string, t: number): ScoredSample {
  return {
    pipeline: 'p',
    kind: m.preprocessing.type === 'image' ? 'frame' : 'window',
    manifest: m,
    input,
    result: { score, label, producedAt: t, source: 's' } as Result,
  };
}

/** A deterministic standard normal stream (Box-Muller on a small LCG). */
function normals(seed: number): () => number {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

describe('the shipped packages', () => {
  it.each(PACKAGES)('%s has reference distributions of every input feature and of its outputs', (pkg) => {
    const m = manifest(pkg);
    const ref = m.referenceStats!;
    const image = m.preprocessing.type === 'image';
    expect(ref.featureSet).toBe(image ? IMAGE_FEATURE_SET : TELEMETRY_FEATURE_SET);
    expect(ref.features!.map((f) => f.name)).toEqual(
      image ? ['brightness', 'contrast', 'sharpness'] : (m.preprocessing as { tags: string[] }).tags,
    );
    // Bin edges are values of the reference: no bin is empty, not even for discrete features.
    for (const d of [...ref.features!, ref.output!.score!])
      expect(Math.min(...d.proportions)).toBeGreaterThan(0);
    expect(ref.output!.score!.count).toBeGreaterThan(1000);
    expect(ref.output!.score!.sample!.length).toBe(200);
    if (image) expect(ref.output!.classes!.labels).toEqual(['ok', 'scratch', 'crack', 'inclusion']);
    expect(ref.source!.samples).toBe(ref.output!.score!.count);
    // What the monitor will do with it.
    const t = new DriftTracker(
      m,
      image ? 'frame' : 'window',
      DriftConfig.parse({}),
      driftWindow(DriftConfig.parse({}), 'frame'),
    );
    expect(t.origins).toEqual({ input: 'manifest', output: 'manifest' });
  });
});

describe('references a package does not bring', () => {
  it('compares a telemetry model without distributions against a Gaussian of inputMean/inputStd and learns its output', () => {
    const m = withoutDistributions(manifest('models/machine-failure/packages/pump-failure-gbt'));
    const cfg = DriftConfig.parse({ windowSamples: 400, liveReferenceSamples: 300 });
    const t = new DriftTracker(m, 'window', cfg, driftWindow(cfg, 'window'));
    expect(t.origins).toEqual({ input: 'gaussian', output: 'live' });
    expect(t.notes.join(' ')).toMatch(/normal distribution of referenceStats.inputMean\/inputStd/);
    expect(t.notes.join(' ')).toMatch(/first 300 outputs/);
    const mean = m.referenceStats!.inputMean!;
    const std = m.referenceStats!.inputStd!;
    const z = normals(7);
    // Summary features drawn from the training statistics: `last` of tag t is feature t*6+4.
    const feed = (n: number, shift: number) => {
      for (let i = 0; i < n; i++) {
        const x = Float32Array.from(mean, (mu, j) => mu + std[j]! * z() + (j === 4 ? shift * std[j]! : 0));
        t.record(sample(m, x, 0.05 + 0.01 * z(), 'risk', t.recorded));
      }
    };
    feed(400, 0);
    let ev = t.evaluate()!;
    expect(ev.input.map((x) => x.name)).toEqual([
      'temperature',
      'vibration_rms',
      'current',
      'speed',
      'pressure',
    ]);
    expect(ev.input.every((x) => !x.drifted)).toBe(true);
    // The output reference is learned from the first 300; 100 later outputs are not yet minSamples.
    expect(ev.output).toEqual([]);
    feed(400, 0);
    ev = t.evaluate()!;
    expect(ev.output.map((x) => `${x.name}/${x.test}`)).toEqual(['score/psi']);
    expect(ev.output[0]!.drifted).toBe(false);
    // The temperature's `last` moves by 1.5 standard deviations.
    feed(400, 1.5);
    ev = t.evaluate()!;
    expect(ev.input.find((x) => x.name === 'temperature')).toMatchObject({ drifted: true });
    expect(ev.input.filter((x) => x.drifted).map((x) => x.name)).toEqual(['temperature']);
  });

  it("learns an image model's input reference from its first frames (pixel statistics say nothing about per-frame ones)", () => {
    const m = withoutDistributions(manifest('models/defect/packages/defect-int8-onnx'));
    const cfg = DriftConfig.parse({ windowSamples: 100, liveReferenceSamples: 100 });
    const t = new DriftTracker(m, 'frame', cfg, driftWindow(cfg, 'frame'));
    expect(t.origins).toEqual({ input: 'live', output: 'live' });
    const z = normals(3);
    const frame = (gain: number) => {
      const level = (0.4 + 0.05 * z()) * gain;
      return Float32Array.from({ length: 128 * 128 }, (_, i) => level + 0.1 * Math.sin(i));
    };
    const out = (i: number): [number, string] =>
      i % 5 === 0 ? [0.6 + 0.3 * Math.abs(z()), 'crack'] : [0.02 * Math.abs(z()), 'ok'];
    for (let i = 0; i < 100; i++) t.record(sample(m, frame(1), ...out(i), i));
    expect(t.evaluate()).toMatchObject({ input: [], output: [] });
    for (let i = 0; i < 100; i++) t.record(sample(m, frame(1), ...out(i), 100 + i));
    let ev = t.evaluate()!;
    expect(ev.input.map((x) => x.name)).toEqual(['brightness', 'contrast', 'sharpness']);
    // No reference sample of a live-learned score: KS against the first 100 outputs.
    expect(ev.output.map((x) => `${x.name}/${x.test}`)).toEqual(['score/ks', 'class/psi']);
    for (let i = 0; i < 100; i++) t.record(sample(m, frame(0.6), ...out(i), 200 + i));
    ev = t.evaluate()!;
    expect(ev.input.find((x) => x.name === 'brightness')!.drifted).toBe(true);
  });

  it('does not monitor inputs that are constant in the reference (the model cannot use them)', () => {
    const m = manifest('models/engine-rul/packages/engine-rul-fp32-onnx');
    const cfg = DriftConfig.parse({});
    const t = new DriftTracker(m, 'window', cfg, driftWindow(cfg, 'window'));
    expect(t.notes.join(' ')).toMatch(
      /constant in the reference data are not monitored.*setting3, s1, s5, s16, s18, s19/,
    );
  });
});

describe('drift settings', () => {
  it('defaults by kind and refuses levels that could never clear', () => {
    const d = DriftConfig.parse({});
    expect(d).toMatchObject({
      enabled: true,
      psiThreshold: 0.25,
      psiClear: 0.1,
      ksAlpha: 0.001,
      consecutive: 3,
      outputReference: 'manifest',
    });
    expect(driftWindow(d, 'frame')).toEqual({
      windowSamples: 500,
      minSamples: 500,
      evaluateEverySamples: 100,
      liveReferenceSamples: 500,
    });
    expect(driftWindow(d, 'window')).toEqual({
      windowSamples: 2000,
      minSamples: 2000,
      evaluateEverySamples: 400,
      liveReferenceSamples: 2000,
    });
    const bad = DriftConfig.safeParse({
      psiThreshold: 0.1,
      psiClear: 0.2,
      ksAlpha: 0.05,
      ksClearAlpha: 0.01,
      windowSamples: 100,
      minSamples: 200,
    });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.path.join('.')).sort()).toEqual([
      'ksClearAlpha',
      'minSamples',
      'psiClear',
    ]);
    expect(() => PipelineConfig.parse({ sources: ['a'], model: 'm', drift: { windowSize: 5 } })).toThrow();
    expect(
      PipelineConfig.parse({ sources: ['a'], model: 'm', drift: { enabled: false } }).drift!.enabled,
    ).toBe(false);
  });
});

describe('the monitor across model versions', () => {
  it('starts the window afresh for a new version, keeps the drift state, and stays off where disabled', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-drift-monitor-'));
    const store = Store.open(path.join(dir, 'v.db'), StoreConfig.parse({ path: 'x' }), silentLogger());
    try {
      const metrics = new Metrics({ processMetrics: false });
      // Never started: no alert is expected here, so nothing is ever published.
      const publisher = new MqttPublisher({
        config: MqttConfig.parse({ url: 'mqtt://127.0.0.1:1' }),
        deviceId: 'd',
        log: silentLogger(),
        version: 'test',
        env: {},
      });
      const monitor = new DriftMonitor({
        deviceId: 'd',
        configs: {
          p: DriftConfig.parse({ windowSamples: 100 }),
          off: DriftConfig.parse({ enabled: false }),
        },
        sink: store,
        publisher,
        metrics,
        log: silentLogger(),
        defer: () => undefined,
      });
      const v1 = manifest('models/machine-failure/packages/pump-failure-gbt');
      const v2: Manifest = { ...v1, version: '1.1.0' };
      const z = normals(11);
      const mean = v1.referenceStats!.inputMean!;
      const std = v1.referenceStats!.inputStd!;
      const feed = (m: Manifest, n: number, pipeline = 'p') => {
        for (let i = 0; i < n; i++)
          monitor.scored({
            ...sample(
              m,
              Float32Array.from(mean, (mu, j) => mu + std[j]! * z()),
              0.05,
              'risk',
              i,
            ),
            pipeline,
          });
      };
      feed(v1, 150);
      expect(monitor.evaluate('p')).toBeDefined();
      expect(monitor.status()['p']).toMatchObject({
        model: 'pump-failure',
        version: '1.0.0',
        windowSamples: 100,
      });
      expect(monitor.status()['p']!.input).toHaveLength(5);
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/vigil_drift_score\{pipeline="p",feature="input.temperature",test="psi"\} \d/);
      feed(v2, 30);
      expect(monitor.status()['p']).toMatchObject({
        version: '1.1.0',
        windowSamples: 30,
        input: [],
        active: false,
      });
      expect(monitor.evaluate('p')).toBeUndefined();
      feed(v1, 500, 'off');
      expect(monitor.status()['off']).toBeUndefined();
      await monitor.stop();
    } finally {
      store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
