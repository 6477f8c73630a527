import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataQualityAlert } from '../../runtime/pipeline/result.js';
import { until } from '../publish/subscriber.js';
import { silentLogger } from '../../runtime/log.js';
import { DataQualityAlertConfig } from '../../runtime/quality/config.js';
import { DataQualityMonitor } from '../../runtime/quality/monitor.js';
import { DEVICE, jsonSource, reading, startQualityRig, type QualityRig } from './support.js';

// Each per-reading rule with the bad input itself, through the real ingest path: ReadingGate ->
// TelemetryIngest (expectations after the gate, before queueing) -> SQLite store with flags ->
// DataQuality monitor -> data_quality alerts stored and published through Mosquitto.

const SOURCE = 'plant';
let rig: QualityRig;

beforeAll(async () => {
  rig = await startQualityRig({
    sources: {
      [SOURCE]: jsonSource(
        {
          topic: 'plant/+/telemetry',
          asset: '{1}',
          tags: {
            temperature: 'temperature',
            pressure: 'pressure',
            mode: 'mode',
            code: 'code',
            flow: 'flow',
          },
        },
        {
          limits: { temperature: { min: -50, max: 500 } },
          expectations: {
            tags: {
              temperature: { range: { min: 0, max: 120 }, maxRateOfChange: 5 },
              pressure: { notNull: true },
              mode: { allowedValues: [0, 1, 2] },
              code: { allowedValues: Array.from({ length: 25 }, (_, i) => i * 10) },
              flow: { staleAfterSeconds: 5 },
            },
            alert: { raiseAfter: 3, windowSeconds: 60, clearAfterReadings: 2, clearAfterSeconds: 30 },
          },
        },
      ),
    },
  });
});

afterAll(async () => {
  await rig?.close();
});

const metric = (name: string, labels: Record<string, string>) => rig.metric(name, labels);

/** Accepts one reading now and returns it as the ingest handed it on (with flags when it broke some). */
function one(asset: string, tag: string, value: number | null, t = Date.now()) {
  const before = rig.accepted.length;
  rig.accept(SOURCE, [reading(SOURCE, asset, tag, value, t)]);
  expect(rig.accepted.length).toBe(before + 1);
  return rig.accepted.at(-1)!;
}

const alertsOf = (rule: string) => rig.alerts.filter((a) => a.label === rule);

