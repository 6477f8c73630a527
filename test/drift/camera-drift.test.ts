import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineConfig } from '../../runtime/config/schema.js';
import { DriftMonitor } from '../../runtime/drift/monitor.js';
import type { DriftAlert } from '../../runtime/drift/types.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { silentLogger } from '../../runtime/log.js';
import type { ScoredSample } from '../../runtime/pipeline/observer.js';
import { Pipeline } from '../../runtime/pipeline/pipeline.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { Store } from '../../runtime/store/store.js';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import type { Lighting } from '../../simulator/camera/types.js';
import type { FrameSink } from '../../simulator/camera/sinks.js';
import { ROOT } from '../helpers/daemon.js';
import type { Watcher } from '../publish/subscriber.js';
import { PeakTracker, keepFigures, round4, startDriftRig } from './support.js';

// Drift of the defect model measured on the simulator camera, everything real: 640x480 JPEG
// frames rendered by the simulator (as the training set was), Vigil's frame pipeline with the
// shipped int8 ONNX package and its reference statistics, the SQLite store, and drift alerts
// published through Mosquitto. The monitor runs with the default settings (window of 500
// frames, evaluated every 100, PSI 0.25 / clear 0.1, KS at alpha 0.001, 3 evaluations in a row).
// DRIFT_NULL_FRAMES sets the length of the undrifted run (the figures in docs/DRIFT.md used more).

const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const DEVICE = 'gw-drift';
const NULL_FRAMES = Number(process.env.DRIFT_NULL_FRAMES ?? 1000);
/** A quarter less light on the line: an ageing lamp, or the exposure turned down. */
const DIMMER: Lighting = { gain: 0.75 };

let closeRig: (() => Promise<void>) | undefined;
let store: Store;
let publisher: MqttPublisher;
let watcher: Watcher;
let engine: WorkerEngine;
let monitor: DriftMonitor;
let pipeline: Pipeline;
const alerts: Array<{ alert: DriftAlert; processed: number }> = [];
let processed = 0;
/** Per-sample cost of the observer on the pipeline's path (record only), µs. */
const observeUs: number[] = [];

beforeAll(async () => {
  const rig = await startDriftRig({
    device: DEVICE,
    packageDir: PACKAGE,
    pipeline: 'line',
    onAlert: (alert) => alerts.push({ alert, processed }),
  });
  closeRig = () => rig.close();
  ({ store, publisher, watcher, engine, monitor } = rig);
  const metrics = rig.metrics;
  // The observer's own cost, timed around the real call.
  const timed = {
    scored(s: ScoredSample) {
      const t = performance.now();
      monitor.scored(s);
      observeUs.push((performance.now() - t) * 1000);
    },
  };
  pipeline = new Pipeline({
    name: 'line',
    // A generous budget: on a shared 2-core test machine no frame may be dropped as late.
    config: PipelineConfig.parse({ sources: ['cam'], model: 'defect', budgetMs: 60_000 }),
    deviceId: DEVICE,
    engine: () => engine,
    sink: store,
    publisher,
    metrics,
    inputError: () => undefined,
    log: silentLogger(),
    onResult: (r) => {
      processed++;
      waiting.get(r.origin)?.();
      waiting.delete(r.origin);
    },
    observers: [timed],
  });
});

afterAll(async () => {
  await pipeline?.stop();
  await closeRig?.();
});

/** Frames handed to the pipeline and not yet scored, by origin. */
const waiting = new Map<string, () => void>();

/**
 * Straight into the pipeline, as a camera-http source would hand it over; delivered once its
 * result is stored, so the camera renders the next frame while this one is scored.
 */
const intoPipeline: FrameSink = {
  target: 'pipeline line',
  async deliver(frame) {
    const scored = new Promise<void>((resolve) => waiting.set(frame.origin, resolve));
    pipeline.offer({
      kind: 'frame',
      id: uuidv7(),
      source: 'cam',
      receivedAt: Date.now(),
      arrivedAt: performance.now(),
      data: frame.data,
      origin: frame.origin,
      contentType: 'image/jpeg',
    });
    await scored;
    return { ok: true };
  },
};

/** Runs a camera (20 % defects, like the reference) until `maxFrames` or until `until` says stop. */
async function shoot(
  seed: number,
  maxFrames: number,
  lighting?: Lighting,
  until?: () => boolean,
): Promise<number> {
  const start = processed;
  const camera = new SimCamera({
    name: `cam${seed}`,
    fps: 1000,
    width: 640,
    height: 480,
    defectRate: 0.2,
    seed,
    format: 'jpeg',
    sink: intoPipeline,
    render: renderFrame,
    maxFrames,
    maxInFlight: 2,
    lighting,
  });
  const timer = setInterval(() => {
    if (until?.()) void camera.stop();
  }, 20);
  camera.start();
  await camera.finished;
  clearInterval(timer);
  await pipeline.idle();
  // Let a deferred evaluation of the last frames run.
  await new Promise((r) => setImmediate(r));
  return processed - start;
}

