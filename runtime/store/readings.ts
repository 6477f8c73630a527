import type Database from 'better-sqlite3';
import type { SourceIngestMark } from '../pipeline/source.js';
import type { ExpectationRule, Reading, ReadingQuality } from '../telemetry/reading.js';
import { deleteDeliveredBefore } from './retention.js';

/** A reading as stored, with the id the store gave it. */
export interface StoredReading extends Reading {
  id: number;
}

export interface ReadingFilter {
  source?: string;
  asset?: string;
  tag?: string;
  quality?: ReadingQuality;
  /** Only the readings of the message with this trace id. */
  traceId?: string;
  /** Only readings received at or after this time (ms since the epoch). */
  since?: number;
}

export interface ReadingRow {
  id: number;
  source: string;
  asset: string;
  tag: string;
  value: number | null;
  quality: ReadingQuality;
  status: string | null;
  source_time: number | null;
  server_time: number | null;
  received_at: number;
  /** NULL for readings stored before schema version 5. */
  trace_id: string | null;
  /** JSON array of ExpectationRule; NULL when the reading broke none. */
  flags: string | null;
}

/**
 * The readings table: batched inserts (one transaction per batch, a prepared statement per
 * row, which is how better-sqlite3 is fastest) with their ingest marks, counts and queries for
 * the API and tests, and retention. The Store owns the connection and wraps every call in its
 * error handling.
 */
export class ReadingTable {
  private readonly insert: Database.Statement;
  private readonly insertMark: Database.Statement;
  private readonly selectMark: Database.Statement;
  private readonly deleteMarkStmt: Database.Statement;
  private readonly insertMany: (
    batch: readonly Reading[],
    marks: readonly SourceIngestMark[],
    at: number,
  ) => void;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare(`
      INSERT INTO readings (source, asset, tag, value, quality, status, source_time, server_time, received_at,
        trace_id, flags)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // One row per (source, key): a slot reused by the sender replaces its previous mark.
    this.insertMark = db.prepare(
      'INSERT OR REPLACE INTO ingest_marks (source, key, hash, at) VALUES (?, ?, ?, ?)',
    );
    this.selectMark = db.prepare('SELECT 1 FROM ingest_marks WHERE source = ? AND key = ? AND hash = ?');
    this.deleteMarkStmt = db.prepare('DELETE FROM ingest_marks WHERE source = ? AND key = ?');
    this.insertMany = db.transaction(
      (batch: readonly Reading[], marks: readonly SourceIngestMark[], at: number) => {
        for (const r of batch) {
          this.insert.run(
            r.source,
            r.asset,
            r.tag,
            r.value,
            r.quality,
            r.status ?? null,
            r.sourceTime,
            r.serverTime ?? null,
            r.receivedAt,
            r.traceId ?? null,
            // Most readings break nothing: no JSON to build for them.
            r.flags !== undefined && r.flags.length > 0 ? JSON.stringify(r.flags) : null,
          );
        }
        for (const m of marks) this.insertMark.run(m.source, m.key, m.hash, at);
      },
    );
  }

  /**
   * Writes a batch and the ingest marks it answers for in one transaction: all of it or, on
   * error, none of it, so that a mark is recorded exactly when its readings are.
   */
  insertBatch(batch: readonly Reading[], marks: readonly SourceIngestMark[] = [], at = Date.now()): void {
    if (batch.length > 0 || marks.length > 0) this.insertMany(batch, marks, at);
  }

  /** Whether a batch with this mark (same source, key and content hash) is already stored. */
  hasMark(source: string, key: string, hash: string): boolean {
    return this.selectMark.get(source, key, hash) !== undefined;
  }

  /** Forgets the mark of a delivery slot whose earlier message is known to be acknowledged. */
  deleteMark(source: string, key: string): void {
    this.deleteMarkStmt.run(source, key);
  }

  count(filter: ReadingFilter = {}): number {
    const { where, params } = toWhere(filter);
    return (this.db.prepare(`SELECT count(*) AS n FROM readings${where}`).get(...params) as { n: number }).n;
  }

  /** Readings matching the filter in arrival order (oldest first), at most `limit`. */
  list(filter: ReadingFilter = {}, limit = 1000): StoredReading[] {
    const { where, params } = toWhere(filter);
    const rows = this.db
      .prepare(`SELECT * FROM readings${where} ORDER BY id ASC LIMIT ?`)
      .all(...params, limit) as ReadingRow[];
    return rows.map((row) => ({ id: row.id, ...rowToReading(row) }));
  }

  /**
   * Deletes at most `chunk` readings: first those received before `cutoff`, then the oldest
   * beyond `maxRows`. With `acked` (readings are forwarded upstream), only readings up to that id,
   * delivered, may go, and the walk is by id (see retention.ts). Bounded so that a pass never
   * blocks the event loop for long; `more` says whether another pass has work left.
   */
  applyRetention(
    cutoff: number,
    maxRows: number,
    chunk: number,
    acked?: number,
  ): { deleted: number; more: boolean } {
    let deleted: number;
    if (acked === undefined) {
      deleted = this.db
        .prepare(
          'DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE received_at < ? ORDER BY received_at LIMIT ?)',
        )
        .run(cutoff, chunk).changes;
      if (deleted === chunk) return { deleted, more: true };
    } else {
      const expired = deleteDeliveredBefore(this.db, 'readings', acked, cutoff, { max: chunk });
      deleted = expired.deleted;
      if (expired.more) return { deleted, more: true };
    }
    // Ids only grow, so every id above (newest id - maxRows) fits within the cap: deleting up to
    // that id keeps at most maxRows rows without counting them.
    const top = (this.db.prepare('SELECT max(id) AS top FROM readings').get() as { top: number | null }).top;
    if (top !== null && top > maxRows) {
      const bound = Math.min(top - maxRows, acked ?? Number.MAX_SAFE_INTEGER);
      const left = chunk - deleted;
      const n = this.db
        .prepare(
          'DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE id <= ? ORDER BY id LIMIT ?)',
        )
        .run(bound, left).changes;
      deleted += n;
      if (n === left) return { deleted, more: true };
    }
    return { deleted, more: false };
  }
}

function toWhere(filter: ReadingFilter): { where: string; params: unknown[] } {
  const conditions: string[] = [];
  const params: unknown[] = [];
  for (const key of ['source', 'asset', 'tag', 'quality'] as const) {
    if (filter[key] !== undefined) {
      conditions.push(`${key} = ?`);
      params.push(filter[key]);
    }
  }
  if (filter.traceId !== undefined) {
    conditions.push('trace_id = ?');
    params.push(filter.traceId);
  }
  if (filter.since !== undefined) {
    conditions.push('received_at >= ?');
    params.push(filter.since);
  }
  return { where: conditions.length ? ` WHERE ${conditions.join(' AND ')}` : '', params };
}

/** A stored row as the Reading it was, without the store's id. */
export function rowToReading(row: ReadingRow): Reading {
  return {
    source: row.source,
    asset: row.asset,
    tag: row.tag,
    value: row.value,
    quality: row.quality,
    status: row.status ?? undefined,
    sourceTime: row.source_time,
    serverTime: row.server_time,
    receivedAt: row.received_at,
    ...(row.trace_id !== null ? { traceId: row.trace_id } : {}),
    ...(row.flags !== null ? { flags: JSON.parse(row.flags) as ExpectationRule[] } : {}),
  };
}
