import { v7 as uuidv7 } from 'uuid';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { IngestMark, InputRejectReason, SourceIngestMark } from '../pipeline/source.js';
import type { ExpectationRule, Reading } from './reading.js';
import type { ReadingGate } from './gate.js';

/** Where accepted readings go: the store (a test may pass another sink). */
export interface ReadingSink {
  /**
   * Writes the readings, and the marks of the durable batches whose last reading is among them,
   * in one transaction: all or none. A mark replaces any earlier one of the same source and key.
   */
  saveReadings(batch: readonly Reading[], marks?: readonly SourceIngestMark[]): void;
  /**
   * Whether a mark with this source, key and hash was written; without it, only marks still
   * queued in memory are recognised.
   */
  hasIngestMark?(source: string, key: string, hash: string): boolean;
  /**
   * Forgets the mark of this source and key, durably, in a transaction of its own. Without it, a
   * stale mark is overwritten through saveReadings() with one that no content hashes to.
   */
  deleteIngestMark?(source: string, key: string): void;
}

export interface TelemetryIngestOptions {
  sink: ReadingSink;
  metrics: Metrics;
  log: Logger;
  /** Readings written in one transaction at most. */
  batchSize: number;
  /** Accepted readings are written at least this often (ms). */
  flushIntervalMs: number;
  /**
   * Accepted readings of accept() kept in memory while the store refuses writes (disk full, locked
   * file); beyond it the oldest of them are dropped and counted. Generous: a reading is ~150 bytes.
   * Readings of acceptDurable() are never dropped: their sender keeps them until acknowledged, and
   * holds back its next input meanwhile (an MQTT source has one message in flight), so they cannot
   * pile up.
   */
  maxPending?: number;
  /** Delay before retrying a store that refused a write (ms). */
  retryMs?: number;
  /**
   * Told about the readings of each batch that passed the gate (every quality), in order, after
   * they were queued for the store: how telemetry pipelines get their input. Must not throw.
   */
  onAccepted?: ((source: string, readings: readonly Reading[]) => void) | undefined;
}

export interface SourceTelemetryStats {
  readings: { good: number; uncertain: number; bad: number };
  rejected: Partial<Record<InputRejectReason, number>>;
  reconnects: number;
  /** Wall-clock ms of the last accepted reading; null before the first. */
  lastReadingAt: number | null;
}

/** Batches written per turn of the event loop: about 10k readings, a few ms, then others get a turn. */
const BATCHES_PER_TURN = 10;
/** store_unavailable refusals of one source are logged at most this often (each is counted). */
const STORE_REFUSAL_LOG_MS = 10_000;
/** Distinct source/asset/tag series whose latest value is kept for the status views. */
const MAX_LATEST = 20_000;

/**
 * The readings of one durable batch, at absolute positions `start..end`: written in one
 * transaction, never dropped, and its mark (if any) written with them.
 */
interface DurableSpan {
  start: number;
  end: number;
  /** Gone once a later batch under the same key proved this one acknowledged. */
  mark?: SourceIngestMark | undefined;
}

/** A caller of acceptDurable waiting until every reading before absolute position `end` is written. */
interface DurableWaiter {
  end: number;
  duplicate: boolean;
  resolve(outcome: { duplicate: boolean }): void;
}

/** A durable batch waiting to be checked again against a store that could not answer. */
interface DeferredCheck {
  timer: NodeJS.Timeout;
  run(): void;
}

/**
 * The runtime's side of telemetry: checks every reading a source hands over (ReadingGate),
 * counts it, and writes the accepted ones to the store in batches: one transaction per batch
 * is what makes 10k readings/s cheap in SQLite. A batch the store refuses for a passing reason
 * (a full disk, a locked file) stays queued and is retried; one it refuses for its content is
 * written reading by reading, and only the readings it cannot take are dropped and counted.
 * Draining a backlog is spread over turns of the event loop so that frames keep their budget.
 *
 * Sources that acknowledge their input (MQTT QoS 1) use acceptDurable(): its promise resolves
 * once the batch is committed, so that the sender keeps what a power cut could still lose, and a
 * mark written in the same transaction lets a redelivery of an already stored batch be recognised.
 * Such a batch is written in one transaction, whatever the batch size, and is never dropped to
 * save memory: what it could lose would be acknowledged all the same.
 */
