import { statfsSync } from 'node:fs';
import type Database from 'better-sqlite3';
import type { StoreConfig } from '../config/schema.js';
import { DATA_CLASSES, type DataClass } from '../forward/types.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import { CLASS_TABLES, type ForwardLedger, type UnreadableRow } from './forward-queue.js';

/**
 * Disk quotas per class of data and the free-disk floor, enforced by evicting the oldest rows.
 *
 * Bytes per class are what SQLite's dbstat accounts to the class's table and indexes. Reading
 * dbstat walks every page (80-115 ms per ~110 MB on the development VM with the file cached, and
 * a cold read of the whole file on a gateway's eMMC), so it is not run at every check: the bytes
 * are estimated from the rows, kept in memory by the ledger, and bytes per row calibrated from
 * dbstat at open, every few minutes, and when a class has doubled since. Calibration reads at
 * most SAMPLE_PAGES pages of each b-tree (~4-7 ms each; ~5-12 ms for the whole store); a larger
 * b-tree is extrapolated from that sample, which was within 0.3 % of the full walk on a
 * 1.5 M-reading table. A reading costs 73-87 bytes (depending on its names' lengths; of which
 * ~17 in the received_at index) and ~39 more with its trace id (schema 5: a UUIDv7 as text; 110
 * bytes in bench/telemetry.ts's rows), a result ~330 and an alert ~470 with the test fixtures' rows.
 *
 * The free-disk floor. Below it (free disk space under `minFreeDiskMiB`) the store stops
 * growing; it does not try to give the space back. Deleting rows does not shrink the file (SQLite
 * keeps the freed pages for new rows), and what fills the disk may be other files, or a floor
 * larger than the whole store: evicting until the gap closes would empty the store and still not
 * close it. So each check keeps room inside the file for about the rows the next interval will
 * write: a reserve of twice the bytes written since the previous check, scaled to
 * `quotaCheckSeconds` (at least MIN_RESERVE_PAGES pages). When the file's free pages fall short
 * of it, the oldest rows are evicted to make that room, and never more than the reserve per
 * interval: delivered readings first, then delivered results, then the oldest undelivered
 * readings, then undelivered results (nothing is lost while delivered rows can go). Alerts are
 * never evicted for the disk; they go only by their own quota. A check that finds enough free
 * pages evicts nothing, and in a steady state each check evicts about what was written since the
 * previous one while the file keeps its size. The first check after start has no write rate yet
 * and keeps the minimum reserve, so the file can grow by one interval's writes then.
 */

export type EvictionReason = 'quota' | 'disk' | 'unreadable';

export interface ClassUsage {
  rows: number;
  /** Estimated bytes of its table and indexes. */
  bytes: number;
  quotaBytes: number;
}

export interface Eviction {
  class: DataClass;
  /** false: the rows were still waiting for delivery (upstream, or alerts for the local broker). */
  delivered: boolean;
  reason: EvictionReason;
  rows: number;
}

export interface QuotaOutcome {
  classes: Record<DataClass, ClassUsage>;
  evicted: Eviction[];
  /** More rows must go than one call evicts: call again soon. */
  more: boolean;
}

export interface ClassStats extends ClassUsage {
  /** Rows evicted since the store was opened. */
  evicted: { delivered: number; undelivered: number };
}

export interface QuotaOptions {
  metrics?: Metrics | undefined;
  /** Free bytes for this user on the filesystem holding `dir`; tests replace it. */
  freeDiskBytes?: ((dir: string) => number) | undefined;
  /** Rows evicted at most per enforce() call (default 20 000: some tens of ms). */
  evictBatchRows?: number | undefined;
}

const MIB = 1024 * 1024;
const SAMPLE_PAGES = 1000;
const CALIBRATE_EVERY_MS = 5 * 60_000;
const DEFAULT_EVICT_BATCH = 20_000;
/** Quotas: the order in which classes are checked. */
const QUOTA_ORDER: readonly DataClass[] = ['readings', 'results', 'alerts'];
/** Disk floor: the order in which rows make room; alerts go only by their quota. */
const FLOOR_ORDER: readonly { cls: DataClass; delivered: boolean }[] = [
  { cls: 'readings', delivered: true },
  { cls: 'results', delivered: true },
  { cls: 'readings', delivered: false },
  { cls: 'results', delivered: false },
];
/** The floor's smallest reserve, in pages: room enough that eviction frees whole pages. */
const MIN_RESERVE_PAGES = 16;
/** Bytes per row before a class has rows to measure (measured on typical rows). */
const SEED_BYTES_PER_ROW: Record<DataClass, number> = { alerts: 600, results: 500, readings: 125 };
/** Below this many rows, fixed costs (a page per b-tree) would swamp a measured bytes-per-row. */
const MIN_ROWS_FOR_RATE = 1000;

