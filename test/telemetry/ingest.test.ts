import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { ReadingGate } from '../../runtime/telemetry/gate.js';
import { TelemetryIngest, type ReadingSink } from '../../runtime/telemetry/ingest.js';
import type { Reading } from '../../runtime/telemetry/reading.js';

const gate = new ReadingGate({ t: { max: 100 } }, { maxClockSkewSeconds: 60, maxAgeSeconds: 3600 });
const log = silentLogger();

function r(value: number | null, over: Partial<Reading> = {}): Reading {
  const now = Date.now();
  return {
    source: 'x',
    asset: 'a',
    tag: 't',
    value,
    quality: 'good',
    sourceTime: now,
    receivedAt: now,
    ...over,
  };
}

class FlakySink implements ReadingSink {
  readonly written: Reading[][] = [];
  failures = 0;
  calls = 0;
  /** Readings with this value are refused for their content, as SQLite refuses a value it cannot bind. */
  poison: number | undefined;
  saveReadings(batch: readonly Reading[]): void {
    this.calls += 1;
    if (this.failures > 0) {
      this.failures -= 1;
      throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
    }
    if (batch.some((r) => r.value === this.poison))
      throw new Error('store refused', { cause: new TypeError('SQLite3 can only bind numbers, strings...') });
    this.written.push([...batch]);
  }
}

let ingest: TelemetryIngest | undefined;
afterEach(() => ingest?.close());

