import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import type { IngestMark, SourceIngestMark } from '../../runtime/pipeline/source.js';
import { Store } from '../../runtime/store/store.js';
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

const mark = (key: string, hash: string, redelivered = false): IngestMark => ({ key, hash, redelivered });

/**
 * A sink that records each transaction, remembers the marks it wrote (one per source and key, as
 * the Store does), and can refuse for a while.
 */
class MarkSink implements ReadingSink {
  readonly writes: Array<{ readings: Reading[]; marks: SourceIngestMark[] }> = [];
  protected readonly marks = new Map<string, string>();
  /** The next this many writes fail as a full or locked disk fails. */
  failures = 0;
  /** The next this many mark look-ups fail the same way. */
  checkFailures = 0;
  /** Readings with this value are refused for their content. */
  poison: number | undefined;
  /** Fails every write after this many more have succeeded. */
  succeedThenFail: number | undefined;

  saveReadings(batch: readonly Reading[], marks: readonly SourceIngestMark[] = []): void {
    if (this.failures > 0) {
      this.failures -= 1;
      throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    }
    if (batch.some((x) => x.value === this.poison))
      throw new Error('store refused', { cause: new TypeError('SQLite3 can only bind numbers, strings...') });
    if (this.succeedThenFail !== undefined) {
      if (this.succeedThenFail === 0)
        throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
      this.succeedThenFail -= 1;
    }
    this.writes.push({ readings: [...batch], marks: [...marks] });
    for (const m of marks) this.marks.set(`${m.source}/${m.key}`, m.hash);
  }

  hasIngestMark(source: string, key: string, hash: string): boolean {
    if (this.checkFailures > 0) {
      this.checkFailures -= 1;
      throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
    }
    return this.marks.get(`${source}/${key}`) === hash;
  }

  values(): Array<number | null> {
    return this.writes.flatMap((w) => w.readings.map((x) => x.value));
  }
}

/** A MarkSink that can forget a mark, as deleteIngestMark() does. */
class DeletingSink extends MarkSink {
  readonly deletes: string[] = [];
  /** The next this many deletions fail as a full disk fails. */
  deleteFailures = 0;

  deleteIngestMark(source: string, key: string): void {
    if (this.deleteFailures > 0) {
      this.deleteFailures -= 1;
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    }
    this.deletes.push(`${source}/${key}`);
    this.marks.delete(`${source}/${key}`);
  }
}

/** The Store, as a process about to be killed sees it: marks are read and written, readings never commit. */
class DyingStore implements ReadingSink {
  constructor(private readonly store: Store) {}
  saveReadings(batch: readonly Reading[], marks?: readonly SourceIngestMark[]): void {
    if (batch.length > 0) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
    this.store.saveReadings(batch, marks);
  }
  hasIngestMark(source: string, key: string, hash: string): boolean {
    return this.store.hasIngestMark(source, key, hash);
  }
}

/** Records when each promise resolves, without awaiting it. */
function track(p: Promise<{ duplicate: boolean }>): { done: boolean; duplicate?: boolean } {
  const state: { done: boolean; duplicate?: boolean } = { done: false };
  void p.then((o) => {
    state.done = true;
    state.duplicate = o.duplicate;
  });
  return state;
}

const turn = () => new Promise((res) => setImmediate(res));
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

let ingest: TelemetryIngest | undefined;
afterEach(() => {
  ingest?.close();
  ingest = undefined;
});

