import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ROOT, metricValue, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { watch, type Received, type Watcher } from '../publish/subscriber.js';

// Data expectations as a user runs them: `vigil run` as its own process with an MQTT JSON source
// on a real Mosquitto that declares expectations, read by two pipelines; a device publishes
// out-of-range temperatures, then a payload whose fields change shape, then payloads without a
// required field. The data_quality alerts are received from the broker on alerts/data_quality,
// the counts scraped from /metrics, the state read from /api/v1/status and the flags from the
// SQLite file.

const DEVICE = 'dq-gw';
const MEAN_RUL = path.join(ROOT, 'test/fixtures/telemetry-models/mean-rul');
let dir: string;
let broker: RunningMosquitto;
let daemon: RunningDaemon;
let device: MqttClient;
let alerts: Watcher;
let dbFile: string;
let ts = Date.now();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-dq-e2e-'));
  broker = await startMosquitto();
  const httpPort = await freePort();
  dbFile = path.join(dir, 'vigil.db');
  const config = {
    version: 1,
    device: { id: DEVICE },
    log: { level: 'info' },
    http: { port: httpPort },
    mqtt: { url: broker.url },
    store: { path: dbFile },
    // The pipelines only name the alerts' owner here: the mean-rul fixture scores tags a, b, c,
    // which this source does not deliver, so they never score a window.
    models: { rul: { package: MEAN_RUL, warmupRuns: 1 } },
    sources: {
      line: {
        type: 'mqtt-json',
        url: broker.url,
        subscriptions: [
          {
            topic: 'line/+/telemetry',
            asset: '{1}',
            tags: { temperature: 'temperature', pressure: 'pressure' },
            timestampField: 'ts',
          },
        ],
        limits: { temperature: { min: -40, max: 400 } },
        expectations: {
          tags: { temperature: { range: { min: 0, max: 120 } } },
          payload: { requiredFields: ['temperature'] },
          alert: { raiseAfter: 3, windowSeconds: 60, clearAfterReadings: 3 },
        },
      },
    },
    pipelines: {
      'oven-health': { sources: ['line'], model: 'rul' },
      'oven-trend': { sources: ['line'], model: 'rul', dataQuality: { policy: 'flag' } },
    },
  };
  const file = path.join(dir, 'vigil.yaml');
  await writeFile(file, stringify(config));
  alerts = await watch(broker.url, `vigil/${DEVICE}/alerts/data_quality`);
  daemon = await startDaemon(file, httpPort);
  device = await mqtt.connectAsync(broker.url, { clientId: 'dq-device' });
}, 60_000);

