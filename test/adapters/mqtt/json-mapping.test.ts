import { describe, expect, it } from 'vitest';
import { compileSubscription, getPath, mapJsonMessage } from '../../../adapters/mqtt/json-mapping.js';
import { topicMatches } from '../../../adapters/mqtt/connection.js';
import {
  MqttJsonSource,
  MqttJsonSubscription,
  filtersOverlap,
} from '../../../runtime/config/sources/mqtt.js';

const RECEIVED = 1_750_000_000_000;

function map(sub: Record<string, unknown>, topic: string, payload: unknown, maxPayloadBytes = 1024) {
  const compiled = compileSubscription(MqttJsonSubscription.parse(sub));
  const bytes = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
  return mapJsonMessage(compiled, {
    source: 'plant',
    topic,
    payload: bytes,
    receivedAt: RECEIVED,
    maxPayloadBytes,
  });
}

describe('JSON payload mapping', () => {
  it('maps nested paths and array indexes to tags, with the asset from a topic level', () => {
    const out = map(
      {
        topic: 'plant/+/telemetry',
        asset: 'line3-{1}',
        tags: { temp: 'data.temp', rpm: 'values.1', on: 'running' },
      },
      'plant/pump-1/telemetry',
      { data: { temp: 71.5 }, values: [1, 1450], running: true },
    );
    expect(out.rejections).toEqual([]);
    expect(out.readings).toEqual([
      {
        source: 'plant',
        asset: 'line3-pump-1',
        tag: 'temp',
        value: 71.5,
        quality: 'good',
        sourceTime: RECEIVED,
        receivedAt: RECEIVED,
      },
      {
        source: 'plant',
        asset: 'line3-pump-1',
        tag: 'rpm',
        value: 1450,
        quality: 'good',
        sourceTime: RECEIVED,
        receivedAt: RECEIVED,
      },
      {
        source: 'plant',
        asset: 'line3-pump-1',
        tag: 'on',
        value: 1,
        quality: 'good',
        sourceTime: RECEIVED,
        receivedAt: RECEIVED,
      },
    ]);
  });

  it('reads timestamps in ms, s and ISO 8601 and passes them through unchanged', () => {
    const t = Date.UTC(2025, 4, 1, 12, 0, 0, 250);
    const ms = map({ topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'ts' }, 'a', { ts: t, v: 1 });
    const s = map(
      { topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'ts', timestampFormat: 's' },
      'a',
      {
        ts: t / 1000,
        v: 1,
      },
    );
    const iso = map(
      { topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'meta.time', timestampFormat: 'iso' },
      'a',
      {
        meta: { time: '2025-05-01T14:00:00.250+02:00' },
        v: 1,
      },
    );
    // A timestamp far in the past is the runtime's to judge, not the mapping's.
    const old = map({ topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'ts' }, 'a', {
      ts: 1000,
      v: 1,
    });
    expect([ms, s, iso, old].map((o) => o.readings[0]?.sourceTime)).toEqual([t, t, t, 1000]);
  });

  it('refuses a message whose timestamp is missing or in the wrong format', () => {
    const missing = map({ topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'ts' }, 'a', { v: 1 });
    const text = map({ topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'ts' }, 'a', {
      ts: '1714560000',
      v: 1,
    });
    const noZone = map(
      { topic: 'a', asset: 'x', tags: { v: 'v' }, timestampField: 'ts', timestampFormat: 'iso' },
      'a',
      {
        ts: '2025-05-01T12:00:00',
        v: 1,
      },
    );
    for (const o of [missing, text, noZone]) {
      expect(o.readings).toEqual([]);
      expect(o.rejections).toHaveLength(1);
      expect(o.rejections[0]!.reason).toBe('bad_timestamp');
      expect(o.rejections[0]!.message).toContain("'ts'");
    }
  });

  it('refuses bad fields one by one, naming them, and keeps the good ones of the same message', () => {
    const sub = {
      topic: 'a/+',
      asset: '{1}',
      tags: { t1: 't1', t2: 't2', t3: 't3', t4: 't4', t5: 't5', ok: 'ok' },
    };
    const out = map(
      sub,
      'a/m1',
      '{"t1": "NaN", "t2": 1e999, "t3": "12.5", "t4": {"v": 1}, "t5": "-Infinity", "ok": 3}',
    );
    expect(out.readings.map((r) => [r.tag, r.value])).toEqual([['ok', 3]]);
    expect(out.rejections.map((r) => r.reason)).toEqual([
      'not_finite',
      'not_finite',
      'not_a_number',
      'not_a_number',
      'not_finite',
    ]);
    expect(out.rejections[0]!.message).toContain("field 't1'");
    expect(out.rejections[0]!.message).toContain('"NaN"');
    expect(out.rejections[1]!.message).toContain("field 't2'");
    expect(out.rejections[2]!.message).toContain("field 't3'");
  });

  it('turns null into a bad reading and skips absent fields', () => {
    const out = map({ topic: 'a', asset: 'x', tags: { v: 'v', w: 'w' } }, 'a', { v: null });
    expect(out.rejections).toEqual([]);
    expect(out.readings).toEqual([
      expect.objectContaining({ tag: 'v', value: null, quality: 'bad', status: 'NoValue' }),
    ]);
    const none = map({ topic: 'a', asset: 'x', tags: { v: 'v' } }, 'a', { other: 1 });
    expect(none.rejections).toEqual([expect.objectContaining({ reason: 'unknown_tag' })]);
  });

  it('takes every top-level number with allNumericFields, leaving text, timestamp and asset aside', () => {
    const out = map({ topic: 'a', assetField: 'device', allNumericFields: true, timestampField: 'ts' }, 'a', {
      ts: 5000,
      device: 'press-2',
      temp: 40,
      state: 'running',
      level: null,
      pressure: '7.1',
      nested: { x: 1 },
    });
    expect(out.readings.map((r) => [r.asset, r.tag, r.value, r.sourceTime])).toEqual([
      ['press-2', 'temp', 40, 5000],
      ['press-2', 'level', null, 5000],
    ]);
    expect(out.rejections).toEqual([expect.objectContaining({ reason: 'not_a_number' })]);
    expect(out.rejections[0]!.message).toContain("field 'pressure'");
  });

  it('refuses payloads that are not JSON, empty, too large, or without an asset', () => {
    expect(
      map({ topic: 'a', asset: 'x', tags: { v: 'v' } }, 'a', Buffer.from('temp=5')).rejections[0]!.reason,
    ).toBe('malformed');
    expect(
      map({ topic: 'a', asset: 'x', tags: { v: 'v' } }, 'a', Buffer.alloc(0)).rejections[0]!.reason,
    ).toBe('empty');
    const big = map({ topic: 'a', asset: 'x', tags: { v: 'v' } }, 'a', { v: 1, pad: 'x'.repeat(2000) });
    expect(big.rejections[0]!.reason).toBe('too_large');
    expect(big.rejections[0]!.message).toContain('maxPayloadBytes');
    const noAsset = map({ topic: 'a', assetField: 'id', tags: { v: 'v' } }, 'a', { v: 1 });
    expect(noAsset.rejections[0]).toEqual(expect.objectContaining({ reason: 'malformed' }));
    expect(noAsset.rejections[0]!.message).toContain("'id'");
  });

  it('walks paths over own keys only', () => {
    expect(getPath({ a: [{ b: 2 }] }, ['a', '0', 'b'])).toBe(2);
    expect(getPath({ a: 1 }, ['constructor'])).toBeUndefined();
    expect(getPath([1, 2], ['x'])).toBeUndefined();
  });
});

