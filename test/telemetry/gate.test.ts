import { describe, expect, it } from 'vitest';
import { ReadingGate } from '../../runtime/telemetry/gate.js';
import type { Reading } from '../../runtime/telemetry/reading.js';

const NOW = Date.parse('2026-11-26T12:00:00Z');
const gate = new ReadingGate(
  { temperature: { min: -40, max: 150 }, pressure: { min: 0 } },
  { maxClockSkewSeconds: 300, maxAgeSeconds: 3600 },
);

function reading(over: Partial<Reading>): Reading {
  return {
    source: 's',
    asset: 'pump-1',
    tag: 'temperature',
    value: 20,
    quality: 'good',
    sourceTime: NOW - 1000,
    receivedAt: NOW,
    ...over,
  };
}

describe('ReadingGate', () => {
  it('passes a plausible good reading and bad readings without a value', () => {
    expect(gate.check(reading({}), NOW)).toBeUndefined();
    expect(
      gate.check(reading({ value: null, quality: 'bad', status: 'BadSensorFailure' }), NOW),
    ).toBeUndefined();
    expect(gate.check(reading({ tag: 'other', value: 1e9 }), NOW)).toBeUndefined();
    expect(gate.check(reading({ sourceTime: null }), NOW)).toBeUndefined();
  });

  it.each([
    [{ value: Number.NaN }, 'not_finite', 'pump-1/temperature: value NaN is not finite'],
    [{ value: Number.POSITIVE_INFINITY }, 'not_finite', 'Infinity'],
    [{ value: '21.5' as unknown as number }, 'not_a_number', 'value "21.5" is not a number'],
    [{ value: null }, 'not_a_number', 'a good reading without a value'],
    [{ value: 151 }, 'out_of_range', 'outside the plausible range [-40, 150] set in limits.temperature'],
    [{ tag: 'pressure', value: -0.5 }, 'out_of_range', 'range [0, ∞]'],
    [{ sourceTime: NOW + 10 * 60_000 }, 'bad_timestamp', '600 s in the future'],
    [{ sourceTime: NOW - 2 * 3600_000 }, 'bad_timestamp', 'older than telemetry.maxAgeSeconds'],
    [{ serverTime: Number.NaN }, 'bad_timestamp', 'server timestamp NaN is not a time'],
    [{ quality: 'great' as Reading['quality'] }, 'malformed', "quality 'great'"],
    [{ tag: '' }, 'unknown_tag', 'without an asset or tag'],
    [{ receivedAt: undefined as unknown as number }, 'malformed', 'no receive time'],
    [{ status: 42 as unknown as string }, 'malformed', 'status 42 is not a name'],
    [
      { sourceTime: Math.round((NOW - 60_000) / 1000) },
      'bad_timestamp',
      'looks like seconds since the epoch',
    ],
  ])('refuses %o as %s', (over, reason, message) => {
    const refusal = gate.check(reading(over), NOW);
    expect(refusal?.reason).toBe(reason);
    expect(refusal?.message).toContain(message);
  });

  it('applies range limits to uncertain values too', () => {
    expect(gate.check(reading({ quality: 'uncertain', value: 999 }), NOW)?.reason).toBe('out_of_range');
  });
});
