import type Database from 'better-sqlite3';
import type { Reading, ReadingQuality } from '../telemetry/reading.js';

/** A reading as stored, with the id the store gave it. */
export interface StoredReading extends Reading {
  id: number;
}

export interface ReadingFilter {
  source?: string;
  asset?: string;
  tag?: string;
  quality?: ReadingQuality;
  /** Only readings received at or after this time (ms since the epoch). */
  since?: number;
}

interface ReadingRow {
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
}

/**
 * The readings table: batched inserts (one transaction per batch, a prepared statement per
 * row, which is how better-sqlite3 is fastest), counts and queries for the API and tests, and
 * retention. The Store owns the connection and wraps every call in its error handling.
 */
export class ReadingTable {
  private readonly insert: Database.Statement;
  private readonly insertMany: (batch: readonly Reading[]) => void;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare(`
      INSERT INTO readings (source, asset, tag, value, quality, status, source_time, server_time, received_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertMany = db.transaction((batch: readonly Reading[]) => {
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
        );
      }
    });
  }

  /** Writes a batch in one transaction: all of it or, on error, none of it. */
  insertBatch(batch: readonly Reading[]): void {
    if (batch.length > 0) this.insertMany(batch);
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
    return rows.map(toReading);
  }

  /** The newest reading per asset and tag (for the status page and API). */
  latest(limit = 500): StoredReading[] {
    const rows = this.db
      .prepare(
        `SELECT r.* FROM readings r
         JOIN (SELECT max(id) AS id FROM readings GROUP BY source, asset, tag) m ON m.id = r.id
         ORDER BY r.asset, r.tag LIMIT ?`,
      )
      .all(limit) as ReadingRow[];
    return rows.map(toReading);
  }

  /** Deletes readings received before `cutoff`, then the oldest beyond `maxRows`; returns how many went. */
  applyRetention(cutoff: number, maxRows: number): number {
    let deleted = this.db.prepare('DELETE FROM readings WHERE received_at < ?').run(cutoff).changes;
    const row = this.db.prepare('SELECT count(*) AS n FROM readings').get() as { n: number };
    const excess = row.n - maxRows;
    if (excess > 0) {
      deleted += this.db
        .prepare('DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY id ASC LIMIT ?)')
        .run(excess).changes;
    }
    return deleted;
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
  if (filter.since !== undefined) {
    conditions.push('received_at >= ?');
    params.push(filter.since);
  }
  return { where: conditions.length ? ` WHERE ${conditions.join(' AND ')}` : '', params };
}

function toReading(row: ReadingRow): StoredReading {
  return {
    id: row.id,
    source: row.source,
    asset: row.asset,
    tag: row.tag,
    value: row.value,
    quality: row.quality,
    status: row.status ?? undefined,
    sourceTime: row.source_time,
    serverTime: row.server_time,
    receivedAt: row.received_at,
  };
}