export class TelemetryIngest {
  /** Accepted, not yet stored: `queue[head..]`. A head index keeps dequeuing O(1). */
  private queue: Reading[] = [];
  private head = 0;
  /**
   * Absolute position of `queue[0]` among all readings ever queued: positions survive compact(),
   * so durable waiters and marks can name the reading they wait for.
   */
  private base = 0;
  /** Queued durable batches, in queue order; they never overlap. */
  private spans: DurableSpan[] = [];
  /** Readings of `spans` still queued, left out of the memory cap. */
  private durablePending = 0;
  /**
   * The queued span that carries the mark of each source and key, to recognise a redelivery of a
   * batch not yet written: at most one, the latest.
   */
  private readonly queuedMarks = new Map<string, DurableSpan>();
  /** Ordered by `end`. */
  private waiters: DurableWaiter[] = [];
  private readonly deferredChecks = new Set<DeferredCheck>();
  private markCheckFailing = false;
  private timer: NodeJS.Timeout | undefined;
  private drainHandle: NodeJS.Immediate | undefined;
  private readonly stats = new Map<string, SourceTelemetryStats>();
  private readonly latestBySeries = new Map<string, Reading>();
  /** Per source: when a store_unavailable refusal was last logged, and how many were not since. */
  private readonly storeRefusalsLogged = new Map<string, { at: number; suppressed: number }>();
  private readonly maxPending: number;
  private readonly retryMs: number;
  private storeFailing = false;
  private closed = false;

  constructor(private readonly o: TelemetryIngestOptions) {
    this.maxPending = o.maxPending ?? 1_000_000;
    this.retryMs = o.retryMs ?? 1_000;
  }

  statsFor(source: string): SourceTelemetryStats {
    let s = this.stats.get(source);
    if (!s) {
      s = { readings: { good: 0, uncertain: 0, bad: 0 }, rejected: {}, reconnects: 0, lastReadingAt: null };
      this.stats.set(source, s);
    }
    return s;
  }

  /** The latest accepted reading of every series (source, asset, tag), kept in memory. */
  latest(): Reading[] {
    return [...this.latestBySeries.values()];
  }

  get pendingCount(): number {
    return this.queue.length - this.head;
  }

  /** Checks and queues a batch from one source. Never throws. */
  accept(source: string, batch: readonly Reading[], gate: ReadingGate, log: Logger): void {
    if (this.closed) {
      this.dropAtShutdown(batch.length);
      return;
    }
    this.queueChecked(source, batch, gate, log);
    this.afterQueued();
  }

  /**
   * As accept(), for input its sender delivers again until acknowledged: resolves once every
   * reading of the batch that passed the gate is written (or dropped and counted: past the memory
   * cap, or at shutdown), and stays pending while the store refuses writes, so that the sender
   * keeps the input meanwhile. While a caller waits, queued readings are written on the next turn
   * of the event loop rather than after flushIntervalMs; batches arriving in the same turn share
   * one transaction.
   *
   * The batch is written in one transaction, with its `mark` if it has one (only a batch the store
   * refuses for its content is written reading by reading, the mark with the last). A redelivered batch
   * whose mark is already written, or still queued, is not queued again: the promise resolves
   * with `duplicate: true` once the first copy is written. A first delivery under a key proves
   * that the previous batch under it was acknowledged: a mark of that batch with the same hash
   * (the key reused for the same content) is forgotten first, or a redelivery of the new batch
   * would pass for the old one. A batch of which no reading passed the gate resolves at once and
   * records no mark: nothing of it can be lost, and a redelivery only counts its refusals again,
   * which costs less than a transaction per refused message. While the store cannot answer for
   * the marks, the batch waits and is checked again. Never rejects.
   */
  acceptDurable(
    source: string,
    batch: readonly Reading[],
    gate: ReadingGate,
    log: Logger,
    mark?: IngestMark,
  ): Promise<{ duplicate: boolean }> {
    if (this.closed) {
      this.dropAtShutdown(batch.length);
      return Promise.resolve({ duplicate: false });
    }
    if (mark?.redelivered) {
      const known = this.knownMark(source, mark, log);
      if (known === undefined) return this.checkLater(source, batch, gate, log, mark);
      if (known !== false) {
        this.o.metrics.ingestDuplicates.inc({ source });
        log.debug(
          { key: mark.key, readings: batch.length },
          `a redelivered message of ${source} was already accepted; not stored twice`,
        );
        return this.waitFor(known, true);
      }
    } else if (mark && !this.forgetStaleMark(source, mark, log)) {
      return this.checkLater(source, batch, gate, log, mark);
    }
    const start = this.base + this.queue.length;
    const accepted = this.queueChecked(source, batch, gate, log);
    let outcome = Promise.resolve({ duplicate: false });
    if (accepted > 0) {
      const end = this.base + this.queue.length;
      this.addSpan(start, end, mark && { ...mark, source });
      outcome = this.waitFor(end, false);
    }
    this.afterQueued();
    return outcome;
  }