/** A class's bytes as last measured, and what a row more or less adds or takes. */
interface Calibration {
  rows: number;
  bytes: number;
  perRow: number;
}

interface BTree {
  name: string;
  isIndex: boolean;
  /** The WHERE clause of a partial index, whose entries are fewer than the rows. */
  partial: string | undefined;
}

function freeDiskBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

export class QuotaKeeper {
  private readonly trees: Record<DataClass, BTree[]>;
  private readonly calibration = Object.fromEntries(
    DATA_CLASSES.map((c) => [c, { rows: 0, bytes: 0, perRow: SEED_BYTES_PER_ROW[c] }]),
  ) as Record<DataClass, Calibration>;
  private readonly evictedTotals: Record<DataClass, { delivered: number; undelivered: number }> = {
    alerts: { delivered: 0, undelivered: 0 },
    results: { delivered: 0, undelivered: 0 },
    readings: { delivered: 0, undelivered: 0 },
  };
  private readonly sample: Database.Statement;
  private readonly freeDisk: (dir: string) => number;
  private readonly batch: number;
  private calibratedAt = 0;
  private readonly pageSize: number;
  /** The floor's interval: when it began and the rows committed by then. */
  private interval: { at: number; inserted: Record<DataClass, number> } | undefined;
  /** Bytes of free pages the floor keeps in the file, and bytes evicted for it this interval. */
  private reserve: number;
  private evictedForFloor = 0;
  private belowFloor = false;

  constructor(
    private readonly db: Database.Database,
    private readonly ledger: ForwardLedger,
    private readonly cfg: StoreConfig,
    private readonly log: Logger,
    private readonly dir: string,
    private readonly options: QuotaOptions = {},
  ) {
    const schema = db
      .prepare("SELECT name, type, tbl_name, sql FROM sqlite_schema WHERE type IN ('table', 'index')")
      .all() as { name: string; type: string; tbl_name: string; sql: string | null }[];
    this.trees = Object.fromEntries(
      DATA_CLASSES.map((cls) => [
        cls,
        schema
          .filter((s) => s.tbl_name === CLASS_TABLES[cls].table)
          .map((s) => ({
            name: s.name,
            isIndex: s.type === 'index',
            partial: s.type === 'index' ? /\bWHERE\b([\s\S]+)$/i.exec(s.sql ?? '')?.[1] : undefined,
          })),
      ]),
    ) as Record<DataClass, BTree[]>;
    // In path order dbstat yields a b-tree's pages root first; LIMIT stops the walk early.
    this.sample = db.prepare(`
      SELECT coalesce(sum(pgsize), 0) AS bytes, count(*) AS pages,
        coalesce(sum(CASE WHEN pagetype = 'leaf' THEN ncell ELSE 0 END), 0) AS leafCells,
        coalesce(sum(ncell), 0) AS cells
      FROM (SELECT pgsize, ncell, pagetype FROM dbstat WHERE name = ? LIMIT ?)`);
    this.freeDisk = options.freeDiskBytes ?? freeDiskBytes;
    this.batch = options.evictBatchRows ?? DEFAULT_EVICT_BATCH;
    this.pageSize = Number(db.pragma('page_size', { simple: true }));
    this.reserve = MIN_RESERVE_PAGES * this.pageSize;
    this.calibrate(Date.now());
    this.publishUsage();
  }

  usage(cls: DataClass): ClassUsage {
    const rows = this.ledger.rows(cls);
    return {
      rows,
      bytes: Math.round(this.estimate(cls, rows)),
      quotaBytes: Math.round(this.cfg.quotaMiB[cls] * MIB),
    };
  }

  classStats(): Record<DataClass, ClassStats> {
    return Object.fromEntries(
      DATA_CLASSES.map((cls) => [cls, { ...this.usage(cls), evicted: { ...this.evictedTotals[cls] } }]),
    ) as Record<DataClass, ClassStats>;
  }

