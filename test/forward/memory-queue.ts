import { randomUUID } from 'node:crypto';
import type {
  ClassBacklog,
  DataClass,
  ForwardQueue,
  QueuedRow,
  UpstreamItem,
} from '../../runtime/forward/types.js';
import { makeResult } from '../store/fixtures.js';

/**
 * An in-memory ForwardQueue (arrays per class) for testing the forwarder's logic against a real
 * broker without SQLite; the store's own implementation has its own tests. It records every
 * cursor write and every read that returned rows, so that tests can check what was released
 * when, and which class was picked.
 */
export class MemoryQueue implements ForwardQueue {
  readonly storeId = randomUUID();
  readonly rows: Record<DataClass, QueuedRow[]> = { alerts: [], results: [], readings: [] };
  readonly acked: Record<DataClass, number> = { alerts: 0, results: 0, readings: 0 };
  readonly lastDeliveryAt: Record<DataClass, number | null> = { alerts: null, results: null, readings: null };
  /** Every markDelivered call, in order. */
  readonly marks: { cls: DataClass; seq: number; at: number }[] = [];
  /** Every nextRows call that returned rows: the class and the first seq. */
  readonly picks: { cls: DataClass; first: number }[] = [];
  /** Makes markDelivered throw while set (a full or read-only disk). */
  failMarks = false;
  /** Makes nextRows throw this error for a class while set (a damaged table or index). */
  readonly failReads: Partial<Record<DataClass, Error>> = {};
  /** nextRows calls that threw, per class. */
  readonly failedReads: Record<DataClass, number> = { alerts: 0, results: 0, readings: 0 };
  private readonly nextSeq: Record<DataClass, number> = { alerts: 1, results: 1, readings: 1 };

  /** Stores `n` rows of `cls`; returns their seqs. */
  add(cls: DataClass, n: number): number[] {
    const seqs: number[] = [];
    for (let i = 0; i < n; i++) {
      const seq = this.nextSeq[cls]++;
      const at = Date.now();
      this.rows[cls].push({ seq, at, item: this.item(cls, seq, at) });
      seqs.push(seq);
    }
    return seqs;
  }

  /** Removes the undelivered rows of `cls` with seq in [from, to] (a quota eviction): a gap. */
  evict(cls: DataClass, from: number, to: number): void {
    this.rows[cls] = this.rows[cls].filter((r) => r.seq < from || r.seq > to);
  }

  /** The highest seq ever given to a row of `cls`, evicted or not (0 before the first). */
  lastSeq(cls: DataClass): number {
    return this.nextSeq[cls] - 1;
  }

  nextRows(cls: DataClass, afterSeq: number, limit: number): QueuedRow[] {
    const failure = this.failReads[cls];
    if (failure) {
      this.failedReads[cls]++;
      throw failure;
    }
    const list = this.rows[cls];
    // Rows are appended in seq order: find the first one after the cursor by bisection.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.seq <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    const out = list.slice(lo, lo + limit);
    if (out.length > 0) this.picks.push({ cls, first: out[0]!.seq });
    return out;
  }

  markDelivered(cls: DataClass, seq: number, at: number): void {
    if (this.failMarks) throw new Error('disk I/O error');
    this.marks.push({ cls, seq, at });
    if (seq <= this.acked[cls]) return;
    this.acked[cls] = seq;
    this.lastDeliveryAt[cls] = at;
  }

  backlog(cls: DataClass): ClassBacklog {
    const waiting = this.rows[cls].filter((r) => r.seq > this.acked[cls]);
    return {
      rows: waiting.length,
      oldestSeq: waiting[0]?.seq ?? null,
      oldestAt: waiting[0]?.at ?? null,
      ackedSeq: this.acked[cls],
      lastDeliveryAt: this.lastDeliveryAt[cls],
    };
  }

  private item(cls: DataClass, seq: number, at: number): UpstreamItem {
    if (cls === 'readings') {
      return {
        id: `${this.storeId}/${seq}`,
        seq,
        source: 'press-plc',
        asset: 'press-1',
        tag: 'pressure',
        value: 200 + (seq % 50),
        quality: 'good',
        sourceTime: at,
        receivedAt: at,
      };
    }
    const { result, alert } = makeResult(seq, { alert: cls === 'alerts', producedAt: at });
    if (cls === 'alerts') return { ...alert!, id: `alert-${this.storeId}-${seq}`, seq };
    return { ...result, id: `result-${this.storeId}-${seq}`, seq };
  }
}