  /** Checks, counts and queues a batch; returns how many readings it queued. */
  private queueChecked(source: string, batch: readonly Reading[], gate: ReadingGate, log: Logger): number {
    const now = Date.now();
    const stats = this.statsFor(source);
    // Counted per batch, not per reading: a labelled counter increment costs more than the check.
    const counts = { good: 0, uncertain: 0, bad: 0 };
    const accepted: Reading[] | undefined = this.o.onAccepted ? [] : undefined;
    // One batch is one message from the device: its readings share one trace id unless the
    // adapter took one from the sender.
    let batchTrace: string | undefined;
    let firstTrace: string | undefined;
    for (const r of batch) {
      // The source name and the trace id are the runtime's to give, not the adapter's.
      let reading: Reading = r.source === source ? r : { ...r, source };
      if (typeof reading.traceId !== 'string' || reading.traceId === '')
        reading = { ...reading, traceId: (batchTrace ??= uuidv7()) };
      const refusal = gate.check(reading, now);
      if (refusal) {
        this.refuse(
          source,
          refusal.reason,
          refusal.message,
          `${String(reading.asset)}/${String(reading.tag)}`,
          log,
        );
        continue;
      }
      // Data expectations: a reading out of spec is stored with the rules it broke (its flags),
      // and the monitor counts it; a reading that meets them costs a few comparisons. Flags the
      // source gave (the payload of its message broke an expectation) are kept beside them.
      const expectations = gate.expectations;
      if (expectations !== undefined) {
        const flags = expectations.check(reading, now);
        if (flags !== undefined) reading = { ...reading, flags: mergeFlags(reading.flags, flags) };
      }
      this.queue.push(reading);
      firstTrace ??= reading.traceId;
      accepted?.push(reading);
      counts[reading.quality] += 1;
      const key = `${source}\u0000${reading.asset}\u0000${reading.tag}`;
      if (this.latestBySeries.has(key) || this.latestBySeries.size < MAX_LATEST)
        this.latestBySeries.set(key, reading);
    }
    for (const quality of ['good', 'uncertain', 'bad'] as const) {
      if (counts[quality] === 0) continue;
      stats.readings[quality] += counts[quality];
      this.o.metrics.readings.inc({ source, quality }, counts[quality]);
    }
    if (counts.good + counts.uncertain + counts.bad > 0) {
      stats.lastReadingAt = now;
      this.o.metrics.lastReading.set({ source }, now / 1000);
    }
    if (accepted && accepted.length > 0) {
      try {
        this.o.onAccepted!(source, accepted);
      } catch (err) {
        log.error({ err: errorMessage(err) }, `readings of ${source} could not be handed to its pipelines`);
      }
    }
    const queued = counts.good + counts.uncertain + counts.bad;
    if (queued > 0 && log.isLevelEnabled('debug'))
      log.debug(
        { traceId: firstTrace, readings: queued, refused: batch.length - queued },
        'readings accepted',
      );
    return queued;
  }

