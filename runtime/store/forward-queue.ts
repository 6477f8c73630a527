import type Database from 'better-sqlite3';
import {
  DATA_CLASSES,
  type ClassBacklog,
  type DataClass,
  type QueuedRow,
  type UpstreamItem,
} from '../forward/types.js';
import type { Alert } from '../pipeline/result.js';
import { rowToReading, type ReadingRow } from './readings.js';
import { rowToResult, type ResultRow } from './rows.js';

/** Where each class lives: its table, its seq column and the time its backlog age counts from. */
export const CLASS_TABLES: Record<DataClass, { table: DataClass; seq: string; at: string }> = {
  alerts: { table: 'alerts', seq: 'seq', at: 'created_at' },
  results: { table: 'results', seq: 'seq', at: 'produced_at' },
  readings: { table: 'readings', seq: 'id', at: 'received_at' },
};

/** A slice of a class's rows to evict together, in the order they are to go. */
export interface EvictionGroup {
  /** SQL condition selecting the rows. */
  where: string;
  /** Whether evicting them loses nothing still to be delivered (counted as delivered="true"). */
  delivered: boolean;
  /** Whether they lie above the upstream cursor (they count in the backlog). */
  aboveCursor: boolean;
}

interface ClassState {
  /** Rows in the table. */
  rows: number;
  /** Rows with seq above the cursor; kept exact only while the class is forwarded. */
  undelivered: number;
  acked: number;
  deliveredAt: number | null;
  forwarded: boolean;
}

/**
 * The forwarding side of the store (ForwardQueue): per class, the persisted upstream cursor and
 * the row counts in memory, so that backlog() — polled every second by the forwarder and the
 * status — never counts a large table. Counts are taken once at open (~10 ms per 1.5 M rows,
 * count over a seq range ~37 ns a row on the development VM) and then kept up to date by the
 * Store, which reports every insert and deletion it makes (added / removed): nothing else writes
 * the database.
 *
 * Delivery and deletion: a row of a forwarded class is delivered once its seq is at or below the
 * cursor (an alert also needs `published_at`: acknowledged by the local broker). Retention
 * deletes only delivered rows of forwarded classes, and quota eviction deletes the oldest rows
 * (lowest seqs) first, so the undelivered rows of a forwarded class always form one unbroken run
 * of seqs above the cursor.
 */
export class ForwardLedger {
  private readonly state: Record<DataClass, ClassState>;
  private readonly upsertCursor: Database.Statement;
  private readonly countRange: Record<DataClass, Database.Statement>;
  private readonly selectOldest: Record<DataClass, Database.Statement>;
  private readonly selectRows: Record<DataClass, Database.Statement>;
  private readonly selectTopSeq: Database.Statement;

