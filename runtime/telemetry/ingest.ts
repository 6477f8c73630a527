import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { InputRejectReason } from '../pipeline/source.js';
import type { Reading } from './reading.js';
import type { ReadingGate } from './gate.js';

/** Where accepted readings go: the store (a test may pass another sink). */
export interface ReadingSink {
  saveReadings(batch: readonly Reading[]): void;
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
   * Accepted readings kept in memory while the store refuses writes (disk full, locked file);
   * beyond it the oldest are dropped and counted. Generous: a reading is ~150 bytes.
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
/** Distinct source/asset/tag series whose latest value is kept for the status views. */
const MAX_LATEST = 20_000;

/**
 * The runtime's side of telemetry: checks every reading a source hands over (ReadingGate),
 * counts it, and writes the accepted ones to the store in batches: one transaction per batch
 * is what makes 10k readings/s cheap in SQLite. A batch the store refuses for a passing reason
 * (a full disk, a locked file) stays queued and is retried; one it refuses for its content is
 * written reading by reading, and only the readings it cannot take are dropped and counted.
 * Draining a backlog is spread over turns of the event loop so that frames keep their budget.
 */
export class TelemetryIngest {
  /** Accepted, not yet stored: `queue[head..]`. A head index keeps dequeuing O(1). */
  private queue: Reading[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private drainHandle: NodeJS.Immediate | undefined;
  private readonly stats = new Map<string, SourceTelemetryStats>();
  private readonly latestBySeries = new Map<string, Reading>();
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
      // A source that outlived its stop deadline: nothing can be stored any more.
      if (batch.length > 0) this.o.metrics.readingsDropped.inc({ reason: 'shutdown' }, batch.length);
      return;
    }
    const now = Date.now();
    const stats = this.statsFor(source);
    // Counted per batch, not per reading: a labelled counter increment costs more than the check.
    const counts = { good: 0, uncertain: 0, bad: 0 };
    const accepted: Reading[] | undefined = this.o.onAccepted ? [] : undefined;
    for (const r of batch) {
      // The source name is the runtime's to give, not the adapter's.
      const reading: Reading = r.source === source ? r : { ...r, source };
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
      this.queue.push(reading);
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
    this.trimQueue();
    this.o.metrics.readingsPending.set(this.pendingCount);
    // While the store is failing, the retry timer decides when to try again: not every message.
    if (!this.storeFailing && this.pendingCount >= this.o.batchSize) this.flush();
    else this.schedule(this.storeFailing ? this.retryMs : this.o.flushIntervalMs);
  }

  /** Counts and logs an input refused before or while becoming a reading. Never throws. */
  refuse(source: string, reason: InputRejectReason, message: string, origin: string, log: Logger): void {
    const stats = this.statsFor(source);
    stats.rejected[reason] = (stats.rejected[reason] ?? 0) + 1;
    this.o.metrics.inputErrors.inc({ source, reason });
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

  /** Stops taking readings and writes everything still queued, synchronously. */
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
  }

  /** Writes the batch at the head of the queue; false when the store refused it for now. */
  private writeNextBatch(): boolean {
    const batch = this.queue.slice(this.head, this.head + this.o.batchSize);
    const end = this.o.metrics.readingsWriteSeconds.startTimer();
    try {
      this.o.sink.saveReadings(batch);
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
    this.head += batch.length;
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
      try {
        this.o.sink.saveReadings([r]);
        stored += 1;
      } catch (err) {
        if (!isContentError(err)) {
          this.head += stored;
          this.o.metrics.readingsStored.inc(stored);
          this.o.metrics.readingsStoreErrors.inc();
          return false;
        }
        this.o.metrics.readingsDropped.inc({ reason: 'store_rejected' });
        this.o.log.error(
          { source: r.source, asset: r.asset, tag: r.tag, err: errorMessage(err) },
          `a reading of ${r.source} ${String(r.asset)}/${String(r.tag)} was refused by the store and dropped: ${errorMessage(err)}`,
        );
      }
      this.head += 1;
    }
    this.o.metrics.readingsStored.inc(stored);
    return true;
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

  private trimQueue(): void {
    const excess = this.pendingCount - this.maxPending;
    if (excess <= 0) return;
    this.head += excess;
    this.compact();
    this.o.metrics.readingsDropped.inc({ reason: 'store_backlog' }, excess);
    this.o.log.error(
      { dropped: excess, maxPending: this.maxPending },
      `${excess} oldest unstored readings dropped: the store has refused writes for too long`,
    );
  }

  /** Frees the consumed part of the queue once it is large, in one copy rather than one per batch. */
  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 65_536 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
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
