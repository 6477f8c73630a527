import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { plantSources } from '../../runtime/cli/simulate/telemetry-sources.js';
import { Plant } from '../../simulator/plant/plant.js';
import { loadScenarioText } from '../../simulator/scenario/load.js';
import { startDaemon, metricValue, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';

/**
 * The whole telemetry path as a user runs it: `vigil run` as its own process, reading simulated
 * machines through every real protocol at once (the simulator's OPC-UA server, a CSV line and a
 * Modbus RTU slave on socat pty pairs, JSON and Sparkplug B through Mosquitto), through a server
 * restart and a cable pull, with bad payloads thrown at it on the way. Checked from the outside:
 * /metrics, the status API, and the SQLite file.
 */

const SCENARIO = `
version: 1
name: e2e
seed: 7
acceleration: 600
machines:
  pump-1:
    kind: pump
    expose: { opcua: { port: 0 } }
  spindle-1:
    kind: spindle
    expose: { serial: { format: csv, rateHz: 10 } }
  pump-2:
    kind: pump
    expose: { serial: { format: modbus, unitId: 3 } }
  pump-3:
    kind: pump
    expose: { mqtt: { format: json, rateHz: 5 } }
  engine-1:
    kind: cmapss-engine
    dataset: FD001
    units: [1]
    cycleSeconds: 60
    expose: { mqtt: { format: sparkplug, rateHz: 5 } }
faults:
  - { kind: status, asset: pump-1, tag: pressure, at: 1, durationSeconds: 3600, status: BadSensorFailure }
  - { kind: status, asset: pump-3, tag: current, at: 1, durationSeconds: 3600, status: BadSensorFailure }
`;

let dir: string;
let broker: RunningMosquitto;
let plant: Plant;
let daemon: RunningDaemon;
let dbFile: string;
const SOURCES = ['opcua', 'serial-spindle-1', 'modbus-pump-2', 'mqtt-json', 'sparkplug'];

async function metrics(): Promise<string> {
  return (await fetch(`${daemon.url}/metrics`)).text();
}

async function readings(source: string): Promise<number> {
  const m = await metrics();
  return ['good', 'uncertain', 'bad'].reduce(
    (n, quality) => n + metricValue(m, 'vigil_readings_total', { source, quality }),
    0,
  );
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-telemetry-e2e-'));
  broker = await startMosquitto();
  plant = await Plant.start({
    scenario: loadScenarioText(SCENARIO, 'e2e.yaml'),
    mqttUrl: broker.url,
    workDir: dir,
  });
  const sources = plantSources(plant.endpoints, { mqttUrl: broker.url, pkiFolder: path.join(dir, 'pki') });
  // A second, explicitly mapped JSON topic, with a plausible range, for the bad payloads below.
  const json = sources['mqtt-json']!;
  json.subscriptions = [
    ...(json.subscriptions as unknown[]),
    { topic: 'lab/+/telemetry', asset: '{1}', tags: { temperature: 'temperature' }, timestampField: 'ts' },
  ];
  json.limits = { temperature: { min: -40, max: 250 } };
  // Quick reconnects, so that the outages below fit in a test.
  for (const s of Object.values(sources)) s.reconnect = { initialDelayMs: 200, maxDelayMs: 1000 };
  const httpPort = await freePort();
  dbFile = path.join(dir, 'vigil.db');
  const config = {
    version: 1,
    device: { id: 'e2e-gw' },
    log: { level: 'info' },
    http: { port: httpPort },
    mqtt: { url: broker.url },
    store: { path: dbFile },
    models: {},
    sources,
    pipelines: {},
  };
  const file = path.join(dir, 'vigil.yaml');
  await writeFile(file, stringify(config));
  daemon = await startDaemon(file, httpPort);
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  await plant?.stop();
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('telemetry end to end (vigil run, real protocols)', () => {
  it('ingests from OPC-UA, a serial line, Modbus RTU, MQTT JSON and Sparkplug B', async () => {
    for (const source of SOURCES)
      await waitFor(
        `readings from ${source}`,
        async () => ((await readings(source)) >= 5 ? true : undefined),
        20_000,
      );
    const m = await metrics();
    for (const source of SOURCES) expect(metricValue(m, 'vigil_source_up', { source }), source).toBe(1);
  }, 30_000);

  it('refuses bad payloads with a reason each, keeps running and keeps what it had', async () => {
    const before = await readings('mqtt-json');
    const client = await mqtt.connectAsync(broker.url);
    const now = Date.now();
    const topic = 'lab/pump-9/telemetry';
    const bad: Array<[string, string | Buffer]> = [
      ['malformed', '{"ts": 1, "temperature": '],
      ['not_finite', `{"ts": ${now}, "temperature": "NaN"}`],
      ['not_finite', `{"ts": ${now}, "temperature": 1e999}`],
      ['not_a_number', `{"ts": ${now}, "temperature": "hot"}`],
      ['out_of_range', `{"ts": ${now}, "temperature": 999}`],
      ['bad_timestamp', `{"ts": ${now + 3_600_000}, "temperature": 20}`],
      ['bad_timestamp', `{"ts": ${now - 30 * 86_400_000}, "temperature": 20}`],
      ['too_large', Buffer.alloc(300 * 1024, 0x20)],
    ];
    const counts = new Map<string, number>();
    for (const [reason, payload] of bad) {
      counts.set(reason, (counts.get(reason) ?? 0) + 1);
      await client.publishAsync(topic, payload, { qos: 1 });
    }
    await client.publishAsync(topic, JSON.stringify({ ts: Date.now(), temperature: 42.5 }), { qos: 1 });
    await client.endAsync();
    for (const [reason, n] of counts)
      await waitFor(`${n} refusals for ${reason}`, async () =>
        metricValue(await metrics(), 'vigil_input_errors_total', { source: 'mqtt-json', reason }) >= n
          ? true
          : undefined,
      );
    expect((await fetch(`${daemon.url}/healthz`)).status).toBe(200);
    expect(daemon.proc.exitCode).toBeNull();
    // The good message after the bad ones arrived, and nothing accepted before was lost.
    await waitFor('the good reading of pump-9', async () => {
      const status = (await (await fetch(`${daemon.url}/api/v1/status`)).json()) as {
        telemetry: Record<string, { readings: { good: number } }>;
      };
      return status.telemetry['mqtt-json']!.readings.good > before ? true : undefined;
    });
    const logs = daemon.logs();
    expect(logs).toContain('temperature');
    expect(logs).toMatch(/in the future/);
  }, 30_000);

  it('comes back after an OPC-UA server restart and a serial cable pull, counting the reconnects', async () => {
    // The outages start only once both sources are connected, so that each is a real reconnect.
    const outages: Array<{ source: string; fault: Omit<Parameters<Plant['inject']>[0], 'action'> }> = [
      { source: 'opcua', fault: { kind: 'server-restart', protocol: 'opcua', assets: ['pump-1'] } },
      {
        source: 'serial-spindle-1',
        fault: { kind: 'cable-pull', protocol: 'serial', assets: ['spindle-1'] },
      },
    ];
    for (const { fault } of outages) await plant.inject({ ...fault, action: 'down' });
    for (const { source } of outages)
      await waitFor(`${source} to notice the outage`, async () =>
        metricValue(await metrics(), 'vigil_source_up', { source }) === 0 ? true : undefined,
      );
    await new Promise((r) => setTimeout(r, 1000));
    for (const { fault } of outages) await plant.inject({ ...fault, action: 'up' });
    for (const { source } of outages) {
      await waitFor(
        `a reconnect of ${source}`,
        async () =>
          metricValue(await metrics(), 'vigil_source_reconnects_total', { source }) >= 1 ? true : undefined,
        30_000,
      );
      const after = await readings(source);
      await waitFor(`new readings from ${source} after the reconnect`, async () =>
        (await readings(source)) > after + 3 ? true : undefined,
      );
    }
  }, 60_000);

  it('marks a Sparkplug node that lost the broker as dead, and reads it again after its rebirth', async () => {
    const quality = async (q: string) =>
      metricValue(await metrics(), 'vigil_readings_total', { source: 'sparkplug', quality: q });
    const badBefore = await quality('bad');
    await plant.inject({ kind: 'broker-disconnect', protocol: 'mqtt', assets: ['engine-1'], action: 'down' });
    // The broker publishes the node's NDEATH will: every metric of the engine becomes a bad reading.
    await waitFor('the NDEATH of the engine node', async () =>
      (await quality('bad')) > badBefore ? true : undefined,
    );
    const goodBefore = await quality('good');
    await plant.inject({ kind: 'broker-disconnect', protocol: 'mqtt', assets: ['engine-1'], action: 'up' });
    await waitFor('engine readings after the rebirth', async () =>
      (await quality('good')) > goodBefore + 10 ? true : undefined,
    );
  }, 30_000);

  it('stores every reading with asset, tag, quality and timestamps, and loses none it accepted', async () => {
    const m = await metrics();
    const accepted = SOURCES.reduce(
      (n, source) =>
        n +
        ['good', 'uncertain', 'bad'].reduce(
          (k, quality) => k + metricValue(m, 'vigil_readings_total', { source, quality }),
          0,
        ),
      0,
    );
    await daemon.stop();
    const db = new Database(dbFile, { readonly: true });
    try {
      const bySource = db
        .prepare(
          'SELECT source, count(*) AS n, count(source_time) AS stamped, count(server_time) AS served FROM readings GROUP BY source',
        )
        .all() as Array<{ source: string; n: number; stamped: number; served: number }>;
      const found = Object.fromEntries(bySource.map((r) => [r.source, r]));
      // Everything accepted until the stop, and whatever came in after, is in the file.
      expect(bySource.reduce((n, r) => n + r.n, 0)).toBeGreaterThanOrEqual(accepted);
      for (const s of SOURCES) expect(found[s]?.n, s).toBeGreaterThan(0);
      const deaths = db
        .prepare("SELECT count(*) AS n FROM readings WHERE source = 'sparkplug' AND status = 'NodeDeath'")
        .get() as { n: number };
      expect(deaths.n).toBeGreaterThan(0);
      // OPC-UA keeps the server's timestamp next to the device's.
      expect(found.opcua!.served).toBe(found.opcua!.n);
      const tags = db.prepare("SELECT DISTINCT tag FROM readings WHERE asset = 'engine-1'").all() as Array<{
        tag: string;
      }>;
      expect(tags.map((t) => t.tag)).toEqual(expect.arrayContaining(['cycle', 'setting1', 's1', 's21']));
      const nonFinite = db
        .prepare(
          'SELECT count(*) AS n FROM readings WHERE value IS NOT NULL AND (value != value OR abs(value) > 1e308)',
        )
        .get() as { n: number };
      expect(nonFinite.n).toBe(0);
      // A sensor that reports its own failure is stored as bad, with the device's reason and no value.
      const failed = db
        .prepare(
          "SELECT source, status, value FROM readings WHERE quality = 'bad' AND tag IN ('pressure', 'current') GROUP BY source",
        )
        .all() as Array<{ source: string; status: string; value: number | null }>;
      expect(failed).toEqual(
        expect.arrayContaining([
          { source: 'opcua', status: 'BadSensorFailure', value: null },
          { source: 'mqtt-json', status: 'NoValue', value: null },
        ]),
      );
      const pump9 = db
        .prepare("SELECT value FROM readings WHERE asset = 'pump-9' AND tag = 'temperature'")
        .all() as Array<{ value: number }>;
      expect(pump9.map((r) => r.value)).toEqual([42.5]);
    } finally {
      db.close();
    }
  }, 30_000);
});
