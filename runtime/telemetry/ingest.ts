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
}

export interface SourceTelemetryStats {
  readings: { good: number; uncertain: number; bad: number };
  rejected: Partial<Record<InputRejectReason, number>>;
  reconnects: number;
  /** Wall-clock ms of the last accepted reading; null before the first. */
  lastReadingAt: number | null;
}

/**
 * The runtime's side of telemetry: checks every reading a source hands over (ReadingGate),
 * counts it, and writes the accepted ones to the store in batches: one transaction per batch
 * is what makes 10k readings/s cheap in SQLite. A failed write keeps the batch for the next
 * flush, so a transient store error loses nothing.
 */
export class TelemetryIngest {
  private pending: Reading[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly stats = new Map<string, SourceTelemetryStats>();
  private readonly maxPending: number;
  private storeFailing = false;

  constructor(private readonly o: TelemetryIngestOptions) {
    this.maxPending = o.maxPending ?? 1_000_000;
  }

  statsFor(source: string): SourceTelemetryStats {
    let s = this.stats.get(source);
    if (!s) {
      s = { readings: { good: 0, uncertain: 0, bad: 0 }, rejected: {}, reconnects: 0, lastReadingAt: null };
      this.stats.set(source, s);
    }
    return s;
  }

  /** Checks and queues a batch from one source. Never throws. */
  accept(source: string, batch: readonly Reading[], gate: ReadingGate, log: Logger): void {
    const now = Date.now();
    const stats = this.statsFor(source);
    // Counted per batch, not per reading: a labelled counter increment costs more than the check.
    const counts = { good: 0, uncertain: 0, bad: 0 };
    for (const r of batch) {
      // The source name is the runtime's to give, not the adapter's.
      const reading: Reading = r.source === source ? r : { ...r, source };
      const refusal = gate.check(reading, now);
      if (refusal) {
        this.refuse(source, refusal.reason, refusal.message, `${reading.asset}/${reading.tag}`, log);
        continue;
      }
      this.pending.push(reading);
      counts[reading.quality] += 1;
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
    this.trimPending();
    this.o.metrics.readingsPending.set(this.pending.length);
    if (this.pending.length >= this.o.batchSize) this.flush();
    else this.schedule();
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

  /** Writes what is pending, in batches. Never throws: a failed batch stays pending. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, this.o.batchSize);
      const end = this.o.metrics.readingsWriteSeconds.startTimer();
      try {
        this.o.sink.saveReadings(batch);
      } catch (err) {
        end();
        this.o.metrics.readingsStoreErrors.inc();
        if (!this.storeFailing) {
          this.storeFailing = true;
          this.o.log.error(
            { err: errorMessage(err), pending: this.pending.length },
            `readings could not be stored; kept in memory and retried: ${errorMessage(err)}`,
          );
        }
        this.schedule(1_000);
        break;
      }
      end();
      if (this.storeFailing) {
        this.storeFailing = false;
        this.o.log.info({ pending: this.pending.length }, 'readings are being stored again');
      }
      this.pending = this.pending.length === batch.length ? [] : this.pending.slice(batch.length);
      this.o.metrics.readingsStored.inc(batch.length);
    }
    this.o.metrics.readingsPending.set(this.pending.length);
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** Flushes what is left and stops the timer. */
  close(): void {
    this.flush();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delay = this.o.flushIntervalMs): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, delay);
  }

  private trimPending(): void {
    const excess = this.pending.length - this.maxPending;
    if (excess <= 0) return;
    this.pending.splice(0, excess);
    this.o.metrics.readingsDropped.inc({ reason: 'store_backlog' }, excess);
    this.o.log.error(
      { dropped: excess, maxPending: this.maxPending },
      `${excess} oldest unstored readings dropped: the store has refused writes for too long`,
    );
  }
}