  /**
   * Evicts what is over a class's quota, then what the disk floor needs, at most `evictBatchRows`
   * rows in all; each DELETE commits on its own so that the counts in memory follow every one.
   */
  enforce(now: number): QuotaOutcome {
    if (now - this.calibratedAt >= CALIBRATE_EVERY_MS || this.grewALot()) this.calibrate(now);
    const evicted: Eviction[] = [];
    let budget = this.batch;
    let more = false;

    for (const cls of QUOTA_ORDER) {
      const over = this.estimate(cls, this.ledger.rows(cls)) - this.cfg.quotaMiB[cls] * MIB;
      if (over <= 0) continue;
      const excess = Math.min(Math.ceil(over / this.calibration[cls].perRow), this.ledger.rows(cls));
      if (excess > budget) more = true;
      budget -= this.evict(cls, Math.min(excess, budget), 'quota', evicted);
      if (budget <= 0) break;
    }

    this.trackWrites(now);
    if (budget > 0 && this.cfg.minFreeDiskMiB > 0) more = this.keepFloor(budget, evicted) || more;

    if (evicted.length > 0) this.report(evicted);
    this.publishUsage();
    const classes = Object.fromEntries(DATA_CLASSES.map((c) => [c, this.usage(c)])) as Record<
      DataClass,
      ClassUsage
    >;
    return { classes, evicted, more };
  }

  /** Counts and logs a row that nextRows deleted because it could not be read. */
  unreadable(cls: DataClass, row: UnreadableRow): void {
    this.evictedTotals[cls].undelivered += 1;
    this.options.metrics?.storeEvicted.inc({ class: cls, delivered: 'false', reason: 'unreadable' });
    this.log.error(
      { class: cls, seq: row.seq, err: row.error },
      `store ${cls} row seq ${row.seq} cannot be read (${row.error}); it was deleted and will not be ` +
        'delivered upstream, and forwarding goes on with the next rows. If this repeats, the database ' +
        'file may be damaged: stop Vigil and check a copy of it with `sqlite3 <file> "PRAGMA integrity_check"`.',
    );
  }

  /**
   * Below the floor, evicts what keeps `reserve` bytes of free pages in the file, within what is
   * left of this interval's reserve and of `budget` rows (see the comment at the top). Returns
   * whether more is due than the budget allowed.
   */
  private keepFloor(budget: number, out: Eviction[]): boolean {
    const floor = this.cfg.minFreeDiskMiB * MIB;
    const free = this.freeDisk(this.dir);
    this.noteFloor(free < floor, free);
    if (free >= floor) return false;
    let room = Math.min(this.reserve - this.freePagesBytes(), this.reserve - this.evictedForFloor);
    let left = budget;
    for (const { cls, delivered } of FLOOR_ORDER) {
      if (room <= 0 || left <= 0) break;
      const perRow = this.calibration[cls].perRow;
      const n = this.evict(cls, Math.min(Math.ceil(room / perRow), left), 'disk', out, delivered);
      left -= n;
      room -= n * perRow;
      this.evictedForFloor += n * perRow;
    }
    return room > 0 && left <= 0;
  }

  /**
   * Starts a new floor interval once at least half of quotaCheckSeconds has passed since the last
   * one began (an earlier call continues the same check), and sets the reserve from the bytes
   * written during it.
   */
  private trackWrites(now: number): void {
    const inserted = Object.fromEntries(DATA_CLASSES.map((c) => [c, this.ledger.inserted(c)])) as Record<
      DataClass,
      number
    >;
    const last = this.interval;
    const period = this.cfg.quotaCheckSeconds * 1000;
    if (last !== undefined && now >= last.at) {
      const elapsed = now - last.at;
      if (elapsed < period / 2) return;
      const written = DATA_CLASSES.reduce(
        (sum, c) => sum + (inserted[c] - last.inserted[c]) * this.calibration[c].perRow,
        0,
      );
      this.reserve = Math.max(MIN_RESERVE_PAGES * this.pageSize, (2 * written * period) / elapsed);
    }
    this.interval = { at: now, inserted };
    this.evictedForFloor = 0;
  }

  /** Says once when the store crosses the floor, either way. */
  private noteFloor(below: boolean, free: number): void {
    if (below === this.belowFloor) return;
    this.belowFloor = below;
    const fields = {
      dir: this.dir,
      freeMiB: Math.round(free / MIB),
      minFreeDiskMiB: this.cfg.minFreeDiskMiB,
    };
    if (below) {
      this.log.warn(
        fields,
        `free disk space for the store in ${this.dir} (${fields.freeMiB} MiB) is below store.minFreeDiskMiB ` +
          `(${this.cfg.minFreeDiskMiB} MiB): the store stops growing, and new rows now take the place of the ` +
          'oldest readings and results (alerts are kept; they go only by store.quotaMiB.alerts). Free disk ' +
          'space on that filesystem or lower store.minFreeDiskMiB.',
      );
    } else {
      this.log.info(
        fields,
        `free disk space for the store in ${this.dir} is back above store.minFreeDiskMiB`,
      );
    }
  }