  private afterQueued(): void {
    this.trimQueue();
    this.o.metrics.readingsPending.set(this.pendingCount);
    // While the store is failing, the retry timer decides when to try again: not every message.
    if (this.storeFailing) this.schedule(this.retryMs);
    else if (this.pendingCount >= this.o.batchSize) this.flush();
    else if (this.waiters.length > 0) this.flushSoon();
    else this.schedule(this.o.flushIntervalMs);
  }

  /** Counts and logs an input refused before or while becoming a reading. Never throws. */
  refuse(source: string, reason: InputRejectReason, message: string, origin: string, log: Logger): void {
    const stats = this.statsFor(source);
    stats.rejected[reason] = (stats.rejected[reason] ?? 0) + 1;
    this.o.metrics.inputErrors.inc({ source, reason });
    if (reason === 'store_unavailable') {
      // Every frame is refused while the disk is full, and the log may be on that disk: one line
      // per source every STORE_REFUSAL_LOG_MS, with the count since the last.
      const now = Date.now();
      const last = this.storeRefusalsLogged.get(source);
      if (last && now - last.at < STORE_REFUSAL_LOG_MS) {
        last.suppressed += 1;
        return;
      }
      this.storeRefusalsLogged.set(source, { at: now, suppressed: 0 });
      const more = last?.suppressed ? ` (${last.suppressed} more refused since the last line)` : '';
      log.warn(
        { reason, origin, suppressed: last?.suppressed ?? 0 },
        `input from ${origin} refused (${reason}): ${message}${more}`,
      );
      return;
    }
    log.warn({ reason, origin }, `input from ${origin} refused (${reason}): ${message}`);
  }

  reconnected(source: string): void {
    this.statsFor(source).reconnects += 1;
    this.o.metrics.sourceReconnects.inc({ source });
  }

  /**
   * Writes what is pending, a bounded number of batches per call; the rest follows on the next
   * turns of the event loop. Never throws: a batch the store refuses stays queued.
   */
  flush(): void {
    this.clearTimers();
    for (let n = 0; this.pendingCount > 0; n++) {
      if (n >= BATCHES_PER_TURN) {
        this.drainHandle = setImmediate(() => {
          this.drainHandle = undefined;
          this.flush();
        });
        break;
      }
      if (!this.writeNextBatch()) {
        this.schedule(this.retryMs);
        break;
      }
    }
    this.compact();
    this.o.metrics.readingsPending.set(this.pendingCount);
  }

  /**
   * Stops taking readings and writes everything still queued, synchronously. Durable callers
   * still waiting are released: the daemon stops its sources first, so no acknowledgement of
   * what could not be stored reaches a sender.
   */
  close(): void {
    this.closed = true;
    this.clearTimers();
    while (this.pendingCount > 0 && this.writeNextBatch());
    if (this.pendingCount > 0)
      this.o.log.error(
        { unstored: this.pendingCount },
        `${this.pendingCount} accepted readings could not be stored before shutdown`,
      );
    this.o.metrics.readingsPending.set(this.pendingCount);
    for (const w of this.waiters.splice(0)) w.resolve({ duplicate: w.duplicate });
    this.spans = [];
    this.durablePending = 0;
    this.queuedMarks.clear();
    for (const check of [...this.deferredChecks]) {
      clearTimeout(check.timer);
      check.run();
    }
  }

  /** Writes the batch at the head of the queue; false when the store refused it for now. */
  private writeNextBatch(): boolean {
    const batch = this.queue.slice(this.head, this.batchEnd());
    const marks = this.marksThrough(this.base + this.head + batch.length);
    const end = this.o.metrics.readingsWriteSeconds.startTimer();
    try {
      if (marks.length > 0) this.o.sink.saveReadings(batch, marks);
      else this.o.sink.saveReadings(batch);
    } catch (err) {
      end();
      if (isContentError(err)) return this.writeOneByOne(batch);
      this.o.metrics.readingsStoreErrors.inc();
      if (!this.storeFailing) {
        this.storeFailing = true;
        this.o.log.error(
          { err: errorMessage(err), pending: this.pendingCount },
          `readings could not be stored; kept in memory and retried: ${errorMessage(err)}`,
        );
      }
      return false;
    }
    end();
    this.advance(batch.length);
    this.o.metrics.readingsStored.inc(batch.length);
    if (this.storeFailing) {
      this.storeFailing = false;
      this.o.log.info({ pending: this.pendingCount }, 'readings are being stored again');
    }
    return true;
  }

