import type Database from 'better-sqlite3';
import type { DataClass } from '../forward/types.js';
import { CLASS_TABLES } from './forward-queue.js';

/** Rows of a window walked at once: a few ms of primary-key reads. */
const WINDOW_ROWS = 10_000;

/**
 * Time-based retention of a class forwarded upstream: deletes its rows older than `cutoff` among
 * those the upstream broker acknowledged (seq up to `acked`; with `published`, only those the
 * local broker acknowledged too: alerts), at most `max`.
 *
 * It walks the rows by seq through the primary key, a window at a time, rather than by the time
 * index: during an outage the old rows are the undelivered ones, above the cursor, and a walk of
 * the time index would step over every one of them at each pass (~80 ms per 2 M readings). Seqs
 * follow arrival, so the walk stops at the first window that ends inside the retention period:
 * it reads at most the rows due plus one window. A row stamped out of order (a clock step) goes
 * once the rows before it have.
 */
export function deleteDeliveredBefore(
  db: Database.Database,
  cls: DataClass,
  acked: number,
  cutoff: number,
  options: { max?: number; published?: boolean } = {},
): { deleted: number; more: boolean } {
  const { table, seq, at } = CLASS_TABLES[cls];
  const max = options.max ?? Number.POSITIVE_INFINITY;
  const published = options.published === true;
  const window =
    `SELECT ${seq}, ${at}${published ? ', published_at' : ''} FROM ${table} ` +
    `WHERE ${seq} > ? AND ${seq} <= ? ORDER BY ${seq} LIMIT ?`;
  const windowEnd = db.prepare(
    `SELECT ${seq} AS seq, ${at} AS at FROM ${table} WHERE ${seq} = (SELECT max(${seq}) FROM (${window}))`,
  );
  const del = db.prepare(
    `DELETE FROM ${table} WHERE ${seq} IN (SELECT ${seq} FROM (${window}) WHERE ${at} < ?${published ? ' AND published_at IS NOT NULL' : ''})`,
  );
  let deleted = 0;
  let after = 0;
  while (deleted < max) {
    const size = Math.min(WINDOW_ROWS, max - deleted);
    const end = windowEnd.get(after, acked, size) as { seq: number; at: number } | undefined;
    if (end === undefined) return { deleted, more: false };
    deleted += del.run(after, acked, size, cutoff).changes;
    if (end.at >= cutoff) return { deleted, more: false };
    after = end.seq;
  }
  return { deleted, more: true };
}