async function metric(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

function setup(sink: MarkSink, over: { batchSize?: number; maxPending?: number; retryMs?: number } = {}) {
  const metrics = new Metrics({ processMetrics: false });
  ingest = new TelemetryIngest({
    sink,
    metrics,
    log,
    batchSize: over.batchSize ?? 100,
    // Far beyond any test: a durable write must not wait for the interval.
    flushIntervalMs: 60_000,
    retryMs: over.retryMs ?? 20,
    ...(over.maxPending !== undefined ? { maxPending: over.maxPending } : {}),
  });
  return { ingest, metrics };
}

describe('TelemetryIngest.acceptDurable', () => {
  it('resolves once the batch is written, and writes batches of one turn in one transaction', async () => {
    const sink = new MarkSink();
    const { ingest } = setup(sink);
    const a = track(ingest.acceptDurable('line-1', [r(1), r(2)], gate, log, mark('1', 'h1')));
    const b = track(ingest.acceptDurable('line-2', [r(3)], gate, log, mark('1', 'h2')));
    ingest.accept('opcua', [r(4)], gate, log);
    expect(sink.writes).toHaveLength(0);
    await turn();
    await turn();
    // One transaction for all three, marks included, and only then the promises resolve.
    expect(sink.writes).toHaveLength(1);
    expect(sink.writes[0]!.readings.map((x) => [x.source, x.value])).toEqual([
      ['line-1', 1],
      ['line-1', 2],
      ['line-2', 3],
      ['opcua', 4],
    ]);
    expect(sink.writes[0]!.marks).toEqual([
      { source: 'line-1', key: '1', hash: 'h1', redelivered: false },
      { source: 'line-2', key: '1', hash: 'h2', redelivered: false },
    ]);
    expect(a).toEqual({ done: true, duplicate: false });
    expect(b).toEqual({ done: true, duplicate: false });
  });

  it('writes a durable batch in one transaction with its mark, even past the batch size', async () => {
    const sink = new MarkSink();
    const { ingest } = setup(sink, { batchSize: 3 });
    ingest.accept('opcua', [r(1)], gate, log);
    const a = track(ingest.acceptDurable('s', [r(2)], gate, log, mark('1', 'a')));
    const b = track(
      ingest.acceptDurable(
        's',
        [3, 4, 5, 6].map((v) => r(v)),
        gate,
        log,
        mark('2', 'b'),
      ),
    );
    ingest.accept('opcua', [r(7), r(8), r(9)], gate, log);
    // The cut after 3 readings falls inside the second message: the transaction runs to its end.
    expect(sink.writes.map((w) => [w.readings.map((x) => x.value), w.marks.map((m) => m.key)])).toEqual([
      [
        [1, 2, 3, 4, 5, 6],
        ['1', '2'],
      ],
      [[7, 8, 9], []],
    ]);
    await turn();
    expect(a.done && b.done).toBe(true);
  });

  it('stores a message once when the process dies after what would have been its first part', async () => {
    const sink = new MarkSink();
    // One transaction succeeds, then the disk fails until the process is killed.
    sink.succeedThenFail = 1;
    const { ingest: first } = setup(sink, { batchSize: 3 });
    const msg = () => [1, 2, 3, 4, 5].map((v) => r(v));
    void first.acceptDurable('s', msg(), gate, log, mark('7', 'h'));
    await turn();
    first.close();
    sink.succeedThenFail = undefined;
    const { ingest: second } = setup(sink, { batchSize: 3 });
    expect(await second.acceptDurable('s', msg(), gate, log, mark('7', 'h', true))).toEqual({
      duplicate: true,
    });
    await turn();
    expect(sink.values()).toEqual([1, 2, 3, 4, 5]);
  });

  it('stays pending while the store refuses writes, and resolves once it takes them again', async () => {
    const sink = new MarkSink();
    sink.failures = 3;
    const { ingest, metrics } = setup(sink, { retryMs: 30 });
    const p = track(ingest.acceptDurable('s', [r(1)], gate, log, mark('1', 'h')));
    await sleep(45);
    expect(p.done).toBe(false);
    expect(sink.writes).toHaveLength(0);
    const q = track(ingest.acceptDurable('s', [r(2)], gate, log, mark('2', 'h2')));
    await sleep(200);
    expect(p).toEqual({ done: true, duplicate: false });
    expect(q).toEqual({ done: true, duplicate: false });
    expect(sink.values()).toEqual([1, 2]);
    expect(await metric(metrics, 'vigil_readings_store_errors_total')).toBe(3);
  });

  it('does not store a redelivery whose mark the store has, and counts it as a duplicate', async () => {
    const sink = new MarkSink();
    const { ingest, metrics } = setup(sink);
    await ingest.acceptDurable('s', [r(1), r(2)], gate, log, mark('5', 'h'));
    expect(sink.values()).toEqual([1, 2]);

    const again = await ingest.acceptDurable('s', [r(1), r(2)], gate, log, mark('5', 'h', true));
    expect(again).toEqual({ duplicate: true });
    expect(ingest.pendingCount).toBe(0);
    expect(await metric(metrics, 'vigil_ingest_duplicates_total', { source: 's' })).toBe(1);
    // Neither stored nor counted a second time.
    expect(ingest.statsFor('s').readings.good).toBe(2);

    // The same slot with other content, another source, or a first delivery: all stored.
    await ingest.acceptDurable('s', [r(3)], gate, log, mark('5', 'other', true));
    await ingest.acceptDurable('t', [r(4)], gate, log, mark('5', 'h', true));
    await ingest.acceptDurable('s', [r(5)], gate, log, mark('5', 'h'));
    await turn();
    expect(sink.values()).toEqual([1, 2, 3, 4, 5]);
    expect(await metric(metrics, 'vigil_ingest_duplicates_total', { source: 's' })).toBe(1);
  });

  it('forgets the mark of a key reused for the same content, so that a redelivery of the new message is stored', async () => {
    const sink = new DeletingSink();
    const { ingest: first } = setup(sink);
    await first.acceptDurable('s', [r(1)], gate, log, mark('7', 'P'));
    // Another first delivery under other keys, or under the key with other content: nothing to forget.
    await first.acceptDurable('s', [r(2)], gate, log, mark('8', 'P'));
    await first.acceptDurable('t', [r(3)], gate, log, mark('7', 'P'));
    await first.acceptDurable('s', [r(4)], gate, log, mark('8', 'Q'));
    expect(sink.deletes).toEqual([]);

    // Much later the broker reuses id 7 for a message with the same payload; the process dies
    // before it is committed.
    sink.failures = 1_000;
    const m2 = track(first.acceptDurable('s', [r(5)], gate, log, mark('7', 'P')));
    expect(sink.deletes).toEqual(['s/7']);
    await turn();
    expect(m2.done).toBe(false);
    first.close();

    // Sent again, with DUP: a new message, not the one stored long ago.
    sink.failures = 0;
    const { ingest: second, metrics } = setup(sink);
    expect(await second.acceptDurable('s', [r(5)], gate, log, mark('7', 'P', true))).toEqual({
      duplicate: false,
    });
    expect(sink.values()).toEqual([1, 2, 3, 4, 5]);
    expect(await metric(metrics, 'vigil_ingest_duplicates_total', { source: 's' })).toBe(0);
    // Its own mark is recorded: a further redelivery of it is a duplicate again.
    expect(await second.acceptDurable('s', [r(5)], gate, log, mark('7', 'P', true))).toEqual({
      duplicate: true,
    });
  });

  it('holds a message back while a stale mark cannot be forgotten', async () => {
    const sink = new DeletingSink();
    const { ingest } = setup(sink, { retryMs: 30 });
    await ingest.acceptDurable('s', [r(1)], gate, log, mark('7', 'P'));
    sink.deleteFailures = 2;
    const m2 = track(ingest.acceptDurable('s', [r(2)], gate, log, mark('7', 'P')));
    await turn();
    // Not queued, not acknowledged: its sender keeps it.
    expect(m2.done).toBe(false);
    expect(ingest.pendingCount).toBe(0);
    await sleep(150);
    expect(m2).toEqual({ done: true, duplicate: false });
    expect(sink.deletes).toEqual(['s/7']);
    expect(sink.values()).toEqual([1, 2]);
  });

  it('does not write the queued mark of a message whose key a later message reused', async () => {
    const sink = new MarkSink();
    sink.failures = 1_000;
    const { ingest: first } = setup(sink, { retryMs: 10_000 });
    // The broker lost its session (a restart without persistence) and starts its ids afresh.
    void first.acceptDurable('s', [r(1)], gate, log, mark('1', 'P'));
    void first.acceptDurable('s', [r(2)], gate, log, mark('1', 'P'));
    sink.failures = 0;
    first.flush();
    expect(sink.writes.map((w) => w.marks.length)).toEqual([1]);
    expect(sink.values()).toEqual([1, 2]);
    first.close();
  });

  it('recognises a redelivery of a batch still queued, and resolves it only once the first copy is written', async () => {
    const sink = new MarkSink();
    sink.failures = 2;
    const { ingest, metrics } = setup(sink, { retryMs: 30 });
    const first = track(ingest.acceptDurable('s', [r(1)], gate, log, mark('9', 'h')));
    await turn();
    expect(ingest.pendingCount).toBe(1);
    const dup = track(ingest.acceptDurable('s', [r(1)], gate, log, mark('9', 'h', true)));
    expect(ingest.pendingCount).toBe(1);
    await turn();
    // Acknowledging the redelivery now would lose the message if the process died before the write.
    expect(dup.done).toBe(false);
    await sleep(150);
    expect(first).toEqual({ done: true, duplicate: false });
    expect(dup).toEqual({ done: true, duplicate: true });
    expect(sink.values()).toEqual([1]);
    expect(await metric(metrics, 'vigil_ingest_duplicates_total', { source: 's' })).toBe(1);
  });

  it('keeps a redelivery waiting while the store cannot say whether it has it', async () => {
    const sink = new MarkSink();
    const { ingest } = setup(sink, { retryMs: 30 });
    await ingest.acceptDurable('s', [r(1)], gate, log, mark('3', 'h'));
    sink.checkFailures = 2;
    const dup = track(ingest.acceptDurable('s', [r(1)], gate, log, mark('3', 'h', true)));
    await sleep(40);
    expect(dup.done).toBe(false);
    await sleep(150);
    expect(dup).toEqual({ done: true, duplicate: true });
    expect(sink.values()).toEqual([1]);
  });

  it('resolves at once, recording no mark, when the gate refuses every reading', async () => {
    const sink = new MarkSink();
    const { ingest } = setup(sink);
    const p = track(ingest.acceptDurable('s', [r(500), r(Number.NaN)], gate, log, mark('1', 'h')));
    await Promise.resolve();
    expect(p).toEqual({ done: true, duplicate: false });
    expect(ingest.statsFor('s').rejected).toEqual({ out_of_range: 1, not_finite: 1 });
    await turn();
    expect(sink.writes).toEqual([]);
  });

  it('never drops durable readings past the memory cap, only the oldest plain ones around them', async () => {
    const sink = new MarkSink();
    sink.failures = 1_000;
    const { ingest, metrics } = setup(sink, { maxPending: 2, retryMs: 10_000 });
    ingest.accept('opcua', [r(1), r(2)], gate, log);
    const a = track(ingest.acceptDurable('s', [r(3), r(4), r(5)], gate, log, mark('1', 'a')));
    ingest.accept('opcua', [r(6), r(7)], gate, log);
    ingest.accept('opcua', [r(8)], gate, log);
    await turn();
    // Acknowledging a dropped message would lose it: its sender keeps it while it waits instead.
    expect(a.done).toBe(false);
    expect(ingest.pendingCount).toBe(5);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'store_backlog' })).toBe(3);
    const b = track(ingest.acceptDurable('s', [r(9)], gate, log, mark('2', 'b')));
    await turn();
    expect(ingest.pendingCount).toBe(6);

    sink.failures = 0;
    ingest.flush();
    await turn();
    expect(sink.writes.map((w) => [w.readings.map((x) => x.value), w.marks.map((m) => m.key)])).toEqual([
      [
        [3, 4, 5, 7, 8, 9],
        ['1', '2'],
      ],
    ]);
    expect(a).toEqual({ done: true, duplicate: false });
    expect(b).toEqual({ done: true, duplicate: false });
  });

  it('keeps the unwritten rest of a durable batch past the memory cap', async () => {
    const sink = new MarkSink();
    // Refused for its content, so written one by one; the disk fails after the next reading.
    sink.poison = 1;
    sink.succeedThenFail = 1;
    const { ingest, metrics } = setup(sink, { maxPending: 1, retryMs: 10_000 });
    const a = track(ingest.acceptDurable('s', [r(1), r(2), r(3)], gate, log, mark('1', 'a')));
    await turn();
    await turn();
    expect(sink.values()).toEqual([2]);
    ingest.accept('opcua', [r(4), r(5)], gate, log);
    expect(ingest.pendingCount).toBe(2);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'store_backlog' })).toBe(1);
    sink.succeedThenFail = undefined;
    ingest.flush();
    await turn();
    expect(sink.values()).toEqual([2, 3, 5]);
    expect(sink.writes.at(-1)!.marks.map((m) => m.key)).toEqual(['1']);
    expect(a).toEqual({ done: true, duplicate: false });
  });

  it('releases its waiters at close', async () => {
    const sink = new MarkSink();
    sink.failures = 1_000;
    const { ingest, metrics } = setup(sink, { retryMs: 10_000 });
    const b = track(ingest.acceptDurable('s', [r(2), r(3)], gate, log, mark('2', 'b')));
    await turn();
    expect(b.done).toBe(false);
    ingest.close();
    await turn();
    expect(b).toEqual({ done: true, duplicate: false });
    // After close nothing is taken, and nobody is left waiting.
    const late = track(ingest.acceptDurable('s', [r(4)], gate, log));
    await turn();
    expect(late.done).toBe(true);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'shutdown' })).toBe(1);
  });

  it('keeps the marks and waiters of a batch stored reading by reading', async () => {
    const sink = new MarkSink();
    sink.poison = 2;
    const { ingest, metrics } = setup(sink);
    const p = track(ingest.acceptDurable('s', [r(1), r(2)], gate, log, mark('4', 'h')));
    await turn();
    await turn();
    expect(p).toEqual({ done: true, duplicate: false });
    expect(sink.values()).toEqual([1]);
    expect(await metric(metrics, 'vigil_readings_dropped_total', { reason: 'store_rejected' })).toBe(1);
    // The last reading was dropped; its mark was written alone, so a redelivery is still known.
    expect(await ingest.acceptDurable('s', [r(1), r(2)], gate, log, mark('4', 'h', true))).toEqual({
      duplicate: true,
    });
  });

  it('loses no reading when the store fails part-way through a batch it is writing one by one', async () => {
    const sink = new MarkSink();
    sink.poison = 1;
    // The refused reading, then 2 stored, then the disk fails.
    sink.succeedThenFail = 2;
    const { ingest } = setup(sink, { batchSize: 10, retryMs: 20 });
    const p = track(
      ingest.acceptDurable(
        's',
        [1, 2, 3, 4, 5].map((v) => r(v)),
        gate,
        log,
      ),
    );
    await turn();
    await turn();
    expect(sink.values()).toEqual([2, 3]);
    expect(ingest.pendingCount).toBe(2);
    expect(p.done).toBe(false);
    sink.succeedThenFail = undefined;
    await sleep(100);
    expect(sink.values()).toEqual([2, 3, 4, 5]);
    expect(p.done).toBe(true);
  });

  it('with the Store: writes marks with their readings and recognises a redelivery after a restart', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-ingest-durable-'));
    const file = path.join(dir, 'vigil.db');
    const cfg = StoreConfig.parse({ path: file });
    let store = Store.open(file, cfg, log);
    try {
      let metrics = new Metrics({ processMetrics: false });
      ingest = new TelemetryIngest({ sink: store, metrics, log, batchSize: 100, flushIntervalMs: 60_000 });
      expect(await ingest.acceptDurable('s', [r(1), r(2)], gate, log, mark('12', 'h'))).toEqual({
        duplicate: false,
      });
      expect(store.countReadings({ source: 's' })).toBe(2);
      // Killed before the acknowledgement went out: the store is all that is left.
      ingest.close();
      store.close();

      store = Store.open(file, cfg, log);
      metrics = new Metrics({ processMetrics: false });
      ingest = new TelemetryIngest({ sink: store, metrics, log, batchSize: 100, flushIntervalMs: 60_000 });
      expect(await ingest.acceptDurable('s', [r(1), r(2)], gate, log, mark('12', 'h', true))).toEqual({
        duplicate: true,
      });
      // The slot reused for other content is a new message.
      expect(await ingest.acceptDurable('s', [r(3)], gate, log, mark('12', 'h2', true))).toEqual({
        duplicate: false,
      });
      expect(store.listReadings({ source: 's' }).map((x) => x.value)).toEqual([1, 2, 3]);
      expect(await metric(metrics, 'vigil_ingest_duplicates_total', { source: 's' })).toBe(1);

      // Key 12 reused for the content first stored under it; killed before the commit.
      const dying = new DyingStore(store);
      ingest.close();
      ingest = new TelemetryIngest({ sink: dying, metrics, log, batchSize: 100, flushIntervalMs: 60_000 });
      expect(store.hasIngestMark('s', '12', 'h2')).toBe(true);
      void ingest.acceptDurable('s', [r(4)], gate, log, mark('12', 'h2'));
      expect(store.hasIngestMark('s', '12', 'h2')).toBe(false);
      ingest.close();
      ingest = new TelemetryIngest({ sink: store, metrics, log, batchSize: 100, flushIntervalMs: 60_000 });
      expect(await ingest.acceptDurable('s', [r(4)], gate, log, mark('12', 'h2', true))).toEqual({
        duplicate: false,
      });
      expect(store.listReadings({ source: 's' }).map((x) => x.value)).toEqual([1, 2, 3, 4]);
    } finally {
      ingest?.close();
      ingest = undefined;
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