  /** A batch refused for its content: store what the store takes, drop and count the rest. */
  private writeOneByOne(batch: Reading[]): boolean {
    let stored = 0;
    for (const r of batch) {
      const marks = this.marksThrough(this.base + this.head + 1);
      try {
        if (marks.length > 0) this.o.sink.saveReadings([r], marks);
        else this.o.sink.saveReadings([r]);
        stored += 1;
      } catch (err) {
        if (!isContentError(err)) {
          // The readings before this one are already past the head: only the count is owed.
          this.o.metrics.readingsStored.inc(stored);
          this.o.metrics.readingsStoreErrors.inc();
          return false;
        }
        this.o.metrics.readingsDropped.inc({ reason: 'store_rejected' });
        this.o.log.error(
          { source: r.source, asset: r.asset, tag: r.tag, err: errorMessage(err) },
          `a reading of ${r.source} ${String(r.asset)}/${String(r.tag)} was refused by the store and dropped: ${errorMessage(err)}`,
        );
        if (marks.length > 0) this.saveMarksAlone(marks);
      }
      this.advance(1);
    }
    this.o.metrics.readingsStored.inc(stored);
    return true;
  }

  /**
   * The last reading of a durable batch was dropped: its mark still says the rest of the batch is
   * stored. Without it a redelivery would store that rest a second time, which is all it costs.
   */
  private saveMarksAlone(marks: readonly SourceIngestMark[]): void {
    try {
      this.o.sink.saveReadings([], marks);
    } catch (err) {
      this.o.log.warn(
        { err: errorMessage(err), marks: marks.length },
        `the delivery marks of a batch could not be stored; a redelivery of it may be stored twice: ${errorMessage(err)}`,
      );
    }
  }

  /**
   * Where the next batch ends (queue index): batchSize readings on, or past it to the end of the
   * durable batch it would cut. Split over two commits, a crash between them would leave the first
   * part stored without its mark, and the redelivery would store that part a second time.
   */
  private batchEnd(): number {
    const end = Math.min(this.head + this.o.batchSize, this.queue.length);
    const cut = this.base + end;
    for (const span of this.spans) {
      if (span.start >= cut) break;
      if (span.end > cut) return span.end - this.base;
    }
    return end;
  }

  /** The marks to write with the readings up to absolute position `end` (exclusive). */
  private marksThrough(end: number): SourceIngestMark[] {
    const out: SourceIngestMark[] = [];
    for (const span of this.spans) {
      if (span.end > end) break;
      if (span.mark) out.push(span.mark);
    }
    return out;
  }

  private addSpan(start: number, end: number, mark: SourceIngestMark | undefined): void {
    const span: DurableSpan = { start, end, mark };
    this.spans.push(span);
    this.durablePending += end - start;
    if (!mark) return;
    const key = markKey(mark.source, mark.key);
    // A new batch under a key queued before proves that one acknowledged: its mark, written later
    // than this one's, would only stand for a batch that is never redelivered.
    const superseded = this.queuedMarks.get(key);
    if (superseded) superseded.mark = undefined;
    this.queuedMarks.set(key, span);
  }

  /**
   * Before a first delivery under a key is queued: forgets a written mark of the same key and hash.
   * The sender reuses a key only once the batch under it was acknowledged, and content repeats (a
   * machine idling sends the same payload); a redelivery of the new batch, after a crash before
   * its commit, would otherwise be taken for the old one, acknowledged, and lost. Only that case
   * costs a write. False when the store could not be asked or could not forget it now.
   */
  private forgetStaleMark(source: string, mark: IngestMark, log: Logger): boolean {
    const sink = this.o.sink;
    if (!sink.hasIngestMark) return true;
    try {
      if (sink.hasIngestMark(source, mark.key, mark.hash)) {
        if (sink.deleteIngestMark) sink.deleteIngestMark(source, mark.key);
        // One mark per source and key: a hash that no content has stands for none.
        else sink.saveReadings([], [{ source, key: mark.key, hash: '', redelivered: false }]);
        log.debug(
          { key: mark.key },
          `a key of ${source} reused for the same content; its old mark forgotten`,
        );
      }
      this.markChecksWork(log);
      return true;
    } catch (err) {
      this.markChecksFail(source, err, log);
      return false;
    }
  }

