import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttJsonSource } from '../../adapters/mqtt/json-source.js';
import type { DataQualityPolicy } from '../../runtime/quality/config.js';
import { until } from '../publish/subscriber.js';
import {
  jsonSource,
  startJsonSource,
  startPolicyPipelines,
  startQualityRig,
  type PolicyPipelines,
  type QualityRig,
} from './support.js';

// A message whose payload changed shape (schema drift) never reaches a model unmarked: a device
// publishes 12 cycles as JSON on Mosquitto to a real MqttJsonSource; in cycle 6 its firmware adds
// a field, and that message's values are also off (a = 86, every other value 50). The source
// flags every reading of that message `schema_drift`; the ingest stores them with the flag and
// hands them to three pipelines (skip, hold, flag) scoring with the mean-rul fixture (RUL = the
// mean of the 4-cycle window of a, b, c), whose scores and inputs show what each model saw.

const SOURCE = 'engines';
const ASSET = 'unit-1';
const DRIFT_CYCLE = 6;
const CYCLES = 12;
const T0 = Date.now() - 3_600_000;

let rig: QualityRig;
let policies: PolicyPipelines;
let source: MqttJsonSource;
let device: MqttClient;

beforeAll(async () => {
  rig = await startQualityRig({
    sources: (url) => ({
      [SOURCE]: jsonSource(
        {
          topic: 'engines/+/data',
          asset: '{1}',
          tags: { cycle: 'cycle', a: 'a', b: 'b', c: 'c' },
          timestampField: 'ts',
        },
        { expectations: { payload: {} } },
        url,
      ),
    }),
    onAccepted: (_source, readings) => policies.offer(readings),
  });
  policies = await startPolicyPipelines(rig, SOURCE);
  source = await startJsonSource(rig, SOURCE);
  device = await mqtt.connectAsync(rig.broker.url, { clientId: 'engine-unit-1' });
  for (let c = 1; c <= CYCLES; c++) {
    const drifted = c >= DRIFT_CYCLE; // firmware 2.0 from cycle 6 on: one more field
    const payload = {
      ts: T0 + c * 1000,
      cycle: c,
      a: c === DRIFT_CYCLE ? 86 : 50,
      b: 50,
      c: 50,
      ...(drifted ? { firmware: '2.0' } : {}),
    };
    await device.publishAsync(`engines/${ASSET}/data`, JSON.stringify(payload), { qos: 1 });
  }
  await until(() => rig.accepted.length >= CYCLES * 4, 10_000, 'every reading accepted');
  await policies.idle();
}, 60_000);

afterAll(async () => {
  await device?.endAsync();
  await source?.stop();
  await policies?.close();
  await rig?.close();
});

const results = (policy: DataQualityPolicy) => policies.results.get(policy)!;
const inputs = (policy: DataQualityPolicy) => policies.inputs.get(policy)!;
const drifted = (end: number) => end >= DRIFT_CYCLE && end < DRIFT_CYCLE + 4;

describe('a drifted message under each dataQuality.policy', () => {
  it('every reading of the drifted message carries schema_drift, stored and under the alert’s trace id', () => {
    const flagged = rig.accepted.filter((r) => r.flags !== undefined);
    expect(flagged.map((r) => r.tag).sort()).toEqual(['a', 'b', 'c', 'cycle']);
    expect(flagged.every((r) => r.flags!.join() === 'schema_drift')).toBe(true);
    const [alert] = rig.alerts.filter((a) => a.label === 'schema_drift');
    expect(alert!.dataQuality).toMatchObject({ state: 'raised', fields: { added: ['firmware'] } });
    expect(new Set(flagged.map((r) => r.traceId))).toEqual(new Set([alert!.dataQuality.traceId]));
    expect(rig.storedFlags('a').filter((f) => f !== null)).toEqual(['["schema_drift"]']);
    // The messages after it keep the new shape: not drift, not flagged.
    expect(rig.accepted.filter((r) => r.tag === 'cycle' && r.value! > DRIFT_CYCLE && r.flags)).toEqual([]);
  });

  it('skip: no window with the drifted message is scored; the model never sees it', async () => {
    const got = results('skip');
    expect(got.map((r) => r.details!.axisEnd)).toEqual([4, 5, 10, 11, 12]);
    expect(got.every((r) => r.score === 50)).toBe(true);
    expect(inputs('skip').every((t) => !t.includes(86))).toBe(true);
    expect(policies.pipelines.get('skip')!.snapshot().windowsSkipped).toEqual({ data_quality: 4 });
    expect(
      await rig.metric('vigil_windows_skipped_total', { pipeline: 'p-skip', reason: 'data_quality' }),
    ).toBe(4);
  });

  it('hold: the drifted message is dropped before the windower; each tag keeps its last good value', async () => {
    expect(policies.pipelines.get('hold')!.snapshot().readingsDropped).toEqual({ data_quality: 4 });
    expect(
      await rig.metric('vigil_window_readings_dropped_total', { pipeline: 'p-hold', reason: 'data_quality' }),
    ).toBe(4);
    // Cycle 6 is held from cycle 5 (holdSteps 1): every window is scored, none with its values.
    expect(results('hold').map((r) => r.details!.axisEnd)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(inputs('hold').every((t) => !t.includes(86))).toBe(true);
    expect(results('hold').every((r) => r.score === 50 && r.dataQuality === undefined)).toBe(true);
  });

  it('flag: the windows with the drifted message are scored and say why, per reading', () => {
    const got = results('flag');
    expect(got.map((r) => r.details!.axisEnd)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const r of got) {
      if (!drifted(r.details!.axisEnd)) {
        expect(r.score).toBe(50);
        expect(r.dataQuality).toBeUndefined();
        continue;
      }
      expect(r.score).toBeCloseTo((11 * 50 + 86) / 12, 3);
      const violations = r.dataQuality!.violations.map((v) => `${v.tag} ${v.rule}: ${v.message}`).sort();
      expect(violations).toEqual([
        'a schema_drift: unit-1/a = 86 came in a payload whose fields changed shape',
        'b schema_drift: unit-1/b = 50 came in a payload whose fields changed shape',
        'c schema_drift: unit-1/c = 50 came in a payload whose fields changed shape',
      ]);
    }
    expect(inputs('flag').filter((t) => t.includes(86))).toHaveLength(4);
  });
});