  constructor(
    private readonly db: Database.Database,
    readonly storeId: string,
  ) {
    const cursors = new Map(
      (
        db.prepare('SELECT class, acked_seq, delivered_at FROM forward_cursors').all() as {
          class: string;
          acked_seq: number;
          delivered_at: number | null;
        }[]
      ).map((c) => [c.class, c]),
    );
    const byClass = <T>(fn: (cls: DataClass) => T): Record<DataClass, T> =>
      Object.fromEntries(DATA_CLASSES.map((c) => [c, fn(c)])) as Record<DataClass, T>;
    this.state = byClass((cls) => {
      const rows = (db.prepare(`SELECT count(*) AS n FROM ${cls}`).get() as { n: number }).n;
      const cursor = cursors.get(cls);
      return {
        rows,
        undelivered: 0,
        acked: cursor?.acked_seq ?? 0,
        deliveredAt: cursor?.delivered_at ?? null,
        forwarded: false,
      };
    });
    this.upsertCursor = db.prepare(`
      INSERT INTO forward_cursors (class, acked_seq, delivered_at) VALUES (?, ?, ?)
      ON CONFLICT (class) DO UPDATE SET acked_seq = excluded.acked_seq, delivered_at = excluded.delivered_at
      WHERE excluded.acked_seq >= forward_cursors.acked_seq`);
    this.countRange = byClass((cls) => {
      const { table, seq } = CLASS_TABLES[cls];
      return db.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${seq} > ? AND ${seq} <= ?`);
    });
    this.selectOldest = byClass((cls) => {
      const { table, seq, at } = CLASS_TABLES[cls];
      return db.prepare(
        `SELECT ${seq} AS seq, ${at} AS at FROM ${table} WHERE ${seq} > ? ORDER BY ${seq} LIMIT 1`,
      );
    });
    this.selectRows = {
      alerts: db.prepare(
        'SELECT seq, created_at AS at, payload FROM alerts WHERE seq > ? ORDER BY seq LIMIT ?',
      ),
      results: db.prepare('SELECT * FROM results WHERE seq > ? ORDER BY seq LIMIT ?'),
      readings: db.prepare('SELECT * FROM readings WHERE id > ? ORDER BY id LIMIT ?'),
    };
    // The highest seq ever given in a table (AUTOINCREMENT keeps it even when the rows are gone).
    this.selectTopSeq = db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?');
  }

  rows(cls: DataClass): number {
    return this.state[cls].rows;
  }

  isForwarded(cls: DataClass): boolean {
    return this.state[cls].forwarded;
  }

  /**
   * Which classes go upstream (undefined or empty: none). Counts the backlog of each class that
   * becomes forwarded: one pass over its rows above the cursor.
   */
  setForwarded(classes: readonly DataClass[] | undefined): void {
    for (const cls of DATA_CLASSES) {
      const st = this.state[cls];
      const forwarded = classes?.includes(cls) ?? false;
      if (forwarded && !st.forwarded) {
        st.undelivered =
          st.acked === 0
            ? st.rows
            : (this.countRange[cls].get(st.acked, Number.MAX_SAFE_INTEGER) as { n: number }).n;
      }
      st.forwarded = forwarded;
    }
  }

  /** `n` rows were committed (new rows always lie above the cursor). */
  added(cls: DataClass, n: number): void {
    this.state[cls].rows += n;
    this.state[cls].undelivered += n;
  }

  /** `n` rows were deleted, `aboveCursor` of them not yet delivered upstream. */
  removed(cls: DataClass, n: number, aboveCursor: number): void {
    const st = this.state[cls];
    st.rows = Math.max(0, st.rows - n);
    st.undelivered = Math.max(0, st.undelivered - aboveCursor);
  }

  /** SQL condition of the rows retention may delete: those with no delivery pending. */
  retainable(cls: DataClass): string {
    const st = this.state[cls];
    const conditions: string[] = [];
    if (st.forwarded) conditions.push(`${CLASS_TABLES[cls].seq} <= ${st.acked}`);
    if (cls === 'alerts') conditions.push('published_at IS NOT NULL');
    return conditions.length === 0 ? '1' : conditions.join(' AND ');
  }

  /**
   * The rows of a class in the order quota eviction takes them: delivered first, then the oldest
   * undelivered. A class that is not forwarded has nothing pending upstream; its alerts still
   * wait for the local broker until published.
   */
  evictionGroups(cls: DataClass): EvictionGroup[] {
    const st = this.state[cls];
    const seq = CLASS_TABLES[cls].seq;
    if (!st.forwarded) {
      return cls === 'alerts'
        ? [
            { where: 'published_at IS NOT NULL', delivered: true, aboveCursor: false },
            { where: 'published_at IS NULL', delivered: false, aboveCursor: false },
          ]
        : [{ where: '1', delivered: true, aboveCursor: false }];
    }
    const below = `${seq} <= ${st.acked}`;
    const above = { where: `${seq} > ${st.acked}`, delivered: false, aboveCursor: true };
    return cls === 'alerts'
      ? [
          { where: `${below} AND published_at IS NOT NULL`, delivered: true, aboveCursor: false },
          { where: `${below} AND published_at IS NULL`, delivered: false, aboveCursor: false },
          above,
        ]
      : [{ where: below, delivered: true, aboveCursor: false }, above];
  }

  nextRows(cls: DataClass, afterSeq: number, limit: number): QueuedRow[] {
    const rows = this.selectRows[cls].all(afterSeq, limit);
    switch (cls) {
      case 'alerts':
        return (rows as { seq: number; at: number; payload: string }[]).map((r) => ({
          seq: r.seq,
          at: r.at,
          item: { ...(JSON.parse(r.payload) as Alert), seq: r.seq },
        }));
      case 'results':
        return (rows as ResultRow[]).map((r) => ({
          seq: r.seq,
          at: r.produced_at,
          item: { ...rowToResult(r), seq: r.seq },
        }));
      case 'readings':
        return (rows as ReadingRow[]).map((r) => ({
          seq: r.id,
          at: r.received_at,
          item: { id: `${this.storeId}/${r.id}`, seq: r.id, ...rowToReading(r) } satisfies UpstreamItem,
        }));
    }
  }

  /**
   * Moves the cursor of `cls` up to `seq` (never down; never past the highest seq given, so that
   * rows stored later cannot be taken for delivered) in one small transaction.
   */
  markDelivered(cls: DataClass, seq: number, at: number): void {
    const st = this.state[cls];
    if (!Number.isSafeInteger(seq) || seq < st.acked) return;
    const top = (this.selectTopSeq.get(cls) as { seq: number } | undefined)?.seq ?? 0;
    const acked = Math.min(seq, top);
    if (acked < st.acked) return;
    const moved = this.db.transaction(() => {
      this.upsertCursor.run(cls, acked, at);
      return acked > st.acked ? (this.countRange[cls].get(st.acked, acked) as { n: number }).n : 0;
    })();
    st.acked = acked;
    st.deliveredAt = at;
    st.undelivered = Math.max(0, st.undelivered - moved);
  }

  /**
   * The backlog from memory plus one indexed lookup of the oldest undelivered row. A class that
   * is not forwarded has no backlog.
   */
  backlog(cls: DataClass): ClassBacklog {
    const st = this.state[cls];
    const base = { ackedSeq: st.acked, lastDeliveryAt: st.deliveredAt };
    if (!st.forwarded) return { rows: 0, oldestSeq: null, oldestAt: null, ...base };
    const oldest = this.selectOldest[cls].get(st.acked) as { seq: number; at: number } | undefined;
    if (oldest === undefined) {
      st.undelivered = 0;
      return { rows: 0, oldestSeq: null, oldestAt: null, ...base };
    }
    return { rows: Math.max(st.undelivered, 1), oldestSeq: oldest.seq, oldestAt: oldest.at, ...base };
  }
}