async function metric(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe('TelemetryIngest', () => {
  it('stores accepted readings in batches, stamped with the source name, and counts the refused', async () => {
    const sink = new FlakySink();
    const metrics = new Metrics({ processMetrics: false });
    ingest = new TelemetryIngest({ sink, metrics, log, batchSize: 3, flushIntervalMs: 10_000 });
    ingest.accept('line-1', [r(1), r(2), r(Number.NaN), r(500), r(3)], gate, log);
    // Three good ones fill one batch and are written at once.
    expect(sink.written).toHaveLength(1);
    expect(sink.written[0]!.map((x) => [x.source, x.value])).toEqual([
      ['line-1', 1],
      ['line-1', 2],
      ['line-1', 3],
    ]);
    ingest.accept('line-1', [r(null, { quality: 'bad', status: 'BadSensorFailure' })], gate, log);
    expect(ingest.pendingCount).toBe(1);
    ingest.flush();
    expect(sink.written[1]![0]!.quality).toBe('bad');
    const stats = ingest.statsFor('line-1');
    expect(stats.readings).toEqual({ good: 3, uncertain: 0, bad: 1 });
    expect(stats.rejected).toEqual({ not_finite: 1, out_of_range: 1 });
    expect(
      await metric(metrics, 'vigil_input_errors_total', { source: 'line-1', reason: 'out_of_range' }),
    ).toBe(1);
    expect(await metric(metrics, 'vigil_readings_total', { source: 'line-1', quality: 'good' })).toBe(3);
    expect(await metric(metrics, 'vigil_readings_stored_total')).toBe(4);
  });

  it('keeps a batch the store refused and writes it on a later flush, losing nothing', async () => {
    const sink = new FlakySink();
    sink.failures = 2;
    const metrics = new Metrics({ processMetrics: false });
    ingest = new TelemetryIngest({ sink, metrics, log, batchSize: 100, flushIntervalMs: 10_000 });
    ingest.accept('s', [r(1), r(2)], gate, log);
    ingest.flush();
    ingest.flush();
    expect(sink.written).toHaveLength(0);
    expect(ingest.pendingCount).toBe(2);
    ingest.accept('s', [r(3)], gate, log);
    ingest.flush();
    expect(sink.written.flat().map((x) => x.value)).toEqual([1, 2, 3]);
    expect(await metric(metrics, 'vigil_readings_store_errors_total')).toBe(2);
  });

  it('flushes on its timer when batches stay small', async () => {
    const sink = new FlakySink();
    ingest = new TelemetryIngest({
      sink,
      metrics: new Metrics({ processMetrics: false }),
      log,
      batchSize: 1000,
      flushIntervalMs: 20,
    });
    ingest.accept('s', [r(7)], gate, log);
    expect(sink.written).toHaveLength(0);
    await new Promise((res) => setTimeout(res, 200));
    expect(sink.written.flat().map((x) => x.value)).toEqual([7]);
  });

  it('drops the oldest and counts them only when the store refuses writes past the memory cap', async () => {
    const sink = new FlakySink();
    sink.failures = 1_000;
    const metrics = new Metrics({ processMetrics: false });
    ingest = new TelemetryIngest({
      sink,
      metrics,
      log,
      batchSize: 2,
      flushIntervalMs: 10_000,
      maxPending: 3,
    });
    ingest.accept('s', [r(1), r(2), r(3), r(4), r(5)], gate, log);
    expect(ingest.pendingCount).toBe(3);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'store_backlog' })).toBe(2);
    sink.failures = 0;
    ingest.flush();
    expect(sink.written.flat().map((x) => x.value)).toEqual([3, 4, 5]);
  });

  it('does not hammer a failing store with every message, and retries it on a timer', async () => {
    const sink = new FlakySink();
    sink.failures = 1;
    const metrics = new Metrics({ processMetrics: false });
    ingest = new TelemetryIngest({ sink, metrics, log, batchSize: 2, flushIntervalMs: 10_000, retryMs: 50 });
    ingest.accept('s', [r(1), r(2)], gate, log);
    expect(sink.calls).toBe(1);
    for (let i = 0; i < 50; i++) ingest.accept('s', [r(3), r(4)], gate, log);
    expect(sink.calls).toBe(1);
    await new Promise((res) => setTimeout(res, 300));
    expect(ingest.pendingCount).toBe(0);
    expect(sink.written.flat()).toHaveLength(102);
  });

  it('drains a large backlog over several turns of the event loop, in order', async () => {
    const sink = new FlakySink();
    ingest = new TelemetryIngest({
      sink,
      metrics: new Metrics({ processMetrics: false }),
      log,
      batchSize: 10,
      flushIntervalMs: 10_000,
    });
    sink.failures = 1;
    // Tag v has no range limit in this gate.
    ingest.accept(
      's',
      Array.from({ length: 10 }, (_, i) => r(i, { tag: 'v' })),
      gate,
      log,
    );
    ingest.accept(
      's',
      Array.from({ length: 990 }, (_, i) => r(10 + i, { tag: 'v' })),
      gate,
      log,
    );
    ingest.flush();
    // One turn writes at most ten batches; the rest follows without blocking.
    expect(sink.written).toHaveLength(10);
    await new Promise((res) => setTimeout(res, 50));
    expect(sink.written.flat().map((x) => x.value)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('stores the rest of a batch the store refused for one reading, and drops only that one', async () => {
    const sink = new FlakySink();
    sink.poison = 2;
    const metrics = new Metrics({ processMetrics: false });
    ingest = new TelemetryIngest({ sink, metrics, log, batchSize: 3, flushIntervalMs: 10_000 });
    ingest.accept('s', [r(1), r(2), r(3), r(4)], gate, log);
    ingest.flush();
    expect(sink.written.flat().map((x) => x.value)).toEqual([1, 3, 4]);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'store_rejected' })).toBe(1);
    expect(ingest.pendingCount).toBe(0);
  });

  it('keeps the latest reading per series in memory, and refuses (counting) readings after close', async () => {
    const sink = new FlakySink();
    const metrics = new Metrics({ processMetrics: false });
    ingest = new TelemetryIngest({ sink, metrics, log, batchSize: 100, flushIntervalMs: 10_000 });
    ingest.accept('s', [r(1), r(2, { tag: 'u' }), r(3)], gate, log);
    expect(ingest.latest().map((x) => [x.tag, x.value])).toEqual([
      ['t', 3],
      ['u', 2],
    ]);
    ingest.close();
    expect(sink.written.flat()).toHaveLength(3);
    ingest.accept('s', [r(4)], gate, log);
    expect(ingest.pendingCount).toBe(0);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'shutdown' })).toBe(1);
  });
});
