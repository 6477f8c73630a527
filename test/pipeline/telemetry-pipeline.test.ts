import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttConfig, StoreConfig, PipelineConfig } from '../../runtime/config/schema.js';
import type { Engine } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import type { Alert, Result } from '../../runtime/pipeline/result.js';
import { TelemetryPipeline } from '../../runtime/pipeline/telemetry-pipeline.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { Store } from '../../runtime/store/store.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { OPTIONS } from '../engines/support.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { watch, type Watcher } from '../publish/subscriber.js';

// The telemetry pipeline with everything real: the fixture models in the engine's worker thread,
// the SQLite store, and the MQTT publisher against Mosquitto with a subscriber reading the alerts.

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/telemetry-models');
const DEVICE = 'gw-t';
const T0 = Date.UTC(2025, 0, 1);

let broker: RunningMosquitto;
let dir: string;
let store: Store;
let publisher: MqttPublisher;
let watcher: Watcher;
let meanRul: WorkerEngine;
let iforest: WorkerEngine;
const pipelines: TelemetryPipeline[] = [];

beforeAll(async () => {
  broker = await startMosquitto();
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-telemetry-pipeline-'));
  store = Store.open(
    path.join(dir, 'vigil.db'),
    StoreConfig.parse({ path: 'x', retentionHours: 1, maxRows: 100_000, maxReadings: 1000 }),
    silentLogger(),
  );
  publisher = new MqttPublisher({
    config: MqttConfig.parse({ url: broker.url }),
    deviceId: DEVICE,
    log: silentLogger(),
    version: 'test',
    outbox: store,
    env: {},
  });
  await publisher.start();
  watcher = await watch(broker.url, `vigil/${DEVICE}/alerts/#`);
  meanRul = await loadEngine(path.join(FIXTURES, 'mean-rul'), OPTIONS, silentLogger());
  iforest = await loadEngine(path.join(FIXTURES, 'iforest-anomaly'), OPTIONS, silentLogger());
});