describe('topic filters', () => {
  it('match topics as a broker does', () => {
    expect(topicMatches('plant/+/telemetry', 'plant/p1/telemetry')).toBe(true);
    expect(topicMatches('plant/+/telemetry', 'plant/p1/x/telemetry')).toBe(false);
    expect(topicMatches('plant/#', 'plant')).toBe(true);
    expect(topicMatches('plant/#', 'plant/a/b')).toBe(true);
    expect(topicMatches('#', '$SYS/broker')).toBe(false);
    expect(topicMatches('a/b', 'a/b/c')).toBe(false);
  });

  it('overlapping subscriptions are refused by the schema', () => {
    expect(filtersOverlap('plant/+/telemetry', 'plant/pump-1/telemetry')).toBe(true);
    expect(filtersOverlap('plant/#', 'plant')).toBe(true);
    expect(filtersOverlap('plant/+/telemetry', 'plant/+/status')).toBe(false);
    expect(filtersOverlap('a/b', 'a/b/c')).toBe(false);
    const result = MqttJsonSource.safeParse({
      type: 'mqtt-json',
      url: 'mqtt://127.0.0.1:1883',
      subscriptions: [
        { topic: 'plant/+/telemetry', asset: '{1}', allNumericFields: true },
        { topic: 'plant/pump-1/#', asset: 'pump-1', allNumericFields: true },
      ],
    });
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error?.issues)).toContain('overlaps subscription 0');
  });

  it('the schema checks asset templates, and needs an asset and at least one tag', () => {
    const sub = (s: Record<string, unknown>) => MqttJsonSubscription.safeParse(s).success;
    expect(sub({ topic: 'plant/+/telemetry', asset: '{1}', allNumericFields: true })).toBe(true);
    expect(sub({ topic: 'plant/+/telemetry', asset: '{3}', allNumericFields: true })).toBe(false);
    expect(sub({ topic: 'plant/+/telemetry', allNumericFields: true })).toBe(false);
    expect(sub({ topic: 'plant/+/telemetry', asset: 'x', assetField: 'id', allNumericFields: true })).toBe(
      false,
    );
    expect(sub({ topic: 'plant/+/telemetry', asset: 'x' })).toBe(false);
    expect(sub({ topic: 'plant/te+st', asset: 'x', allNumericFields: true })).toBe(false);
    expect(sub({ topic: 'plant/#/x', asset: 'x', allNumericFields: true })).toBe(false);
  });
});