describe('drift of the defect model on the simulator camera', () => {
  const nullPeaks = new PeakTracker();

  it(
    `raises no drift alert on ${NULL_FRAMES} undrifted frames`,
    async () => {
      const evaluate = monitor.evaluate.bind(monitor);
      monitor.evaluate = (p) => {
        const ev = evaluate(p);
        if (ev) nullPeaks.add([...ev.input, ...ev.output]);
        return ev;
      };
      const n = await shoot(1, NULL_FRAMES);
      monitor.evaluate = evaluate;
      expect(n).toBe(NULL_FRAMES);
      expect(alerts).toEqual([]);
      const status = monitor.status()['line']!;
      expect(status).toMatchObject({
        model: 'defect-cnn',
        version: '1.0.0',
        windowSamples: 500,
        active: false,
        alerts: 0,
      });
      expect(status.input.map((m) => m.name)).toEqual(['brightness', 'contrast', 'sharpness']);
      expect(status.output.map((m) => `${m.name}/${m.test}`)).toEqual(['score/ks', 'class/psi']);
      // Evaluated every 100 frames once 500 are in the window.
      expect(nullPeaks.evaluations).toBe(Math.floor((NULL_FRAMES - 500) / 100) + 1);
      expect(nullPeaks.pastThreshold).toBe(0);
      const sorted = [...observeUs].sort((a, b) => a - b);
      await keepFigures('drift-camera-null.json', {
        frames: n,
        evaluations: nullPeaks.evaluations,
        evaluationsPastThreshold: nullPeaks.pastThreshold,
        falseAlarms: alerts.length,
        peaks: nullPeaks.peaks,
        observeMicroseconds: {
          p50: round4(sorted[sorted.length >> 1]!),
          p99: round4(sorted[Math.floor(sorted.length * 0.99)]!),
        },
      });
    },
    Math.max(60_000, NULL_FRAMES * 60),
  );

  it('detects a lighting change within 1000 frames, publishes the alert, and clears it once the light is back', async () => {
    // The window is full of undrifted frames; the line gets a quarter less light.
    const dim = await shoot(2, 1000, DIMMER, () => monitor.status()['line']!.active);
    expect(alerts.map((a) => a.alert.drift.state)).toEqual(['raised']);
    const raised = alerts[0]!.alert;
    const delay = alerts[0]!.processed - (processed - dim);
    expect(raised).toMatchObject({
      kind: 'drift',
      severity: 'warning',
      pipeline: 'line',
      device: DEVICE,
      model: { name: 'defect-cnn', version: '1.0.0' },
      drift: {
        state: 'raised',
        model: { name: 'defect-cnn', version: '1.0.0' },
        reference: { input: 'manifest', output: 'manifest' },
      },
    });
    const names = raised.drift.features.map((f) => `${f.kind}.${f.name}`);
    expect(names).toContain('input.brightness');
    expect(raised.drift.features.every((f) => f.drifted && f.value > f.threshold)).toBe(true);
    expect(raised.drift.window.samples).toBe(500);
    // Stored before it was published, and acknowledged by the broker.
    const got = await watcher.waitFor((m) => m.json['id'] === raised.id);
    expect(got.json['drift']).toMatchObject({ state: 'raised' });
    const stored = store.recentAlerts(10).find((a) => a.id === raised.id);
    expect(stored).toBeDefined();
    await monitor.idle();
    expect(store.recentAlerts(10).find((a) => a.id === raised.id)?.publishedAt).toBeGreaterThan(0);
    expect(monitor.status()['line']).toMatchObject({ active: true, alerts: 1, lastChange: raised.timestamp });

    // The light is fixed: the alert clears once the window holds undrifted frames again.
    const back = await shoot(3, 1500, undefined, () => !monitor.status()['line']!.active);
    expect(alerts.map((a) => a.alert.drift.state)).toEqual(['raised', 'cleared']);
    const cleared = alerts[1]!.alert;
    const clearDelay = alerts[1]!.processed - (processed - back);
    expect(cleared).toMatchObject({
      kind: 'drift',
      severity: 'info',
      drift: { state: 'cleared', clears: raised.id },
    });
    expect(cleared.drift.features.every((f) => f.value < (f.test === 'psi' ? 0.1 : f.threshold))).toBe(true);
    await watcher.waitFor((m) => m.json['id'] === cleared.id);
    await keepFigures('drift-camera-lighting.json', {
      lighting: DIMMER,
      detectionDelayFrames: delay,
      raisedOn: raised.drift.features.map((f) => ({
        feature: `${f.kind}.${f.name}`,
        test: f.test,
        value: f.value,
      })),
      clearDelayFrames: clearDelay,
      clearedWith: cleared.drift.features.map((f) => ({ feature: `${f.kind}.${f.name}`, value: f.value })),
    });
  });
});