afterAll(async () => {
  for (const p of pipelines) await p.stop();
  await watcher?.end();
  await publisher?.stop();
  await meanRul?.close();
  await iforest?.close();
  store?.close();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function pipeline(
  name: string,
  engine: () => Engine | undefined,
  config: Record<string, unknown> = {},
  onResult?: (r: Result, a: Alert | undefined) => void,
) {
  const metrics = new Metrics({ processMetrics: false });
  const p = new TelemetryPipeline({
    name,
    config: PipelineConfig.parse({ sources: ['plant'], model: 'm', ...config }),
    deviceId: DEVICE,
    engine,
    sink: store,
    publisher,
    metrics,
    log: silentLogger(),
    onResult,
  });
  pipelines.push(p);
  return { p, metrics };
}

/** One C-MAPSS-like batch: a, b and c at `value`, and the cycle, with one timestamp. */
function cycleBatch(cycle: number, value: number, asset = 'unit1'): Reading[] {
  const t = T0 + cycle * 60_000;
  const base = { source: 'plant', asset, quality: 'good' as const, sourceTime: t, receivedAt: t };
  return [
    { ...base, tag: 'a', value },
    { ...base, tag: 'b', value },
    { ...base, tag: 'c', value },
    { ...base, tag: 'cycle', value: cycle },
  ];
}

describe('TelemetryPipeline with a RUL model on a cycle axis', () => {
  it('scores every window, raises failure_risk once and clears it once, through the store and Mosquitto', async () => {
    const seen: Array<{ result: Result; alert: Alert | undefined }> = [];
    const { p, metrics } = pipeline(
      'engines',
      () => meanRul,
      { severity: { rul: 'critical' } },
      (result, alert) => seen.push({ result, alert }),
    );
    // RUL = mean of the last 4 cycles. 80 (healthy), then 20 (under raise 30), then 35 (between
    // raise and clear 40: no change either way), then 80 again.
    const value = (c: number) => (c <= 8 ? 80 : c <= 16 ? 20 : c <= 24 ? 35 : 80);
    let activeDuringHover: unknown;
    for (let c = 1; c <= 32; c++) {
      p.offer(cycleBatch(c, value(c)));
      await p.idle();
      if (c === 22) activeDuringHover = p.snapshot().activeAlerts;
    }

    const raised = await watcher.waitFor(
      (m) => m.json.pipeline === 'engines' && (m.json.details as { state?: string })?.state === 'raised',
    );
    const cleared = await watcher.waitFor(
      (m) => m.json.pipeline === 'engines' && (m.json.details as { state?: string })?.state === 'cleared',
    );
    expect(raised.topic).toBe(`vigil/${DEVICE}/alerts/failure_risk`);
    expect(raised.json).toMatchObject({
      device: DEVICE,
      pipeline: 'engines',
      kind: 'failure_risk',
      severity: 'critical',
      label: 'rul',
      asset: 'unit1',
      origin: 'unit1',
      source: 'plant',
      score: 20,
      threshold: 30,
      model: { name: 'mean-rul', version: '1', backend: 'onnxruntime-node', provider: 'cpu' },
      details: {
        state: 'raised',
        rul: 20,
        leadTime: 20,
        unit: 'cycles',
        axisStart: 10,
        axisEnd: 13,
        endTime: T0 + 13 * 60_000,
        topTags: [
          { tag: 'a', z: 20 },
          { tag: 'b', z: 20 },
          { tag: 'c', z: 20 },
        ],
      },
    });
    expect(typeof raised.json.id).toBe('string');
    expect(typeof raised.json.latencyMs).toBe('number');
    // Window [22..25] = (3 x 35 + 80) / 4 = 46.25 is the first past clear; [23..26] = 57.5 the second.
    expect(cleared.json).toMatchObject({
      kind: 'failure_risk',
      severity: 'info',
      asset: 'unit1',
      score: 57.5,
      threshold: 30,
      details: { state: 'cleared', axisEnd: 26, clears: raised.json.id },
    });
    expect(activeDuringHover).toMatchObject({ unit1: { alertId: raised.json.id, kind: 'failure_risk' } });

    // Stored: one result per window (cycles 4..32), with the asset and details; exactly two alerts.
    const results = store.listResults({ pipeline: 'engines' });
    expect(results).toHaveLength(29);
    expect(results.map((r) => r.details!.axisEnd)).toEqual(Array.from({ length: 29 }, (_, i) => i + 4));
    expect(results[0]).toMatchObject({
      asset: 'unit1',
      origin: 'unit1',
      label: 'rul',
      score: 80,
      threshold: 30,
    });
    expect(results[0]!.scores).toEqual({ rul: 80 });
    expect(results.find((r) => r.details!.axisEnd === 11)!.score).toBe(35);
    expect(store.countAlerts({ pipeline: 'engines' })).toBe(2);
    expect(seen.filter((s) => s.alert).map((s) => s.alert!.details!.state)).toEqual(['raised', 'cleared']);
    expect(watcher.received.filter((m) => m.json.pipeline === 'engines')).toHaveLength(2);

    const stats = p.snapshot();
    expect(stats).toMatchObject({
      kind: 'telemetry',
      model: { name: 'mean-rul', version: '1' },
      assets: 1,
      windowsScored: 29,
      windowsSkipped: {},
      alerts: { raised: { failure_risk: 1 }, cleared: { failure_risk: 1 } },
      activeAlerts: {},
      pending: 0,
    });
    expect(stats.latencyMs!.count).toBe(29);
    expect(stats.latencyMs!.p99).toBeGreaterThanOrEqual(stats.latencyMs!.p50);
    const text = await metrics.registry.metrics();
    expect(text).toContain('vigil_windows_scored_total{pipeline="engines"} 29');
    expect(text).toContain('vigil_alerts_total{pipeline="engines",kind="failure_risk"} 1');
    expect(text).toContain('vigil_alerts_cleared_total{pipeline="engines",kind="failure_risk"} 1');
    expect(text).toContain('vigil_alerts_active{pipeline="engines"} 0');
  });

  it('supersedes the oldest waiting window of an asset when the model falls behind', async () => {
    const { p, metrics } = pipeline('behind', () => meanRul, { maxPendingWindows: 2 });
    // 23 cycles (20 windows) handed over in one go: the first window goes to the model at once, the rest wait.
    for (let c = 1; c <= 23; c++) p.offer(cycleBatch(c, 90, 'unit9'));
    await p.idle();
    const stats = p.snapshot();
    expect(stats.windowsScored).toBe(3);
    expect(stats.windowsSkipped).toEqual({ superseded: 17 });
    // The newest windows are the ones scored.
    expect(store.listResults({ pipeline: 'behind' }).map((r) => r.details!.axisEnd)).toEqual([4, 22, 23]);
    expect(await metrics.registry.metrics()).toContain(
      'vigil_windows_skipped_total{pipeline="behind",reason="superseded"} 17',
    );
  });

  it('counts windows as model_unavailable while the model is away, and skipped readings by reason', async () => {
    let available = true;
    const { p } = pipeline('flaky', () => (available ? meanRul : undefined));
    for (let c = 1; c <= 5; c++) {
      p.offer(cycleBatch(c, 90, 'unit5'));
      await p.idle();
    }
    available = false;
    p.offer(cycleBatch(6, 90, 'unit5'));
    await p.idle();
    available = true;
    p.offer(cycleBatch(6, 90, 'unit5')); // a repeated cycle
    p.offer(cycleBatch(9, 90, 'unit5')); // 7 held, 8 beyond the hold
    await p.idle();
    expect(p.snapshot()).toMatchObject({
      windowsScored: 3,
      windowsSkipped: { model_unavailable: 1, gap: 2 },
      readingsDropped: { duplicate: 3 },
    });
  });
});

describe('TelemetryPipeline with an Isolation Forest on a time axis', () => {
  it('scores windows as Python does, raises anomaly once on a spike and clears it once', async () => {
    const cases = JSON.parse(readFileSync(path.join(FIXTURES, 'cases/iforest-cases.json'), 'utf8')) as {
      tags: string[];
      raw: number[][];
      raise: number;
      clear: number;
      windows: Array<{ end: number; score: number; spike: boolean }>;
    };
    const { p } = pipeline('pump-anomaly', () => iforest, { publishResults: false });
    for (const [k, row] of cases.raw.entries()) {
      const t = T0 + k * 1000 + 250;
      p.offer(
        cases.tags.map((tag, j) => ({
          source: 'plant',
          asset: 'pump1',
          tag,
          value: row[j]!,
          quality: 'good' as const,
          sourceTime: t,
          receivedAt: t,
        })),
      );
      await p.idle();
    }
    p.flush();
    await p.idle();

    const results = store.listResults({ pipeline: 'pump-anomaly' });
    expect(results).toHaveLength(cases.windows.length);
    results.forEach((r, i) => {
      expect(r.details!.axisEnd).toBe(T0 / 1000 + cases.windows[i]!.end);
      expect(r.score).toBeCloseTo(cases.windows[i]!.score, 4);
      expect(r.label).toBe('anomaly');
    });
    const firstRaise = cases.windows.find((w) => w.score >= cases.raise)!;
    const firstNormal = cases.windows.find((w) => w.end > firstRaise.end && !w.spike)!;

    const raised = await watcher.waitFor(
      (m) => m.json.pipeline === 'pump-anomaly' && (m.json.details as { state?: string })?.state === 'raised',
    );
    const cleared = await watcher.waitFor(
      (m) =>
        m.json.pipeline === 'pump-anomaly' && (m.json.details as { state?: string })?.state === 'cleared',
    );
    expect(raised.topic).toBe(`vigil/${DEVICE}/alerts/anomaly`);
    expect(raised.json).toMatchObject({
      kind: 'anomaly',
      label: 'anomaly',
      asset: 'pump1',
      threshold: cases.raise,
      model: { name: 'iforest-anomaly', version: '1' },
      details: { state: 'raised', axisEnd: T0 / 1000 + firstRaise.end },
    });
    const details = raised.json.details as { topTags: Array<{ tag: string; z: number }>; anomaly: number };
    // The spike is in tag b (+8 standard deviations at the window's last step).
    expect(details.topTags[0]).toEqual({ tag: 'b', z: 8 });
    expect(details.anomaly).toBeCloseTo(firstRaise.score, 4);
    expect(cleared.json).toMatchObject({
      details: { state: 'cleared', axisEnd: T0 / 1000 + firstNormal.end },
    });
    expect(watcher.received.filter((m) => m.json.pipeline === 'pump-anomaly')).toHaveLength(2);
    expect(p.snapshot().alerts).toEqual({ raised: { anomaly: 1 }, cleared: { anomaly: 1 } });
  });
});
