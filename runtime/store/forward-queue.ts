import type Database from 'better-sqlite3';
import {
  DATA_CLASSES,
  type ClassBacklog,
  type DataClass,
  type QueuedRow,
  type UpstreamItem,
} from '../forward/types.js';
import { errorMessage } from '../errors.js';
import type { Alert } from '../pipeline/result.js';
import { rowToReading, type ReadingRow } from './readings.js';
import { rowToResult, type ResultRow } from './rows.js';

/** Where each class lives: its table, its seq column and the time its backlog age counts from. */
export const CLASS_TABLES: Record<DataClass, { table: DataClass; seq: string; at: string }> = {
  alerts: { table: 'alerts', seq: 'seq', at: 'created_at' },
  results: { table: 'results', seq: 'seq', at: 'produced_at' },
  readings: { table: 'readings', seq: 'id', at: 'received_at' },
};

type RawRow = { seq: number; at: number; payload: string } | ResultRow | ReadingRow;

/** A slice of a class's rows to evict together, in the order they are to go. */
export interface EvictionGroup {
  /** SQL condition selecting the rows. */
  where: string;
  /** Whether evicting them loses nothing still to be delivered (counted as delivered="true"). */
  delivered: boolean;
  /** Whether they lie above the upstream cursor (they count in the backlog). */
  aboveCursor: boolean;
}

/** A row nextRows could not turn into an item: deleted, so that forwarding can go on. */
export interface UnreadableRow {
  seq: number;
  /** Whether it lay above the cursor (it was still to be delivered). */
  aboveCursor: boolean;
  error: string;
}

interface ClassState {
  /** Rows in the table. */
  rows: number;
  /** Rows committed since open: the quota keeper derives the write rate from it. */
  inserted: number;
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
 * (lowest seqs) first, so the undelivered rows of a forwarded class always form one run of seqs
 * above the cursor (with gaps only where a row that could not be read was deleted).
 */
export class ForwardLedger {
  private readonly state: Record<DataClass, ClassState>;
  private readonly upsertCursor: Database.Statement;
  private readonly countRange: Record<DataClass, Database.Statement>;
  private readonly selectOldest: Record<DataClass, Database.Statement>;
  private readonly selectRows: Record<DataClass, Database.Statement>;
  private readonly selectTopSeq: Database.Statement;
  private readonly deleteRow: Record<DataClass, Database.Statement>;

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
        inserted: 0,
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
    this.deleteRow = byClass((cls) => {
      const { table, seq } = CLASS_TABLES[cls];
      return db.prepare(`DELETE FROM ${table} WHERE ${seq} = ?`);
    });
    // The highest seq ever given in a table (AUTOINCREMENT keeps it even when the rows are gone).
    this.selectTopSeq = db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?');
  }

  rows(cls: DataClass): number {
    return this.state[cls].rows;
  }

  /** Rows of `cls` committed since the store was opened. */
  inserted(cls: DataClass): number {
    return this.state[cls].inserted;
  }

  /** The persisted cursor of `cls`: every row up to it was acknowledged upstream. */
  acked(cls: DataClass): number {
    return this.state[cls].acked;
  }

  /** The highest seq ever given to a row of `cls` (AUTOINCREMENT keeps it when the rows are gone). */
  lastSeq(cls: DataClass): number {
    return (this.selectTopSeq.get(cls) as { seq: number } | undefined)?.seq ?? 0;
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
    this.state[cls].inserted += n;
    this.state[cls].undelivered += n;
  }

  /** `n` rows were deleted, `aboveCursor` of them not yet delivered upstream. */
  removed(cls: DataClass, n: number, aboveCursor: number): void {
    const st = this.state[cls];
    st.rows = Math.max(0, st.rows - n);
    st.undelivered = Math.max(0, st.undelivered - aboveCursor);
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

  /**
   * Rows of `cls` with seq > afterSeq, oldest first, at most `limit`. A row that cannot be turned
   * into an item (its JSON does not parse) would otherwise stop its class at that seq for ever: it
   * is deleted and reported in `unreadable`, and the rows after it are read in its place.
   */
  nextRows(
    cls: DataClass,
    afterSeq: number,
    limit: number,
  ): { rows: QueuedRow[]; unreadable: UnreadableRow[] } {
    const rows: QueuedRow[] = [];
    const unreadable: UnreadableRow[] = [];
    let after = afterSeq;
    while (rows.length < limit) {
      const want = limit - rows.length;
      const raw = this.selectRows[cls].all(after, want) as RawRow[];
      for (const r of raw) {
        const seq = cls === 'readings' ? (r as ReadingRow).id : (r as { seq: number }).seq;
        after = seq;
        try {
          rows.push(this.toQueued(cls, r));
        } catch (err) {
          const n = this.deleteRow[cls].run(seq).changes;
          const aboveCursor = seq > this.state[cls].acked;
          this.removed(cls, n, aboveCursor ? n : 0);
          unreadable.push({ seq, aboveCursor, error: errorMessage(err) });
        }
      }
      if (raw.length < want) break;
    }
    return { rows, unreadable };
  }

  private toQueued(cls: DataClass, r: RawRow): QueuedRow {
    switch (cls) {
      case 'alerts': {
        const a = r as { seq: number; at: number; payload: string };
        const alert = JSON.parse(a.payload) as unknown;
        if (typeof alert !== 'object' || alert === null || typeof (alert as Alert).id !== 'string') {
          throw new Error('its payload is not an alert');
        }
        return { seq: a.seq, at: a.at, item: { ...(alert as Alert), seq: a.seq } };
      }
      case 'results': {
        const row = r as ResultRow;
        return { seq: row.seq, at: row.produced_at, item: { ...rowToResult(row), seq: row.seq } };
      }
      case 'readings': {
        const row = r as ReadingRow;
        return {
          seq: row.id,
          at: row.received_at,
          item: { id: `${this.storeId}/${row.id}`, seq: row.id, ...rowToReading(row) } satisfies UpstreamItem,
        };
      }
    }
  }

  /**
   * Moves the cursor of `cls` up to `seq` (never down; never past the highest seq given, so that
   * rows stored later cannot be taken for delivered) in one small transaction.
   */
  markDelivered(cls: DataClass, seq: number, at: number): void {
    const st = this.state[cls];
    if (!Number.isSafeInteger(seq) || seq < st.acked) return;
    const acked = Math.min(seq, this.lastSeq(cls));
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
