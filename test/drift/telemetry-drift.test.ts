import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineConfig } from '../../runtime/config/schema.js';
import { DriftMonitor } from '../../runtime/drift/monitor.js';
import type { DriftAlert } from '../../runtime/drift/types.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { silentLogger } from '../../runtime/log.js';
import { TelemetryPipeline } from '../../runtime/pipeline/telemetry-pipeline.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { Store } from '../../runtime/store/store.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { ManualTime, SimClock } from '../../simulator/machines/clock.js';
import { parseScenario } from '../../simulator/scenario/load.js';
import { ROOT } from '../helpers/daemon.js';
import type { Watcher } from '../publish/subscriber.js';
import { PeakTracker, keepFigures, startDriftRig } from './support.js';

// Drift of the pump failure model measured on the simulator: a simulated pump (the same physics
// as its training runs, another seed, failing and being repaired), read every operating hour,
// windowed and scored by Vigil's telemetry pipeline with the shipped package and its reference
// statistics; drift alerts stored and published through Mosquitto. A scenario `offset` fault
// puts the temperature sensor 5 °C off for a while (a re-mounted or miscalibrated sensor).
// Default drift settings for telemetry: a window of 2000 scored windows, evaluated every 400.

const PACKAGE = path.join(ROOT, 'models/machine-failure/packages/pump-failure-gbt');
const DEVICE = 'gw-drift-t';
const ASSET = 'pump-7';
/** Operating hours of undrifted data before the sensor goes off, then how long it stays off. */
const OFFSET_AT = Number(process.env.DRIFT_NULL_HOURS ?? 12_000);
const OFFSET_HOURS = 5_000;
const END = OFFSET_AT + OFFSET_HOURS + 5_000;
const OFFSET = 5;

let closeRig: (() => Promise<void>) | undefined;
let store: Store;
let publisher: MqttPublisher;
let watcher: Watcher;
let engine: WorkerEngine;
let monitor: DriftMonitor;
let pipeline: TelemetryPipeline;
let scored = 0;
const alerts: Array<{ alert: DriftAlert; scored: number }> = [];

beforeAll(async () => {
  const rig = await startDriftRig({
    device: DEVICE,
    packageDir: PACKAGE,
    pipeline: 'pumps',
    maxRows: 1_000_000,
    onAlert: (alert) => alerts.push({ alert, scored }),
  });
  closeRig = () => rig.close();
  ({ store, publisher, watcher, engine, monitor } = rig);
  const metrics = rig.metrics;
  pipeline = new TelemetryPipeline({
    name: 'pumps',
    config: PipelineConfig.parse({ sources: ['plant'], model: 'pump-failure', maxPendingWindows: 1000 }),
    deviceId: DEVICE,
    engine: () => engine,
    sink: store,
    publisher,
    metrics,
    log: silentLogger(),
    onResult: () => void scored++,
    observers: [monitor],
  });
});

afterAll(async () => {
  await pipeline?.stop();
  await closeRig?.();
});

