import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { ReadingGate } from '../../runtime/telemetry/gate.js';
import { TelemetryIngest } from '../../runtime/telemetry/ingest.js';
import type { Reading } from '../../runtime/telemetry/reading.js';

// The hook through which telemetry pipelines get their readings: what the gate accepts, of every
// quality, after it was queued for the store; what the gate refuses never reaches a model.

const gate = new ReadingGate({ t: { max: 100 } }, { maxClockSkewSeconds: 60, maxAgeSeconds: 3600 });

function r(value: number | null, over: Partial<Reading> = {}): Reading {
  const now = Date.now();
  return {
    source: 'adapter-name',
    asset: 'a',
    tag: 't',
    value,
    quality: 'good',
    sourceTime: now,
    receivedAt: now,
    ...over,
  };
}

let ingest: TelemetryIngest | undefined;
afterEach(() => ingest?.close());

describe('TelemetryIngest onAccepted', () => {
  it('hands over the accepted readings of each batch, in order, with the configured source name', () => {
    const stored: Reading[] = [];
    const handed: Array<[string, Reading[]]> = [];
    ingest = new TelemetryIngest({
      sink: { saveReadings: (b) => stored.push(...b) },
      metrics: new Metrics({ processMetrics: false }),
      log: silentLogger(),
      batchSize: 1000,
      flushIntervalMs: 10_000,
      onAccepted: (source, readings) => handed.push([source, [...readings]]),
    });
    ingest.accept(
      'plant',
      [
        r(1),
        r(500), // out of range: refused
        r(null, { quality: 'bad', status: 'BadSensorFailure' }),
        r(Number.NaN), // not finite: refused
        r(2, { quality: 'uncertain' }),
      ],
      gate,
      silentLogger(),
    );
    ingest.accept('plant', [r(1000)], gate, silentLogger()); // nothing accepted: no call
    expect(handed).toHaveLength(1);
    expect(handed[0]![0]).toBe('plant');
    expect(handed[0]![1].map((x) => [x.source, x.value, x.quality])).toEqual([
      ['plant', 1, 'good'],
      ['plant', null, 'bad'],
      ['plant', 2, 'uncertain'],
    ]);
    // Storage is as without the hook: the same three readings.
    ingest.flush();
    expect(stored.map((x) => x.value)).toEqual([1, null, 2]);
  });

  it('keeps storing when a pipeline throws', () => {
    const stored: Reading[] = [];
    ingest = new TelemetryIngest({
      sink: { saveReadings: (b) => stored.push(...b) },
      metrics: new Metrics({ processMetrics: false }),
      log: silentLogger(),
      batchSize: 1,
      flushIntervalMs: 10_000,
      onAccepted: () => {
        throw new Error('bug');
      },
    });
    expect(() => ingest!.accept('plant', [r(1), r(2)], gate, silentLogger())).not.toThrow();
    expect(stored.map((x) => x.value)).toEqual([1, 2]);
  });
});
