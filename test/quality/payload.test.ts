import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PayloadQualityHook } from '../../runtime/quality/payload.js';
import { compareShapes, shapeOf } from '../../runtime/quality/payload.js';
import { jsonSource, startQualityRig, type QualityRig } from './support.js';

// The payload expectations of an MQTT JSON source with the payloads themselves: required fields
// (payload_fields) and schema drift (schema_drift) per subscription and asset, reported with
// the field names in the alert, the metric and the log. The broker path (a real MqttJsonSource
// on Mosquitto, through `vigil run`) is in e2e.test.ts.

const SOURCE = 'lab';
/** A second source that only checks required fields (schemaDrift: false), so that its missing fields are not drift too. */
const FIELDS = 'lab-fields';
const SUB = 'lab/+/telemetry';
let rig: QualityRig;
let hook: PayloadQualityHook;
let fieldsHook: PayloadQualityHook;

beforeAll(async () => {
  rig = await startQualityRig({
    sources: {
      [SOURCE]: jsonSource(
        { topic: SUB, asset: '{1}', tags: { temperature: 'temperature' } },
        { expectations: { payload: {}, alert: { raiseAfter: 2, clearAfterReadings: 2 } } },
      ),
      [FIELDS]: jsonSource(
        { topic: SUB, asset: '{1}', tags: { temperature: 'temperature' } },
        {
          expectations: {
            payload: { requiredFields: ['temperature', 'meta.serial'], schemaDrift: false },
            alert: { raiseAfter: 2, clearAfterReadings: 2 },
          },
        },
      ),
    },
  });
  hook = rig.quality.payloadHookFor(SOURCE)!;
  fieldsHook = rig.quality.payloadHookFor(FIELDS)!;
  expect(hook).toBeDefined();
  expect(fieldsHook).toBeDefined();
});

afterAll(async () => {
  await rig?.close();
});

/** The message's trace id when it broke a payload rule; the rules it broke in `broke`. */
let broke: string[] = [];
function send(asset: string, payload: unknown, to = hook): string | undefined {
  const found = to.checkPayload({
    subscription: SUB,
    topic: `lab/${asset}/telemetry`,
    asset,
    payload,
    receivedAt: Date.now(),
  });
  broke = found?.rules ?? [];
  return found?.traceId;
}

const metric = (name: string, labels: Record<string, string>) => rig.metric(name, labels);

describe('payload_fields', () => {
  it('reports a payload without a required field by name, and raises after raiseAfter', async () => {
    expect(send('a-1', { ts: 1, temperature: 20, meta: { serial: 'X1' } }, fieldsHook)).toBeUndefined();
    const trace = send('a-1', { ts: 2, temperature: 20, meta: {} }, fieldsHook);
    expect(trace).toMatch(/^[0-9a-f-]{36}$/);
    // What the source flags every reading of this message with.
    expect(broke).toEqual(['payload_fields']);
    expect(rig.alerts.filter((a) => a.label === 'payload_fields')).toHaveLength(0);
    send('a-1', { ts: 3, meta: {} }, fieldsHook);
    const [raised] = rig.alerts.filter((a) => a.label === 'payload_fields');
    expect(raised).toMatchObject({
      kind: 'data_quality',
      source: FIELDS,
      origin: 'lab/a-1/telemetry',
      asset: 'a-1',
      dataQuality: {
        state: 'raised',
        rule: 'payload_fields',
        asset: 'a-1',
        message:
          'payload on lab/a-1/telemetry (asset a-1) lacks the required fields temperature, meta.serial',
      },
    });
    expect(raised!.dataQuality.tag).toBeUndefined();
    expect(
      await metric('vigil_expectation_violations_total', { source: FIELDS, rule: 'payload_fields', tag: '' }),
    ).toBe(2);
    expect(rig.alerts.filter((a) => a.label === 'schema_drift')).toHaveLength(0);
  });

  it('clears once payloads have their fields again', () => {
    send('a-1', { ts: 4, temperature: 20, meta: { serial: 'X1' } }, fieldsHook);
    send('a-1', { ts: 5, temperature: 21, meta: { serial: 'X1' } }, fieldsHook);
    const states = rig.alerts.filter((a) => a.label === 'payload_fields').map((a) => a.dataQuality.state);
    expect(states).toEqual(['raised', 'cleared']);
  });
});