describe('per-reading rules', () => {
  it('range: a value out of spec is stored with its flag (limits would refuse it; expectations keep it)', async () => {
    const t = Date.now() - 600_000;
    expect(one('r-1', 'temperature', 50, t).flags).toBeUndefined();
    const bad = one('r-1', 'temperature', 130, t + 100_000); // 0.8/s: only the range is broken
    expect(bad.flags).toEqual(['range']);
    expect(bad.value).toBe(130);
    // Past limits (max 500) it is refused by the gate and never stored at all.
    const before = rig.accepted.length;
    rig.accept(SOURCE, [reading(SOURCE, 'r-1', 'temperature', 900, t + 200_000)]);
    expect(rig.accepted.length).toBe(before);
    expect(rig.storedFlags('temperature')).toEqual([null, '["range"]']);
    expect(
      await metric('vigil_expectation_violations_total', {
        source: SOURCE,
        rule: 'range',
        tag: 'temperature',
      }),
    ).toBe(1);
    expect(await metric('vigil_input_errors_total', { source: SOURCE, reason: 'out_of_range' })).toBe(1);
  });

  it('not_null: a reading without a value breaks notNull', async () => {
    const r = one('n-1', 'pressure', null);
    expect(r.flags).toEqual(['not_null']);
    expect(r.quality).toBe('bad');
    expect(one('n-1', 'pressure', 3.2).flags).toBeUndefined();
    expect(
      await metric('vigil_expectation_violations_total', {
        source: SOURCE,
        rule: 'not_null',
        tag: 'pressure',
      }),
    ).toBe(1);
  });

  it('allowed_values: only the listed values are in spec', () => {
    expect(one('m-1', 'mode', 1).flags).toBeUndefined();
    expect(one('m-1', 'mode', 3).flags).toEqual(['allowed_values']);
    expect(one('m-1', 'mode', 1.5).flags).toEqual(['allowed_values']);
    expect(one('m-1', 'mode', 2).flags).toBeUndefined();
  });

  it('allowed_values: a long list is cut short in the message, saying how many are left out', () => {
    const r = one('m-2', 'code', 7);
    expect(r.flags).toEqual(['allowed_values']);
    expect(rig.quality.explain(r, 'allowed_values')).toBe(
      'm-2/code = 7 is not one of the allowed values [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, … 15 more]',
    );
    expect(rig.quality.explain(one('m-1', 'mode', 4), 'allowed_values')).toBe(
      'm-1/mode = 4 is not one of the allowed values [0,1,2]',
    );
  });

  it('rate_of_change: per asset, by source time, in units per second', () => {
    const t = Date.now() - 300_000;
    expect(one('c-1', 'temperature', 50, t).flags).toBeUndefined();
    expect(one('c-1', 'temperature', 54, t + 1000).flags).toBeUndefined(); // 4/s
    expect(one('c-1', 'temperature', 64, t + 2000).flags).toEqual(['rate_of_change']); // 10/s
    // Another asset has its own history: its first reading has nothing to compare with.
    expect(one('c-2', 'temperature', 90, t + 2000).flags).toBeUndefined();
    // Both rules at once: out of range and too fast.
    expect(one('c-1', 'temperature', 200, t + 3000).flags).toEqual(['range', 'rate_of_change']);
    // A late reading (older source time) is not compared and does not move the reference.
    expect(one('c-1', 'temperature', 10, t + 500).flags).toBeUndefined();
    const violation = alertsOf('rate_of_change')[0];
    // Two violations on c-1 so far: under raiseAfter 3, nothing raised yet.
    expect(violation).toBeUndefined();
  });

  it('keeps the flags the source gave (its message broke a payload rule) beside the reading’s own', () => {
    const t = Date.now() - 200_000;
    const given = ['schema_drift' as const];
    rig.accept(SOURCE, [
      reading(SOURCE, 'f-1', 'temperature', 130, t, { flags: given }),
      reading(SOURCE, 'f-1', 'vibration', 3, t, { flags: given }),
      reading(SOURCE, 'f-1', 'mode', 1, t, { flags: given }),
    ]);
    expect(rig.accepted.slice(-3).map((r) => r.flags)).toEqual([
      ['schema_drift', 'range'],
      ['schema_drift'],
      ['schema_drift'],
    ]);
    // The source's array is shared by the readings of one message: never extended in place.
    expect(given).toEqual(['schema_drift']);
    expect(rig.storedFlags('vibration')).toEqual(['["schema_drift"]']);
  });

  it('a tag without expectations, and a reading of another source, pass untouched', () => {
    expect(one('x-1', 'vibration', 1e6).flags).toBeUndefined();
    const before = rig.accepted.length;
    rig.accept('other', [reading('other', 'x-1', 'temperature', 1000, Date.now())]);
    expect(rig.accepted.length).toBe(before + 1);
    expect(rig.accepted.at(-1)!.flags).toBeUndefined();
  });
});