describe('drift of the pump failure model on a simulated pump', () => {
  it(
    'raises nothing on undrifted hours, detects a temperature sensor offset, and clears once it is gone',
    async () => {
      // One simulated hour per wall second: fault times are operating hours of the pump here.
      const scenario = parseScenario({
        version: 1,
        seed: 5,
        acceleration: 3600,
        machines: { [ASSET]: { kind: 'pump', failure: { repairHours: 8 } } },
        faults: [
          {
            kind: 'offset',
            asset: ASSET,
            tag: 'temperature',
            at: OFFSET_AT,
            durationSeconds: OFFSET_HOURS,
            offset: OFFSET,
          },
        ],
      });
      const time = new ManualTime(0);
      const built = scenario.build({
        clock: new SimClock({ acceleration: 3600, now: time.now, startWallMs: 0 }),
      });
      const machine = built.machines[0]!.machine;
      expect(built.injectedFaults()).toMatchObject([
        { asset: ASSET, tag: 'temperature', kind: 'offset', atSeconds: OFFSET_AT },
      ]);
      const tags = ['temperature', 'vibration_rms', 'current', 'speed', 'pressure', 'hours'];

      const peaks = { null: new PeakTracker(), offset: new PeakTracker() };
      let phase: keyof typeof peaks | undefined = 'null';
      const evaluate = monitor.evaluate.bind(monitor);
      monitor.evaluate = (p) => {
        const ev = evaluate(p);
        if (ev && phase) peaks[phase].add([...ev.input, ...ev.output]);
        return ev;
      };
      const marks: Record<string, number> = {};
      for (let h = 1; h <= END; h++) {
        if (h === OFFSET_AT) {
          marks['offsetOn'] = scored;
          marks['alertsBefore'] = alerts.length;
          phase = 'offset';
        }
        if (h === OFFSET_AT + OFFSET_HOURS) {
          marks['offsetOff'] = scored;
          phase = undefined;
        }
        time.set(h * 1000);
        const snap = machine.snapshot();
        const batch: Reading[] = tags.map((tag) => ({
          source: 'plant',
          asset: ASSET,
          tag,
          value: snap.values[tag]!.value,
          quality: 'good',
          sourceTime: snap.time,
          receivedAt: snap.time,
        }));
        pipeline.offer(batch);
        // Hour by hour, as a live pump reports: queued windows of a run would be superseded when
        // the repaired pump's hour meter starts again, and those are the run's last, worn hours.
        await pipeline.idle();
        if (h % 100 === 0) await new Promise((r) => setImmediate(r));
      }
      await pipeline.idle();
      await new Promise((r) => setImmediate(r));
      monitor.evaluate = evaluate;

      // (a) Undrifted: no alert, nothing past its threshold.
      expect(marks['alertsBefore']).toBe(0);
      expect(peaks.null.evaluations).toBeGreaterThanOrEqual(15);
      expect(peaks.null.pastThreshold).toBe(0);
      // (c) The offset: raised on the temperature input, within 2000 windows.
      expect(alerts.map((a) => a.alert.drift.state)).toEqual(['raised', 'cleared']);
      const [raised, cleared] = alerts;
      expect(raised!.alert.drift.features.map((f) => `${f.kind}.${f.name}`)).toContain('input.temperature');
      // The most drifted measure names the alert: here the model's own output may move more than the input.
      expect(raised!.alert).toMatchObject({ kind: 'drift', severity: 'warning', pipeline: 'pumps' });
      expect(raised!.alert.label).toMatch(/^(input|output)\./);
      const detection = raised!.scored - marks['offsetOn']!;
      expect(detection).toBeLessThanOrEqual(4000);
      // (d) Cleared after the sensor is right again.
      expect(raised!.scored).toBeLessThan(marks['offsetOff']!);
      const clearing = cleared!.scored - marks['offsetOff']!;
      expect(clearing).toBeGreaterThan(0);
      expect(cleared!.alert.drift).toMatchObject({ state: 'cleared', clears: raised!.alert.id });
      await watcher.waitFor((m) => m.json['id'] === cleared!.alert.id);
      expect(store.recentAlerts(10_000).filter((a) => a.kind === 'drift')).toHaveLength(2);

      const snap = pipeline.snapshot();
      expect(snap.windowsSkipped).toEqual({});
      await keepFigures('drift-telemetry-pump.json', {
        undriftedWindows: marks['offsetOn'],
        undriftedEvaluations: peaks.null.evaluations,
        falseAlarms: marks['alertsBefore'],
        undriftedPeaks: peaks.null.peaks,
        offset: { tag: 'temperature', by: OFFSET, unit: '°C' },
        detectionDelayWindows: detection,
        raisedOn: raised!.alert.drift.features.map((f) => ({
          feature: `${f.kind}.${f.name}`,
          value: f.value,
        })),
        offsetPeaks: peaks.offset.peaks,
        clearDelayWindows: clearing,
        totalWindows: scored,
      });
    },
    Math.max(60_000, END * 4),
  );
});
