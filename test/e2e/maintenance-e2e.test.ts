import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Alert } from '../../runtime/pipeline/result.js';
import { plantSources } from '../../runtime/cli/simulate/telemetry-sources.js';
import { Plant } from '../../simulator/plant/plant.js';
import { loadScenarioText } from '../../simulator/scenario/load.js';
import { ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';

/**
 * Predictive maintenance end to end: a seeded pump wears out and fails behind the simulator's
 * OPC-UA server; `vigil run` (its own process) runs the shipped pump failure and anomaly models
 * on that telemetry; a plain MQTT subscriber on Mosquitto must see `failure_risk` before the
 * failure, and `anomaly` for a vibration spike injected into a healthy second pump.
 */

// Five simulated hours per second: pump-1 fails at 60 h, 12 s into the run.
const ACCELERATION = 18_000;
const FAILS_AT_HOURS = 60;
const SCENARIO = `
version: 1
name: maintenance-e2e
seed: 11
acceleration: ${ACCELERATION}
machines:
  pump-1:
    kind: pump
    failure: { mode: bearing_wear, atHours: ${FAILS_AT_HOURS}, degradationHours: 40, repairHours: 1000 }
    expose: { opcua: { port: 0 } }
  pump-2:
    kind: pump
    failure: null
    expose: { opcua: { port: 0 } }
faults:
  - { kind: spike, asset: pump-2, tag: vibration_rms, at: 7, durationSeconds: 2, factor: 8 }
`;

let dir: string;
let broker: RunningMosquitto;
let plant: Plant;
let daemon: RunningDaemon;
let subscriber: mqtt.MqttClient;
const alerts: Array<{ at: number; alert: Alert }> = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-maintenance-e2e-'));
  broker = await startMosquitto();
  subscriber = await mqtt.connectAsync(broker.url);
  subscriber.on('message', (_t, payload) =>
    alerts.push({ at: Date.now(), alert: JSON.parse(payload.toString()) as Alert }),
  );
  await subscriber.subscribeAsync('vigil/maint-gw/alerts/#', { qos: 1 });
  plant = await Plant.start({
    scenario: loadScenarioText(SCENARIO, 'maintenance-e2e.yaml'),
    mqttUrl: broker.url,
    workDir: dir,
  });
  const sources = plantSources(plant.endpoints, { mqttUrl: broker.url, pkiFolder: path.join(dir, 'pki') });
  // One reading per tag per simulated hour at least: sample every 50 ms (a quarter hour here).
  const opcua = sources.opcua!;
  opcua.subscription = { publishingIntervalMs: 100 };
  opcua.items = (opcua.items as Array<Record<string, unknown>>).map((i) => ({
    ...i,
    samplingIntervalMs: 50,
  }));
  const httpPort = await freePort();
  await writeFile(
    path.join(dir, 'vigil.yaml'),
    stringify({
      version: 1,
      device: { id: 'maint-gw' },
      http: { port: httpPort },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, 'vigil.db') },
      models: {
        'pump-failure': { package: path.join(ROOT, 'models/machine-failure/packages/pump-failure-gbt') },
        'pump-anomaly': { package: path.join(ROOT, 'models/anomaly/packages/pump-anomaly-iforest') },
      },
      sources,
      pipelines: {
        maintenance: { sources: ['opcua'], model: 'pump-failure', severity: { risk: 'critical' } },
        anomaly: { sources: ['opcua'], model: 'pump-anomaly' },
      },
    }),
  );
  daemon = await startDaemon(path.join(dir, 'vigil.yaml'), httpPort);
}, 90_000);

afterAll(async () => {
  await subscriber?.endAsync();
  await daemon?.stop();
  await plant?.stop();
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('predictive maintenance end to end (OPC-UA → vigil run → MQTT)', () => {
  it('raises failure_risk for the wearing pump before it fails, once, and anomaly for the injected spike', async () => {
    const pump1 = plant.machines.find((m) => m.asset === 'pump-1')!;
    // Wait for the failure (12 s of wall time after the plant started), and a little after it.
    const deadline = Date.now() + 60_000;
    while (pump1.truth().state !== 'failed' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(pump1.truth().state, 'the simulated pump failed').toBe('failed');
    const failedAt = pump1.truth().failureAtWallMs!;
    await new Promise((r) => setTimeout(r, 2_000));

    const risk = alerts.filter((a) => a.alert.kind === 'failure_risk' && a.alert.asset === 'pump-1');
    const raised = risk.filter((a) => a.alert.details?.state === 'raised');
    expect(raised, `failure_risk alerts: ${JSON.stringify(risk.map((a) => a.alert.details))}`).toHaveLength(
      1,
    );
    const alert = raised[0]!.alert;
    const leadHours = ((failedAt - Date.parse(alert.timestamp)) / 1000) * (ACCELERATION / 3600);
    // The model card: every held-out failure caught, lead time p10 7.6 h, median 21 h.
    expect(leadHours).toBeGreaterThan(2);
    expect(leadHours).toBeLessThan(60);
    expect(alert.model.name).toBe('pump-failure');
    expect(alert.severity).toBe('critical');
    expect(alert.details?.probability).toBeGreaterThanOrEqual(0.35);
    expect(alert.details?.topTags.length).toBeGreaterThan(0);
    // The healthy pump raised no failure_risk before its spike (a spike of vibration looks like
    // wear to the failure model too).
    const spikeAt = plant.built.clock.startWallMs + 7_000;
    const early = alerts.filter(
      (a) =>
        a.alert.kind === 'failure_risk' &&
        a.alert.asset === 'pump-2' &&
        Date.parse(a.alert.timestamp) < spikeAt,
    );
    expect(early).toHaveLength(0);

    const spike = alerts.filter((a) => a.alert.kind === 'anomaly' && a.alert.asset === 'pump-2');
    expect(spike.map((a) => a.alert.details?.state)).toContain('raised');
    expect(spike.find((a) => a.alert.details?.state === 'raised')!.alert.details?.topTags[0]?.tag).toBe(
      'vibration_rms',
    );
  }, 90_000);
});