  /**
   * Where the batch under this mark already is: the queue position to wait for (the first copy
   * still queued, or the written part of the queue when the store has it), false when it is new,
   * undefined when the store cannot tell now.
   */
  private knownMark(source: string, mark: IngestMark, log: Logger): number | false | undefined {
    const queued = this.queuedMarks.get(markKey(source, mark.key));
    if (queued?.mark?.hash === mark.hash) return queued.end;
    const sink = this.o.sink;
    if (!sink.hasIngestMark) return false;
    try {
      const found = sink.hasIngestMark(source, mark.key, mark.hash);
      this.markChecksWork(log);
      return found ? this.base + this.head : false;
    } catch (err) {
      this.markChecksFail(source, err, log);
      return undefined;
    }
  }

  private markChecksWork(log: Logger): void {
    if (!this.markCheckFailing) return;
    this.markCheckFailing = false;
    log.info('acknowledged input can be checked against the store again');
  }

  private markChecksFail(source: string, err: unknown, log: Logger): void {
    if (this.markCheckFailing) return;
    this.markCheckFailing = true;
    log.error(
      { err: errorMessage(err) },
      `a message of ${source} could not be checked against the delivery marks in the store; it stays unacknowledged and is checked again: ${errorMessage(err)}`,
    );
  }

  /** Tries a durable batch again once the store may answer; until then its sender waits. */
  private checkLater(
    source: string,
    batch: readonly Reading[],
    gate: ReadingGate,
    log: Logger,
    mark: IngestMark,
  ): Promise<{ duplicate: boolean }> {
    return new Promise((resolve) => {
      const check: DeferredCheck = {
        timer: setTimeout(() => check.run(), this.retryMs),
        run: () => {
          this.deferredChecks.delete(check);
          resolve(this.acceptDurable(source, batch, gate, log, mark));
        },
      };
      // Like the flush timer: what waits here is still held by its sender, not lost by exiting.
      check.timer.unref();
      this.deferredChecks.add(check);
    });
  }

  private waitFor(end: number, duplicate: boolean): Promise<{ duplicate: boolean }> {
    if (end <= this.base + this.head) return Promise.resolve({ duplicate });
    return new Promise((resolve) => {
      let i = this.waiters.length;
      while (i > 0 && this.waiters[i - 1]!.end > end) i--;
      this.waiters.splice(i, 0, { end, duplicate, resolve });
    });
  }

  /**
   * Moves the head past `n` readings, written or dropped, and releases the marks and waiters
   * they end: a dropped reading is counted where it is dropped, and waiting on it would never end.
   */
  private advance(n: number): void {
    this.head += n;
    const done = this.base + this.head;
    let m = 0;
    while (m < this.spans.length && this.spans[m]!.end <= done) {
      const span = this.spans[m]!;
      this.durablePending -= span.end - span.start;
      if (span.mark) {
        const key = markKey(span.mark.source, span.mark.key);
        if (this.queuedMarks.get(key) === span) this.queuedMarks.delete(key);
      }
      m++;
    }
    if (m > 0) this.spans.splice(0, m);
    // A span written in part, reading by reading: what is left of it is what stays durable.
    const part = this.spans[0];
    if (part && part.start < done) {
      this.durablePending -= done - part.start;
      part.start = done;
    }
    let w = 0;
    while (w < this.waiters.length && this.waiters[w]!.end <= done) w++;
    if (w > 0)
      for (const waiter of this.waiters.splice(0, w)) waiter.resolve({ duplicate: waiter.duplicate });
  }