afterAll(async () => {
  await device?.endAsync();
  await alerts?.end();
  await daemon?.stop();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function publish(payload: Record<string, unknown>, asset = 'oven-1'): Promise<void> {
  ts += 1000;
  await device.publishAsync(`line/${asset}/telemetry`, JSON.stringify({ ts, ...payload }), { qos: 1 });
}

async function metrics(): Promise<string> {
  return (await fetch(`${daemon.url}/metrics`)).text();
}

async function status(): Promise<Record<string, unknown>> {
  return (await (await fetch(`${daemon.url}/api/v1/status`)).json()) as Record<string, unknown>;
}

const dq = (m: Received) => m.json['dataQuality'] as Record<string, unknown>;

describe('data expectations end to end (vigil run, Mosquitto)', () => {
  it('raises a range alert after three out-of-range temperatures; the readings are stored with their flag', async () => {
    for (let i = 0; i < 3; i++) await publish({ temperature: 60 + i, pressure: 1.2 });
    for (let i = 0; i < 3; i++) await publish({ temperature: 150 + i, pressure: 1.2 });
    const raised = await alerts.waitFor((m) => dq(m)['rule'] === 'range' && dq(m)['state'] === 'raised');
    expect(raised.topic).toBe(`vigil/${DEVICE}/alerts/data_quality`);
    expect(raised.json).toMatchObject({
      device: DEVICE,
      // The first pipeline that reads the source, in config order; all of them in dataQuality.
      pipeline: 'oven-health',
      source: 'line',
      origin: 'oven-1/temperature',
      kind: 'data_quality',
      severity: 'warning',
      label: 'range',
      score: 3,
      threshold: 3,
      model: { name: 'mean-rul', version: '1' },
      asset: 'oven-1',
      dataQuality: {
        state: 'raised',
        rule: 'range',
        asset: 'oven-1',
        tag: 'temperature',
        message: 'oven-1/temperature = 152 is outside the expected range [0, 120]',
        pipelines: ['oven-health', 'oven-trend'],
      },
    });
    expect(raised.json['sampleId']).toBe(dq(raised)['traceId']);
    await keepExample('data-quality-alert-range.json', raised.json);

    const m = await metrics();
    expect(
      metricValue(m, 'vigil_expectation_violations_total', {
        source: 'line',
        rule: 'range',
        tag: 'temperature',
      }),
    ).toBe(3);
    expect(metricValue(m, 'vigil_data_quality_active', { source: 'line', rule: 'range' })).toBe(1);
    // One series per pipeline, never one per combination of pipelines.
    expect(metricValue(m, 'vigil_alerts_total', { pipeline: 'oven-health', kind: 'data_quality' })).toBe(1);
    expect(m).not.toContain('pipeline="oven-health,oven-trend"');

    // Stored, not refused: the flags column says which rule they broke, under the alert's trace id.
    await waitFor('the flagged readings in the store', () => {
      const db = new Database(dbFile, { readonly: true });
      try {
        const rows = db
          .prepare("SELECT value, flags, trace_id FROM readings WHERE tag = 'temperature' ORDER BY id")
          .all() as Array<{ value: number; flags: string | null; trace_id: string }>;
        return rows.length >= 6 ? rows : undefined;
      } finally {
        db.close();
      }
    }).then((rows) => {
      expect(rows.map((r) => r.flags)).toEqual([null, null, null, '["range"]', '["range"]', '["range"]']);
      expect(rows[5]!.trace_id).toBe(dq(raised)['traceId']);
    });
  });

  it('reports a payload whose fields change shape, naming them, on the broker, in the log and in /metrics', async () => {
    await publish({ temperature: 61, pressure: '1.2 bar', humidity: 40 });
    const drift = await alerts.waitFor((m) => dq(m)['rule'] === 'schema_drift');
    expect(drift.json).toMatchObject({
      kind: 'data_quality',
      label: 'schema_drift',
      origin: 'line/oven-1/telemetry',
      threshold: 1,
      dataQuality: {
        state: 'raised',
        rule: 'schema_drift',
        asset: 'oven-1',
        fields: { added: ['humidity'], removed: [], changed: ['pressure'] },
        message:
          'payload on line/oven-1/telemetry (asset oven-1) changed shape: added humidity; type changed pressure',
      },
    });
    await keepExample('data-quality-alert-schema-drift.json', drift.json);
    const m = await metrics();
    expect(metricValue(m, 'vigil_payload_schema_changes_total', { source: 'line' })).toBe(1);
    // The pressure string itself is refused as before. The temperature of the message is stored,
    // flagged schema_drift under the alert's trace id: the pipelines' policies decide what their
    // models see of it, as for any reading out of spec.
    expect(metricValue(m, 'vigil_input_errors_total', { source: 'line', reason: 'not_a_number' })).toBe(1);
    const stored = await storedReadings(13);
    expect(stored.at(-1)).toMatchObject({
      value: 61,
      flags: '["schema_drift"]',
      trace_id: dq(drift)['traceId'],
    });
    await waitFor('the schema drift log line', () =>
      daemon
        .logs()
        .includes(
          'schema drift on line/oven-1/telemetry (source line, asset oven-1): added humidity; type changed pressure',
        )
        ? true
        : undefined,
    );
  });

  it('reports payloads without a required field as payload_fields; their other readings are stored, flagged', async () => {
    for (let i = 0; i < 3; i++) await publish({ pressure: 1.3, humidity: 40 });
    const fields = await alerts.waitFor((m) => dq(m)['rule'] === 'payload_fields');
    expect(fields.json).toMatchObject({
      label: 'payload_fields',
      dataQuality: {
        state: 'raised',
        message: 'payload on line/oven-1/telemetry (asset oven-1) lacks the required field temperature',
      },
    });
    const m = await metrics();
    expect(
      metricValue(m, 'vigil_expectation_violations_total', {
        source: 'line',
        rule: 'payload_fields',
        tag: '',
      }),
    ).toBe(3);
    // 6 messages of 2 readings, the drifted one's temperature, and the pressure of these 3.
    await waitFor('every reading counted', async () =>
      metricValue(await metrics(), 'vigil_readings_total', { source: 'line', quality: 'good' }) === 16
        ? true
        : undefined,
    );
    // Each pressure of these messages carries the rule its message broke. The first of them also
    // changed shape back (temperature gone, pressure a number again): schema drift too.
    const pressures = (await storedReadings(16, 'pressure')).slice(-3);
    expect(pressures.map((r) => r.flags)).toEqual([
      '["payload_fields","schema_drift"]',
      '["payload_fields"]',
      '["payload_fields"]',
    ]);
  });

  it('shows the active violations per source in /api/v1/status', async () => {
    const s = await status();
    const line = (
      s['dataQuality'] as Record<
        string,
        { active: Array<Record<string, unknown>>; violations: Record<string, number> }
      >
    )['line']!;
    expect(line.active.map((a) => a['rule']).sort()).toEqual(['payload_fields', 'range', 'schema_drift']);
    // The shape changed twice: humidity and a text pressure, then pressure a number again and no temperature.
    expect(line.violations).toMatchObject({ range: 3, schema_drift: 2, payload_fields: 3 });
  });

  it('clears the range alert after three temperatures back in spec', async () => {
    const raised = await alerts.waitFor((m) => dq(m)['rule'] === 'range' && dq(m)['state'] === 'raised');
    for (let i = 0; i < 3; i++) await publish({ temperature: 70 + i, pressure: 1.2, humidity: 40 });
    const cleared = await alerts.waitFor((m) => dq(m)['rule'] === 'range' && dq(m)['state'] === 'cleared');
    expect(cleared.json).toMatchObject({
      severity: 'info',
      dataQuality: { state: 'cleared', clears: raised.json['id'], rule: 'range' },
    });
    await waitFor('the range alert to leave the status', async () => {
      const s = await status();
      const active = (s['dataQuality'] as Record<string, { active: Array<{ rule: string }> }>)['line']!
        .active;
      return active.some((a) => a.rule === 'range') ? undefined : true;
    });
    expect(metricValue(await metrics(), 'vigil_data_quality_active', { source: 'line', rule: 'range' })).toBe(
      0,
    );
  });
});

/** The stored readings (of temperature, or `tag`), oldest first, once there are `min` of them in all. */
async function storedReadings(
  min: number,
  tag = 'temperature',
): Promise<Array<{ value: number; flags: string | null; trace_id: string }>> {
  const all = await waitFor(`${min} stored readings`, () => {
    const db = new Database(dbFile, { readonly: true });
    try {
      const rows = db.prepare('SELECT tag, value, flags, trace_id FROM readings ORDER BY id').all() as Array<{
        tag: string;
        value: number;
        flags: string | null;
        trace_id: string;
      }>;
      return rows.length >= min ? rows : undefined;
    } finally {
      db.close();
    }
  });
  return all.filter((r) => r.tag === tag);
}

/** The alert as received, kept for docs/DATA-QUALITY.md (git-ignored folder). */
async function keepExample(name: string, json: Record<string, unknown>): Promise<void> {
  const out = path.join(ROOT, 'test-artifacts');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, name), JSON.stringify(json, null, 2) + '\n');
}
