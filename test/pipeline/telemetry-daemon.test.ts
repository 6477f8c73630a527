import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../runtime/config/load.js';
import { Daemon } from '../../runtime/daemon.js';
import { VigilError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/log.js';
import type { TelemetryPipelineStats } from '../../runtime/pipeline/telemetry-pipeline.js';
import { waitFor } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { watch, type Watcher } from '../publish/subscriber.js';

// The daemon's wiring: readings that an MQTT JSON source delivers pass the runtime's checks, are
// stored as before, and also reach the telemetry pipeline reading that source, whose alert comes
// out on the alert broker.

const MEAN_RUL = path.resolve(import.meta.dirname, '../fixtures/telemetry-models/mean-rul');

let broker: RunningMosquitto;
let dir: string;

beforeAll(async () => {
  broker = await startMosquitto();
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-telemetry-daemon-'));
});

afterAll(async () => {
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function config(pipelines: Record<string, unknown>, extraSources: Record<string, unknown> = {}) {
  return parseConfig(
    {
      device: { id: 'gw-d' },
      http: { enabled: false },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, `vigil-${Math.random().toString(36).slice(2)}.db`) },
      models: { rul: { package: MEAN_RUL, warmupRuns: 1 } },
      sources: {
        plant: {
          type: 'mqtt-json',
          url: broker.url,
          clientId: `vigil-test-${Math.random().toString(36).slice(2)}`,
          subscriptions: [
            {
              topic: 'plant/+/data',
              asset: '{1}',
              tags: { a: 'a', b: 'b', c: 'c', cycle: 'cycle' },
              timestampField: 'ts',
            },
          ],
        },
        ...extraSources,
      },
      pipelines,
    },
    '(test)',
    dir,
  );
}

describe('the daemon with a telemetry pipeline', () => {
  let daemon: Daemon | undefined;
  let plant: MqttClient | undefined;
  let watcher: Watcher | undefined;

  afterAll(async () => {
    await watcher?.end();
    await plant?.endAsync(true);
    await daemon?.stop();
  });

  it('feeds accepted readings to it and publishes its alert; readings are still stored', async () => {
    daemon = await Daemon.start(
      config({ engines: { sources: ['plant'], model: 'rul', threshold: 50 } }),
      silentLogger(),
    );
    expect([...daemon.telemetryPipelines.keys()]).toEqual(['engines']);
    expect([...daemon.pipelines.keys()]).toEqual([]);
    await waitFor('the source to subscribe', () =>
      daemon!.sources.get('plant')!.state() === 'up' ? true : undefined,
    );
    watcher = await watch(broker.url, 'vigil/gw-d/alerts/#');
    plant = connect(broker.url);
    await new Promise<void>((resolve, reject) => {
      plant!.once('connect', () => resolve());
      plant!.once('error', reject);
    });

    const stats = () =>
      (daemon!.status().telemetryPipelines as Record<string, TelemetryPipelineStats>).engines!;
    const start = Date.now() - 60_000;
    for (let cycle = 1; cycle <= 10; cycle++) {
      const v = cycle <= 5 ? 80 : 20;
      await plant.publishAsync(
        'plant/unit7/data',
        JSON.stringify({ ts: start + cycle * 1000, cycle, a: v, b: v, c: v }),
        { qos: 1 },
      );
      // One cycle at a time, as a slow engine would send them: every window is scored.
      if (cycle >= 4)
        await waitFor(`window ${cycle}`, () => (stats().windowsScored === cycle - 3 ? true : undefined));
    }
    // Threshold 50 (from the pipeline config), 2 windows in a row: [4..7] = 50, then [5..8] = 35 raises.
    const raised = await watcher.waitFor((m) => (m.json.details as { state?: string }).state === 'raised');
    expect(raised.topic).toBe('vigil/gw-d/alerts/failure_risk');
    expect(raised.json).toMatchObject({
      device: 'gw-d',
      pipeline: 'engines',
      source: 'plant',
      asset: 'unit7',
      threshold: 50,
      score: 35,
      details: { state: 'raised', axisEnd: 8, rul: 35, endTime: start + 8000 },
    });
    expect(stats()).toMatchObject({
      windowsScored: 7,
      windowsSkipped: {},
      alerts: { raised: { failure_risk: 1 }, cleared: {} },
      activeAlerts: { unit7: { alertId: raised.json.id } },
    });
    expect(stats().latencyMs!.count).toBe(7);
    expect(daemon.countReadings()).toBe(40);
  });

  it('refuses a telemetry model on a camera source, and alert overrides that cannot work', async () => {
    const camera = { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: 0 } } };
    const err = await Daemon.start(
      config({ p: { sources: ['cam'], model: 'rul' } }, camera),
      silentLogger(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect((err as VigilError).message).toMatch(
      /pipeline p runs model rul, a telemetry model .* but reads 'cam', a camera source/,
    );

    const bad = await Daemon.start(
      config({ p: { sources: ['plant'], model: 'rul', alert: { raise: 30, clear: 10 } } }),
      silentLogger(),
    ).catch((e: unknown) => e);
    expect((bad as VigilError).code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect((bad as VigilError).message).toMatch(/pipelines\.p: alert clear 10 is below raise 30/);
  });
});