describe('schema_drift', () => {
  it('names the fields added, removed and of another type, at once, with the metric', async () => {
    const base = { ts: 1, temperature: 20.5, humidity: 40, meta: { serial: 'S7', fw: '1.2' } };
    expect(send('d-1', base)).toBeUndefined();
    expect(send('d-1', { ...base, ts: 2, temperature: 20.6 })).toBeUndefined();
    // Firmware 2.0: temperature as a string, humidity gone, a new pressure object.
    const trace = send('d-1', {
      ts: 3,
      temperature: '20.7',
      meta: { serial: 'S7', fw: '2.0' },
      pressure: { value: 1.01, unit: 'bar' },
    });
    expect(trace).toBeDefined();
    expect(broke).toEqual(['schema_drift']);
    const drift = rig.alerts.filter((a) => a.label === 'schema_drift');
    expect(drift).toHaveLength(1);
    expect(drift[0]).toMatchObject({
      severity: 'warning',
      origin: 'lab/d-1/telemetry',
      threshold: 1,
      dataQuality: {
        state: 'raised',
        rule: 'schema_drift',
        asset: 'd-1',
        fields: {
          added: ['pressure.unit', 'pressure.value'],
          removed: ['humidity'],
          changed: ['temperature'],
        },
        traceId: trace,
        message:
          'payload on lab/d-1/telemetry (asset d-1) changed shape: added pressure.unit, pressure.value; removed humidity; type changed temperature',
      },
    });
    expect(await metric('vigil_payload_schema_changes_total', { source: SOURCE })).toBe(1);
    const published = await rig.watcher.waitFor((m) => m.json['id'] === drift[0]!.id);
    expect(published.topic).toBe('vigil/gw-dq/alerts/data_quality');
    expect(published.json['dataQuality']).toMatchObject({ fields: { removed: ['humidity'] } });
  });

  it('takes the new shape as the baseline; a null field is not a type change; clears after good payloads', async () => {
    const next = {
      ts: 4,
      temperature: '20.8',
      meta: { serial: 'S7', fw: '2.0' },
      pressure: { value: 1.0, unit: 'bar' },
    };
    expect(send('d-1', next)).toBeUndefined();
    expect(send('d-1', { ...next, ts: 5, temperature: null })).toBeUndefined();
    const states = rig.alerts.filter((a) => a.label === 'schema_drift').map((a) => a.dataQuality.state);
    expect(states).toEqual(['raised', 'cleared']);
    expect(await metric('vigil_payload_schema_changes_total', { source: SOURCE })).toBe(1);
  });

  it('keeps one baseline per asset: machines of another kind on the same topic filter are not drift', () => {
    const before = rig.alerts.length;
    send('spindle-1', { ts: 1, rpm: 12000, torque: 3.1, temperature: 40, meta: { serial: 'Q' } });
    send('pump-1', { ts: 1, flow: 3, temperature: 40, meta: { serial: 'P' } });
    send('spindle-1', { ts: 2, rpm: 12010, torque: 3.2, temperature: 40, meta: { serial: 'Q' } });
    send('pump-1', { ts: 2, flow: 3.1, temperature: 40, meta: { serial: 'P' } });
    expect(rig.alerts.slice(before)).toEqual([]);
  });

  it('shapeOf and compareShapes: leaves by dotted path, arrays as leaves, key order irrelevant', () => {
    const a = shapeOf({ b: 1, a: { x: [1, 2], y: null, z: {} } });
    expect(Object.fromEntries(a)).toEqual({ b: 'number', 'a.x': 'array', 'a.y': 'null', 'a.z': 'object' });
    expect(compareShapes(a, shapeOf({ a: { z: {}, y: 3, x: [] }, b: 2 }))).toBeUndefined();
    expect(compareShapes(a, shapeOf({ a: { x: 'no', y: null, z: {} } }))).toEqual({
      added: [],
      removed: ['b'],
      changed: ['a.x'],
    });
  });
});