  /**
   * Deletes up to `want` of the oldest rows of `cls`, delivered ones first (with `delivered`, only
   * rows of that kind). Returns how many.
   */
  private evict(
    cls: DataClass,
    want: number,
    reason: EvictionReason,
    out: Eviction[],
    delivered?: boolean,
  ): number {
    const { table, seq } = CLASS_TABLES[cls];
    let done = 0;
    for (const group of this.ledger.evictionGroups(cls)) {
      if (done >= want) break;
      if (delivered !== undefined && group.delivered !== delivered) continue;
      const n = this.db
        .prepare(
          `DELETE FROM ${table} WHERE ${seq} IN (SELECT ${seq} FROM ${table} WHERE ${group.where} ORDER BY ${seq} LIMIT ?)`,
        )
        .run(want - done).changes;
      if (n === 0) continue;
      this.ledger.removed(cls, n, group.aboveCursor ? n : 0);
      done += n;
      const totals = this.evictedTotals[cls];
      if (group.delivered) totals.delivered += n;
      else totals.undelivered += n;
      this.options.metrics?.storeEvicted.inc({ class: cls, delivered: String(group.delivered), reason }, n);
      const same = out.find((e) => e.class === cls && e.delivered === group.delivered && e.reason === reason);
      if (same) same.rows += n;
      else out.push({ class: cls, delivered: group.delivered, reason, rows: n });
    }
    return done;
  }

  /** One line per pass; losing undelivered alerts is an error, other undelivered rows a warning. */
  private report(evicted: Eviction[]): void {
    const lostAlerts = evicted
      .filter((e) => e.class === 'alerts' && !e.delivered)
      .reduce((s, e) => s + e.rows, 0);
    const lost = evicted.some((e) => !e.delivered);
    const why: Record<EvictionReason, (cls: DataClass) => string> = {
      quota: (cls) => `over store.quotaMiB.${cls}`,
      disk: () => 'free disk below store.minFreeDiskMiB',
      unreadable: () => 'unreadable',
    };
    const parts = evicted.map(
      (e) =>
        `${e.rows} ${e.class} (${e.delivered ? 'delivered' : 'NOT delivered'}, ${why[e.reason](e.class)})`,
    );
    const advice = lost
      ? ' Rows not yet delivered are lost: raise the quota, free disk space or restore the upstream connection.'
      : '';
    const message = `store evicted ${parts.join(', ')}.${advice}`;
    const fields = { evicted };
    if (lostAlerts > 0) this.log.error(fields, message);
    else if (lost) this.log.warn(fields, message);
    else this.log.info(fields, message);
  }

  private publishUsage(): void {
    const metrics = this.options.metrics;
    if (!metrics) return;
    for (const cls of DATA_CLASSES) {
      const u = this.usage(cls);
      metrics.storeClassBytes.set({ class: cls }, u.bytes);
      metrics.storeQuotaBytes.set({ class: cls }, u.quotaBytes);
    }
  }

  private grewALot(): boolean {
    return DATA_CLASSES.some(
      (cls) => this.ledger.rows(cls) > 2 * this.calibration[cls].rows + MIN_ROWS_FOR_RATE,
    );
  }

  /** Bytes of a class with `rows` rows: as measured, plus or minus the rows since. */
  private estimate(cls: DataClass, rows: number): number {
    const c = this.calibration[cls];
    return Math.max(0, c.bytes + (rows - c.rows) * c.perRow);
  }

  /** Measures the bytes of each class (see the comment at the top). */
  private calibrate(now: number): void {
    this.calibratedAt = now;
    for (const cls of DATA_CLASSES) {
      const rows = this.ledger.rows(cls);
      let bytes = 0;
      for (const tree of this.trees[cls]) {
        const s = this.sample.get(tree.name, SAMPLE_PAGES) as {
          bytes: number;
          pages: number;
          leafCells: number;
          cells: number;
        };
        if (s.pages < SAMPLE_PAGES) {
          bytes += s.bytes; // the whole b-tree was walked
          continue;
        }
        // A table's rows are its leaf cells; an index has entries in its inner pages too.
        const entriesSampled = tree.isIndex ? s.cells : s.leafCells;
        const entries =
          tree.partial === undefined
            ? rows
            : (
                this.db.prepare(`SELECT count(*) AS n FROM ${cls} WHERE ${tree.partial}`).get() as {
                  n: number;
                }
              ).n;
        bytes += entriesSampled > 0 ? (s.bytes / entriesSampled) * entries : s.bytes;
      }
      const perRow = rows >= MIN_ROWS_FOR_RATE ? bytes / rows : SEED_BYTES_PER_ROW[cls];
      this.calibration[cls] = { rows, bytes, perRow };
    }
  }

  private freePagesBytes(): number {
    return Number(this.db.pragma('freelist_count', { simple: true })) * this.pageSize;
  }
}