  private dropAtShutdown(n: number): void {
    // A source that outlived its stop deadline: nothing can be stored any more.
    if (n > 0) this.o.metrics.readingsDropped.inc({ reason: 'shutdown' }, n);
  }

  /** Writes on the next turn of the event loop, so that batches of this turn share a transaction. */
  private flushSoon(): void {
    if (this.drainHandle || this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.drainHandle = setImmediate(() => {
      this.drainHandle = undefined;
      this.flush();
    });
  }

  private schedule(delay: number): void {
    if (this.timer || this.drainHandle || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, delay);
    // Pending readings are written by close(); a timer must not keep a stopping process alive.
    this.timer.unref();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.drainHandle) clearImmediate(this.drainHandle);
    this.timer = undefined;
    this.drainHandle = undefined;
  }

  /**
   * Drops the oldest readings of accept() past maxPending. Durable batches among them stay, moved
   * up against the readings that follow them (their order kept): each is still written in one
   * transaction, and the positions after them do not change.
   */
  private trimQueue(): void {
    const excess = this.pendingCount - this.durablePending - this.maxPending;
    if (excess <= 0) return;
    const first = this.base + this.head;
    const last = this.base + this.queue.length;
    // The region from the head holding `excess` droppable readings, and the spans within it.
    const kept: DurableSpan[] = [];
    let pos = first;
    let dropped = 0;
    for (let s = 0; dropped < excess && pos < last;) {
      const span = this.spans[s];
      if (span && span.start <= pos) {
        kept.push(span);
        pos = span.end;
        s++;
        continue;
      }
      const next = Math.min(span ? span.start : last, pos + excess - dropped);
      dropped += next - pos;
      pos = next;
    }
    if (dropped === 0) return;
    const moved = new Map<number, number>();
    let to = pos - this.base;
    for (let k = kept.length - 1; k >= 0; k--) {
      const span = kept[k]!;
      const from = span.start - this.base;
      const n = span.end - span.start;
      // Backwards: the span only moves towards the end of the region, onto slots already read.
      for (let j = n - 1; j >= 0; j--) this.queue[to - n + j] = this.queue[from + j]!;
      moved.set(span.end, this.base + to);
      span.end = this.base + to;
      span.start = span.end - n;
      to -= n;
    }
    // A waiter in the region waits for the end of a span in it (its own, or the first copy's).
    for (const w of this.waiters) w.end = moved.get(w.end) ?? w.end;
    this.head = to;
    this.compact();
    this.o.metrics.readingsDropped.inc({ reason: 'store_backlog' }, dropped);
    this.o.log.error(
      { dropped, maxPending: this.maxPending },
      `${dropped} oldest unstored readings dropped: the store has refused writes for too long ` +
        '(those of sources that acknowledge their input are kept: their senders hold them until stored)',
    );
  }

  /** Frees the consumed part of the queue once it is large, in one copy rather than one per batch. */
  private compact(): void {
    if (this.head === this.queue.length) {
      this.base += this.head;
      this.queue = [];
      this.head = 0;
    } else if (this.head > 65_536 && this.head * 2 > this.queue.length) {
      this.base += this.head;
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}

function markKey(source: string, key: string): string {
  return `${source}\u0000${key}`;
}

/**
 * Whether the store refused a write because of what was in it (a value SQLite cannot bind, a
 * constraint), which retrying cannot fix, rather than because of its own state (busy, full, I/O).
 */
function isContentError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof TypeError || e instanceof RangeError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^SQLITE_(CONSTRAINT|MISMATCH|RANGE|TOOBIG)/.test(code)) return true;
  }
  return false;
}

/**
 * The source's flags (its message broke a payload expectation) and the reading's own (it broke
 * a tag expectation), each rule once, the source's first. Never the source's array itself: a
 * source hands the same flags array to every reading of one message.
 */
function mergeFlags(
  given: readonly ExpectationRule[] | undefined,
  own: ExpectationRule[],
): ExpectationRule[] {
  // The checker's array is the reading's own, made for it: no copy needed.
  if (given === undefined || given.length === 0) return own;
  const out = [...given];
  for (const rule of own) if (!out.includes(rule)) out.push(rule);
  return out;
}