describe('data_quality alerts with hysteresis', () => {
  it('raises after raiseAfter violations within the window, once, stored and published', async () => {
    const t = Date.now() - 60_000;
    one('h-1', 'temperature', 150, t);
    one('h-1', 'temperature', 151, t + 10_000);
    expect(alertsOf('range').filter((a) => a.asset === 'h-1')).toHaveLength(0);
    const third = one('h-1', 'temperature', 152, t + 20_000);
    one('h-1', 'temperature', 153, t + 30_000);
    const raised = alertsOf('range').filter((a) => a.asset === 'h-1');
    expect(raised).toHaveLength(1);
    expect(raised[0]).toMatchObject({
      device: DEVICE,
      pipeline: SOURCE,
      source: SOURCE,
      sampleId: third.traceId,
      origin: 'h-1/temperature',
      kind: 'data_quality',
      severity: 'warning',
      label: 'range',
      score: 3,
      threshold: 3,
      model: { name: 'none', version: 'none', backend: 'none', provider: 'none' },
      asset: 'h-1',
      dataQuality: {
        state: 'raised',
        rule: 'range',
        asset: 'h-1',
        tag: 'temperature',
        message: 'h-1/temperature = 152 is outside the expected range [0, 120]',
        traceId: third.traceId,
      },
    });
    expect(third.traceId).toMatch(/^[0-9a-f-]{36}$/);
    const msg = await rig.watcher.waitFor((m) => m.json['id'] === raised[0]!.id);
    expect(msg.topic).toBe(`vigil/${DEVICE}/alerts/data_quality`);
    expect(msg.json).toMatchObject({ kind: 'data_quality', dataQuality: { state: 'raised', rule: 'range' } });
    expect(rig.store.recentAlerts(100).map((a) => a.id)).toContain(raised[0]!.id);
    expect(await metric('vigil_data_quality_active', { source: SOURCE, rule: 'range' })).toBe(1);
    expect(rig.quality.status()[SOURCE]!.active).toContainEqual(
      expect.objectContaining({ rule: 'range', asset: 'h-1', tag: 'temperature', alertId: raised[0]!.id }),
    );
  });

  it('clears after clearAfterReadings good readings in a row, naming the alert it clears', async () => {
    const raised = alertsOf('range').find((a) => a.asset === 'h-1')!;
    const t = Date.now() - 15_000;
    one('h-1', 'temperature', 100, t); // from 153 about 15 s before: 3.5/s, in spec
    one('h-1', 'temperature', 140, t + 10_000); // broken again: the streak starts over
    one('h-1', 'temperature', 101, t + 19_000);
    expect(alertsOf('range').filter((a) => a.asset === 'h-1')).toHaveLength(1);
    one('h-1', 'temperature', 100, t + 19_500);
    const cleared = alertsOf('range').filter((a) => a.asset === 'h-1')[1]!;
    expect(cleared).toMatchObject({
      kind: 'data_quality',
      severity: 'info',
      label: 'range',
      dataQuality: { state: 'cleared', clears: raised.id, rule: 'range', asset: 'h-1', tag: 'temperature' },
    });
    await rig.watcher.waitFor((m) => m.json['id'] === cleared.id);
    expect(await metric('vigil_data_quality_active', { source: SOURCE, rule: 'range' })).toBe(0);
    expect(
      await metric('vigil_data_quality_alerts_total', { source: SOURCE, rule: 'range', state: 'cleared' }),
    ).toBe(1);
  });

  it('good readings between violations do not forget them: one violation in every 11 readings within the window raises', () => {
    // Source time 100 s apart (a slow change: only the range is broken); all within the 60 s
    // window of wall-clock time, in which the monitor counts. 3 violations, 10 good readings
    // between each: more than clearAfterReadings (2), which only clears a raised alert.
    const t = Date.now() - 4_000_000;
    for (let i = 0; i < 33; i++) {
      const bad = i % 11 === 10;
      expect(one('sp-1', 'temperature', bad ? 130 : 50, t + i * 100_000).flags).toEqual(
        bad ? ['range'] : undefined,
      );
      const raised = alertsOf('range').filter((a) => a.asset === 'sp-1');
      expect(raised).toHaveLength(i < 32 ? 0 : 1);
    }
    expect(alertsOf('range').find((a) => a.asset === 'sp-1')).toMatchObject({
      score: 3,
      dataQuality: { state: 'raised', rule: 'range', tag: 'temperature' },
    });
    // A good reading still clears it as before: clearAfterReadings (2) in a row.
    one('sp-1', 'temperature', 50, t + 33 * 100_000);
    one('sp-1', 'temperature', 50, t + 34 * 100_000);
    expect(
      alertsOf('range')
        .filter((a) => a.asset === 'sp-1')
        .map((a) => a.dataQuality.state),
    ).toEqual(['raised', 'cleared']);
  });

  it('violations spread wider than windowSeconds never raise; a raised alert clears after clearAfterSeconds without one', () => {
    const { monitor } = rig.quality;
    const s = monitor.seriesOf(SOURCE, 'w-1', 'temperature');
    const t = Date.now();
    const v = {
      rule: 'range' as const,
      message: 'w-1/temperature = 130 is outside the expected range [0, 120]',
    };
    monitor.violation(s, v, t);
    monitor.violation(s, v, t + 31_000);
    monitor.violation(s, v, t + 62_000); // the first is out of the 60 s window: 2 within it
    monitor.violation(s, v, t + 93_000);
    expect(rig.alerts.filter((a) => a.asset === 'w-1')).toHaveLength(0);
    monitor.violation(s, v, t + 100_000);
    monitor.violation(s, v, t + 110_000); // 3 within 60 s
    expect(rig.alerts.filter((a) => a.asset === 'w-1').map((a) => a.dataQuality.state)).toEqual(['raised']);
    rig.quality.tick(t + 110_000 + 29_000);
    expect(rig.alerts.filter((a) => a.asset === 'w-1')).toHaveLength(1);
    rig.quality.tick(t + 110_000 + 30_000);
    const cleared = rig.alerts.filter((a) => a.asset === 'w-1')[1]!;
    expect(cleared.dataQuality).toMatchObject({ state: 'cleared', message: 'no range violation for 30 s' });
    // Nothing pending is kept for it any more: memory stays bounded.
    expect(s.rules.size).toBe(0);
  });

  it('stale: an asset whose tag goes silent raises at once, and its next reading clears it', async () => {
    const first = one('s-1', 'flow', 12);
    const now = Date.now();
    rig.quality.tick(now + 4_000);
    expect(alertsOf('stale')).toHaveLength(0);
    rig.quality.tick(now + 6_000);
    rig.quality.tick(now + 7_000); // still stale: still one alert, counted once
    const stale = alertsOf('stale');
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({
      label: 'stale',
      origin: 's-1/flow',
      threshold: 1,
      dataQuality: { state: 'raised', rule: 'stale', asset: 's-1', tag: 'flow', traceId: first.traceId },
    });
    expect(stale[0]!.dataQuality.message).toMatch(
      /^s-1\/flow has sent no reading for \d+ s \(staleAfterSeconds 5\)$/,
    );
    expect(
      await metric('vigil_expectation_violations_total', { source: SOURCE, rule: 'stale', tag: 'flow' }),
    ).toBe(1);
    // Ticks while still silent keep it raised (clearAfterSeconds is 30): no clearing by time.
    rig.quality.tick(now + 40_000);
    expect(alertsOf('stale')).toHaveLength(1);
    one('s-1', 'flow', 13);
    const cleared = alertsOf('stale')[1]!;
    expect(cleared.dataQuality).toMatchObject({
      state: 'cleared',
      clears: stale[0]!.id,
      message: 's-1/flow reports again',
    });
    await until(
      () => rig.watcher.received.some((m) => m.json['id'] === cleared.id),
      10_000,
      'the cleared stale alert',
    );
  });

  it('shows per source the active violations and the counts in status', () => {
    const status = rig.quality.status()[SOURCE]!;
    expect(status.violations).toMatchObject({
      range: expect.any(Number),
      not_null: 1,
      allowed_values: 4,
      stale: 1,
    });
    // Every alert raised above has been cleared again.
    expect(status.active.filter((a) => a.asset === 'h-1' || a.asset === 's-1')).toEqual([]);
  });

  it('each stored and published alert carries the contract fields', () => {
    for (const a of rig.alerts as DataQualityAlert[]) {
      expect(Object.keys(a)).toEqual(
        expect.arrayContaining([
          'id',
          'timestamp',
          'device',
          'pipeline',
          'source',
          'sampleId',
          'origin',
          'kind',
          'severity',
          'label',
          'score',
          'threshold',
          'model',
          'latencyMs',
          'dataQuality',
        ]),
      );
    }
  });
});

describe('bounded series', () => {
  it('forgets the oldest series with nothing raised when full; refuses new ones while every series is raised', () => {
    const source = 'capped';
    const alerts: string[] = [];
    const monitor = new DataQualityMonitor({
      deviceId: DEVICE,
      sink: rig.store,
      publisher: rig.publisher,
      metrics: rig.metrics,
      log: silentLogger(),
      alertConfig: () => DataQualityAlertConfig.parse({ raiseAfter: 2, clearAfterReadings: 1 }),
      onAlert: (a) => alerts.push(`${a.asset} ${a.dataQuality.state}`),
      maxSeries: 3,
    });
    const s = (asset: string) => monitor.seriesOf(source, asset, 'temperature');
    const v = { rule: 'range' as const, message: 'out of range' };
    const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(s);
    const t = Date.now();
    for (const x of [a!, b!]) {
      monitor.violation(x, v, t);
      monitor.violation(x, v, t + 1);
    }
    monitor.violation(c!, v, t + 2); // pending
    expect(monitor.trackedSeries).toBe(3);
    // Full: d takes the place of c, the only one with nothing raised.
    monitor.violation(d!, v, t + 3);
    expect([c!.tracked, d!.tracked, c!.rules.size]).toEqual([false, true, 0]);
    monitor.violation(d!, v, t + 4);
    expect(alerts).toEqual(['a raised', 'b raised', 'd raised']);
    // Every tracked series is raised: e is counted, not tracked, not alerted on.
    monitor.violation(e!, v, t + 5);
    monitor.violation(e!, v, t + 6);
    expect([e!.tracked, monitor.trackedSeries]).toEqual([false, 3]);
    expect(monitor.status()[source]!.violations).toEqual({ range: 9 });
    expect(alerts).toHaveLength(3);
    // Once a clears, it leaves a place: e is tracked again, and raises.
    monitor.passed(a!, t + 7);
    expect(monitor.trackedSeries).toBe(2);
    monitor.violation(e!, v, t + 8);
    monitor.violation(e!, v, t + 9);
    expect(alerts).toEqual(['a raised', 'b raised', 'd raised', 'a cleared', 'e raised']);
    expect(monitor.trackedSeries).toBe(3);
  });
});
