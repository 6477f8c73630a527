import { dirname, resolve } from 'node:path';
import type Database from 'better-sqlite3';
import type { StoreConfig } from '../config/schema.js';
import { VigilError, errorMessage } from '../errors.js';
import type { ClassBacklog, DataClass, ForwardQueue, QueuedRow } from '../forward/types.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { Alert, Result } from '../pipeline/result.js';
import type { SourceIngestMark } from '../pipeline/source.js';
import type { Reading } from '../telemetry/reading.js';
import { ForwardLedger } from './forward-queue.js';
import { openDatabase, type StoreRecovery } from './open.js';
import { QuotaKeeper, type ClassStats, type QuotaOptions, type QuotaOutcome } from './quota.js';
import { ReadingTable, type ReadingFilter, type StoredReading } from './readings.js';
import { deleteDeliveredBefore } from './retention.js';
import { rowToResult, type ResultRow } from './rows.js';
import { SCHEMA_VERSION } from './schema.js';

export type { StoreRecovery } from './open.js';
export type { ClassStats, ClassUsage, Eviction, EvictionReason, QuotaOutcome } from './quota.js';

/**
 * Every reading, result and alert, kept in SQLite until delivered (and for `retentionHours`
 * after), within a disk quota per class. Writes are synchronous and prepared: one small
 * transaction per result or reading batch, well under a millisecond, so the pipeline never waits
 * on I/O callbacks. The alerts table doubles as the local MQTT outbox: `published_at IS NULL`
 * marks an alert not yet acknowledged by the broker. As the ForwardQueue it hands rows to the
 * upstream forwarder by seq and keeps its cursors. Opening, durability and recovery from a
 * damaged file: open.ts; quotas: quota.ts.
 */

export interface ResultFilter {
  pipeline?: string;
  /** Telemetry results of this asset only. */
  asset?: string;
  /** Only results produced at or after this time (ms since the epoch). */
  since?: number;
  label?: string;
}

export interface AlertFilter {
  pipeline?: string;
  kind?: string;
  /** true: delivered only; false: only those still in the outbox. */
  published?: boolean;
  /** Only alerts created at or after this time (ms since the epoch). */
  since?: number;
}

export interface RetentionOutcome {
  resultsDeleted: number;
  alertsDeleted: number;
  readingsDeleted: number;
  /** More readings are due for deletion than one pass removes: run another pass soon. */
  readingsMore: boolean;
}

/** A stored alert with its delivery state, for the API and status page. */
export interface StoredAlert extends Alert {
  publishedAt: number | null;
  publishAttempts: number;
}

export interface StoreOptions extends QuotaOptions {
  /** Counts recoveries and evictions, and exports the bytes and quota of each class. */
  metrics?: Metrics | undefined;
  /** Called with every SQL statement the store runs, parameters bound: for diagnosis and plan checks. */
  traceSql?: ((sql: string) => void) | undefined;
}

/** The durability settings in force, as SQLite reports them. */
export interface StoreDurability {
  journalMode: string;
  synchronous: 'off' | 'normal' | 'full' | 'extra';
}

export type CheckpointMode = 'PASSIVE' | 'TRUNCATE';

/** What a WAL checkpoint did, in pages (SQLite's wal_checkpoint result). */
export interface CheckpointOutcome {
  /** true when another connection kept it from completing. */
  busy: boolean;
  /** Frames in the WAL, and how many of them are now in the database file. */
  log: number;
  checkpointed: number;
}

const SYNCHRONOUS_LEVELS = ['off', 'normal', 'full', 'extra'] as const;

interface AlertRow {
  payload: string;
  published_at: number | null;
  publish_attempts: number;
}

function resultConditions(filter: ResultFilter): { conditions: string[]; params: unknown[] } {
  const conditions: string[] = [];
  const params: unknown[] = [];
  if (filter.pipeline !== undefined) {
    conditions.push('pipeline = ?');
    params.push(filter.pipeline);
  }
  if (filter.label !== undefined) {
    conditions.push('label = ?');
    params.push(filter.label);
  }
  if (filter.asset !== undefined) {
    conditions.push('asset = ?');
    params.push(filter.asset);
  }
  if (filter.since !== undefined) {
    conditions.push('produced_at >= ?');
    params.push(filter.since);
  }
  return { conditions, params };
}

function whereClause(conditions: string[]): string {
  return conditions.length === 0 ? '' : ` WHERE ${conditions.join(' AND ')}`;
}

export class Store implements ForwardQueue {
  /** The store's id: a UUID created with the database file (a new file, a new id). */
  readonly storeId: string;
  /** Set when the database was found damaged at open and replaced by a new one. */
  readonly recovery: StoreRecovery | undefined;
  private readonly insertResult: Database.Statement;
  private readonly insertAlert: Database.Statement;
  private readonly markPublished: Database.Statement;
  private readonly addAttempt: Database.Statement;
  private readonly selectUnpublished: Database.Statement;
  private readonly selectRecentAlerts: Database.Statement;
  private readonly selectBySampleId: Database.Statement;
  private readonly saveTx: (result: Result, alert: Alert | undefined) => void;
  private readonly readings: ReadingTable;
  private readonly ledger: ForwardLedger;
  private readonly quota: QuotaKeeper;
  private closed = false;

  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
    private readonly cfg: StoreConfig,
    private readonly log: Logger,
    opened: { storeId: string; recovery: StoreRecovery | undefined },
    options: StoreOptions,
  ) {
    this.storeId = opened.storeId;
    this.recovery = opened.recovery;
    this.ledger = new ForwardLedger(db, this.storeId);
    this.quota = new QuotaKeeper(db, this.ledger, cfg, log, dirname(this.path), options);
    this.insertResult = db.prepare(`
      INSERT INTO results (id, sample_id, pipeline, source, origin, received_at, produced_at,
        model_name, model_version, backend, provider, label, confidence, score, threshold,
        scores, latency_ms, stages, alert_id, asset, details, payload_sha256, data_quality)
      VALUES (@id, @sampleId, @pipeline, @source, @origin, @receivedAt, @producedAt,
        @modelName, @modelVersion, @backend, @provider, @label, @confidence, @score, @threshold,
        @scores, @latencyMs, @stages, @alertId, @asset, @details, @payloadSha256, @dataQuality)`);
    this.insertAlert = db.prepare(`
      INSERT INTO alerts (id, result_id, pipeline, kind, severity, payload, created_at)
      VALUES (@id, @resultId, @pipeline, @kind, @severity, @payload, @createdAt)`);
    this.markPublished = db.prepare(
      'UPDATE alerts SET published_at = ? WHERE id = ? AND published_at IS NULL',
    );
    this.addAttempt = db.prepare('UPDATE alerts SET publish_attempts = publish_attempts + 1 WHERE id = ?');
    this.selectUnpublished = db.prepare(
      'SELECT payload FROM alerts WHERE published_at IS NULL ORDER BY created_at ASC, seq ASC LIMIT ?',
    );
    this.selectRecentAlerts = db.prepare(
      'SELECT payload, published_at, publish_attempts FROM alerts ORDER BY created_at DESC, seq DESC LIMIT ?',
    );
    this.selectBySampleId = db.prepare(
      'SELECT * FROM results WHERE sample_id = ? ORDER BY produced_at DESC, seq DESC LIMIT 1',
    );
    this.readings = new ReadingTable(db);
    this.saveTx = db.transaction((result: Result, alert: Alert | undefined) => {
      this.insertResult.run({
        id: result.id,
        sampleId: result.sampleId,
        pipeline: result.pipeline,
        source: result.source,
        origin: result.origin,
        receivedAt: result.receivedAt,
        producedAt: result.producedAt,
        modelName: result.model.name,
        modelVersion: result.model.version,
        backend: result.model.backend,
        provider: result.model.provider,
        label: result.label,
        confidence: result.confidence,
        score: result.score,
        threshold: result.threshold,
        scores: JSON.stringify(result.scores),
        latencyMs: result.latencyMs,
        stages: JSON.stringify(result.stages),
        alertId: result.alertId ?? alert?.id ?? null,
        asset: result.asset ?? null,
        details: result.details === undefined ? null : JSON.stringify(result.details),
        payloadSha256: result.payloadSha256 ?? null,
        dataQuality: result.dataQuality === undefined ? null : JSON.stringify(result.dataQuality),
      });
      if (alert) {
        const raisedAt = Date.parse(alert.timestamp);
        this.insertAlert.run({
          id: alert.id,
          resultId: result.id,
          pipeline: alert.pipeline,
          kind: alert.kind,
          severity: alert.severity,
          payload: JSON.stringify(alert),
          createdAt: Number.isFinite(raisedAt) ? raisedAt : result.producedAt,
        });
      }
    });
  }

  /**
   * Opens (creating if needed) the database at `file`, creating its folder and applying
   * migrations. A damaged file is moved aside and a new store started (`recovery` says so);
   * anything else that keeps the store from opening throws VIGIL_ERR_STORE.
   */
  static open(file: string, cfg: StoreConfig, log: Logger, options: StoreOptions = {}): Store {
    const dbPath = resolve(file);
    try {
      const store = openDatabase(
        dbPath,
        cfg,
        log,
        (opened) => new Store(opened.db, dbPath, cfg, log, opened, options),
        () => options.metrics?.storeRecoveries.inc(),
        options.traceSql,
      );
      log.info(
        { path: dbPath, schemaVersion: SCHEMA_VERSION, storeId: store.storeId, ...store.durability() },
        'store opened',
      );
      return store;
    } catch (err) {
      if (err instanceof VigilError) throw err;
      throw new VigilError(
        'VIGIL_ERR_STORE',
        `cannot open the store database ${dbPath}: ${errorMessage(err)}. ` +
          'Check that its folder exists or can be created, is writable by this user and that the disk ' +
          'is not full; the location is store.path in the config.',
        { cause: err, detail: { path: dbPath } },
      );
    }
  }

  /** Writes a result and, when it raised one, its alert, in one transaction. */
  saveResult(result: Result, alert?: Alert): void {
    this.guard('save a result', () => this.saveTx(result, alert));
    this.ledger.added('results', 1);
    if (alert) this.ledger.added('alerts', 1);
  }

  /**
   * A small write of the store's own (a row of store_meta, about a page), to learn whether the
   * store takes writes again after one failed (a full disk) without risking a real row. Throws
   * as saveResult() does.
   */
  probeWrite(): void {
    this.guard('probe the store with a write', () =>
      this.db
        .prepare("INSERT OR REPLACE INTO store_meta (key, value) VALUES ('write_probe', ?)")
        .run(`${Date.now()} ${'.'.repeat(2048)}`),
    );
  }

  /**
   * Writes an alert that no single result raised (a drift alert is decided over a window of
   * samples); its result_id is empty. Delivered, replayed and forwarded like every other alert.
   */
  saveAlert(alert: Alert): void {
    const raisedAt = Date.parse(alert.timestamp);
    this.guard('save an alert', () =>
      this.insertAlert.run({
        id: alert.id,
        resultId: '',
        pipeline: alert.pipeline,
        kind: alert.kind,
        severity: alert.severity,
        payload: JSON.stringify(alert),
        createdAt: Number.isFinite(raisedAt) ? raisedAt : Date.now(),
      }),
    );
    this.ledger.added('alerts', 1);
  }

  /**
   * Writes a batch of telemetry readings, and the ingest marks of the input it came from, in one
   * transaction (all or none).
   */
  saveReadings(batch: readonly Reading[], marks?: readonly SourceIngestMark[]): void {
    this.guard('save readings', () => this.readings.insertBatch(batch, marks));
    this.ledger.added('readings', batch.length);
  }

  /** Whether a batch with this ingest mark was already stored (a redelivery to skip). */
  hasIngestMark(source: string, key: string, hash: string): boolean {
    return this.guard('read an ingest mark', () => this.readings.hasMark(source, key, hash));
  }

  /**
   * Forgets an ingest mark: a new message in the same delivery slot (MQTT packet id) proves the
   * earlier one was acknowledged, so its mark must not make the new one look like a redelivery.
   */
  deleteIngestMark(source: string, key: string): void {
    this.guard('delete an ingest mark', () => this.readings.deleteMark(source, key));
  }

  countReadings(filter: ReadingFilter = {}): number {
    return this.guard('count readings', () => this.readings.count(filter));
  }

  /** Readings matching the filter, oldest first. */
  listReadings(filter: ReadingFilter = {}, limit = 1000): StoredReading[] {
    return this.guard('read readings', () => this.readings.list(filter, limit));
  }

  /** Marks an alert as acknowledged by the broker (time in ms since the epoch). */
  markAlertPublished(id: string, at: number): void {
    this.guard('mark an alert published', () => this.markPublished.run(at, id));
  }

  /** Counts one more delivery attempt for an alert (shown on the API; helps spot stuck alerts). */
  recordPublishAttempt(id: string): void {
    this.guard('record a publish attempt', () => this.addAttempt.run(id));
  }

  /** Alerts not yet acknowledged by the broker, oldest first. */
  unpublishedAlerts(limit: number): Alert[] {
    return this.guard('read unpublished alerts', () =>
      (this.selectUnpublished.all(limit) as { payload: string }[]).flatMap((r) => {
        const alert = this.parseAlert(r.payload);
        return alert ? [alert] : [];
      }),
    );
  }

  /** The most recent alerts, newest first, with their delivery state. */
  recentAlerts(limit: number): StoredAlert[] {
    return this.guard('read recent alerts', () =>
      (this.selectRecentAlerts.all(limit) as AlertRow[]).flatMap((r) => {
        const alert = this.parseAlert(r.payload);
        return alert ? [{ ...alert, publishedAt: r.published_at, publishAttempts: r.publish_attempts }] : [];
      }),
    );
  }

  /**
   * A stored alert's payload; undefined (logged) when it cannot be read, so that one damaged row
   * never stops the local publisher's outbox or the API. Upstream forwarding evicts such a row
   * and counts it.
   */
  private parseAlert(payload: string): Alert | undefined {
    try {
      const alert = JSON.parse(payload) as unknown;
      if (typeof alert === 'object' && alert !== null && typeof (alert as Alert).id === 'string')
        return alert as Alert;
    } catch {
      // reported below
    }
    this.log.error({ payload: payload.slice(0, 200) }, 'a stored alert cannot be read and is skipped');
    return undefined;
  }

  countResults(filter: ResultFilter = {}): number {
    const { conditions, params } = resultConditions(filter);
    return this.count('results', conditions, params);
  }

  /** Results matching the filter, oldest first. */
  listResults(filter: ResultFilter = {}, limit = 1000): Result[] {
    const { conditions, params } = resultConditions(filter);
    return this.guard('read results', () =>
      (
        this.db
          .prepare(
            `SELECT * FROM results${whereClause(conditions)} ORDER BY produced_at ASC, seq ASC LIMIT ?`,
          )
          .all(...params, limit) as ResultRow[]
      ).map(rowToResult),
    );
  }

  countAlerts(filter: AlertFilter = {}): number {
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (filter.pipeline !== undefined) {
      conditions.push('pipeline = ?');
      params.push(filter.pipeline);
    }
    if (filter.kind !== undefined) {
      conditions.push('kind = ?');
      params.push(filter.kind);
    }
    if (filter.since !== undefined) {
      conditions.push('created_at >= ?');
      params.push(filter.since);
    }
    if (filter.published !== undefined)
      conditions.push(filter.published ? 'published_at IS NOT NULL' : 'published_at IS NULL');
    return this.count('alerts', conditions, params);
  }

  /** The latest result for a sample, if any. */
  getResultBySampleId(sampleId: string): Result | undefined {
    return this.guard('read a result', () => {
      const row = this.selectBySampleId.get(sampleId) as ResultRow | undefined;
      return row ? rowToResult(row) : undefined;
    });
  }

  /**
   * Deletes results and readings older than retentionHours, delivered alerts older than that
   * (undelivered ones stay in the outbox whatever their age), then the oldest results beyond
   * maxRows and the oldest readings beyond maxReadings (at most `readingChunk` readings per pass;
   * `readingsMore` asks for another). Of a class forwarded upstream, only rows already delivered
   * are deleted: the undelivered ones go only by quota eviction, which counts them.
   */
  applyRetention(now: number = Date.now(), readingChunk = 50_000): RetentionOutcome {
    return this.guard('apply retention', () => {
      const cutoff = now - this.cfg.retentionHours * 3_600_000;
      // Each DELETE commits on its own, so that the row counts in memory follow every one.
      const del = (cls: DataClass, sql: string, ...params: unknown[]): number => {
        const n = this.db.prepare(sql).run(...params).changes;
        this.ledger.removed(cls, n, 0);
        return n;
      };
      // A forwarded class is walked by seq up to its cursor (retention.ts), not by time.
      const expire = (cls: 'results' | 'alerts', sql: string): number => {
        if (!this.ledger.isForwarded(cls)) return del(cls, sql, cutoff);
        const { deleted } = deleteDeliveredBefore(this.db, cls, this.ledger.acked(cls), cutoff, {
          published: cls === 'alerts',
        });
        this.ledger.removed(cls, deleted, 0);
        return deleted;
      };
      let resultsDeleted = expire('results', 'DELETE FROM results WHERE produced_at < ?');
      const alertsDeleted = expire(
        'alerts',
        'DELETE FROM alerts WHERE created_at < ? AND published_at IS NOT NULL',
      );
      const excess = this.ledger.rows('results') - this.cfg.maxRows;
      if (excess > 0) {
        resultsDeleted += this.ledger.isForwarded('results')
          ? del(
              'results',
              'DELETE FROM results WHERE seq IN (SELECT seq FROM results WHERE seq <= ? ORDER BY seq LIMIT ?)',
              this.ledger.acked('results'),
              excess,
            )
          : del(
              'results',
              'DELETE FROM results WHERE seq IN (SELECT seq FROM results ORDER BY produced_at ASC, seq ASC LIMIT ?)',
              excess,
            );
      }
      const readings = this.readings.applyRetention(
        cutoff,
        this.cfg.maxReadings,
        readingChunk,
        this.ledger.isForwarded('readings') ? this.ledger.acked('readings') : undefined,
      );
      const readingsDeleted = readings.deleted;
      this.ledger.removed('readings', readingsDeleted, 0);
      if (resultsDeleted > 0 || alertsDeleted > 0 || readingsDeleted > 0) {
        this.log.info({ resultsDeleted, alertsDeleted, readingsDeleted, cutoff }, 'store retention applied');
      }
      return { resultsDeleted, alertsDeleted, readingsDeleted, readingsMore: readings.more };
    });
  }

  /**
   * Which classes are forwarded upstream (undefined or empty: no upstream). Call it right after
   * open: it decides what retention may delete and which classes have a backlog.
   */
  setForwarded(classes: readonly DataClass[] | undefined): void {
    this.guard('set the forwarded classes', () => this.ledger.setForwarded(classes));
  }

  /**
   * Rows to forward (ForwardQueue). A row that cannot be read is deleted, counted as evicted
   * (reason 'unreadable') and logged as an error, and the rows after it are read in its place.
   */
  nextRows(cls: DataClass, afterSeq: number, limit: number): QueuedRow[] {
    return this.guard(`read ${cls} to forward`, () => {
      const { rows, unreadable } = this.ledger.nextRows(cls, afterSeq, limit);
      for (const row of unreadable) this.quota.unreadable(cls, row);
      return rows;
    });
  }

  lastSeq(cls: DataClass): number {
    return this.guard(`read the last ${cls} seq`, () => this.ledger.lastSeq(cls));
  }

  markDelivered(cls: DataClass, seq: number, at: number): void {
    this.guard(`record ${cls} delivered upstream`, () => this.ledger.markDelivered(cls, seq, at));
  }

  backlog(cls: DataClass): ClassBacklog {
    return this.guard(`read the ${cls} backlog`, () => this.ledger.backlog(cls));
  }

  /**
   * Evicts the oldest rows of classes over their quota and, while free disk space is below
   * store.minFreeDiskMiB, enough of the oldest readings and results to keep the file from
   * growing (see quota.ts); bounded work per call, `more` asks for another soon.
   */
  enforceQuota(now: number = Date.now()): QuotaOutcome {
    return this.guard('enforce the quotas', () => this.quota.enforce(now));
  }

  /** Per class: rows, estimated bytes, quota, and rows evicted since open; for the status API. */
  classStats(): Record<DataClass, ClassStats> {
    return this.guard('read the class statistics', () => this.quota.classStats());
  }

  /**
   * Copies the WAL into the database file. PASSIVE never waits for readers (the daemon runs it
   * periodically); TRUNCATE also empties the WAL file (at close).
   */
  checkpoint(mode: CheckpointMode = 'PASSIVE'): CheckpointOutcome {
    return this.guard('checkpoint the WAL', () => {
      const row = (
        this.db.pragma(`wal_checkpoint(${mode})`) as { busy: number; log: number; checkpointed: number }[]
      )[0];
      return { busy: row?.busy === 1, log: row?.log ?? 0, checkpointed: row?.checkpointed ?? 0 };
    });
  }

  /** The journal mode and synchronous level in force, read back from SQLite. */
  durability(): StoreDurability {
    return this.guard('read the durability settings', () => ({
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: SYNCHRONOUS_LEVELS[Number(this.db.pragma('synchronous', { simple: true }))] ?? 'full',
    }));
  }

  /** The journal mode in force ('wal' once opened); for checks and the status API. */
  journalMode(): string {
    return this.guard('read the journal mode', () =>
      String(this.db.pragma('journal_mode', { simple: true })),
    );
  }

  isOpen(): boolean {
    return !this.closed && this.db.open;
  }

  /** Checkpoints and empties the WAL, then closes: the file alone then holds everything. */
  close(): void {
    if (this.closed) return;
    try {
      this.checkpoint('TRUNCATE');
    } catch (err) {
      this.log.warn({ path: this.path, err: errorMessage(err) }, 'store checkpoint at close failed');
    }
    this.closed = true;
    this.guard('close', () => this.db.close());
    this.log.info({ path: this.path }, 'store closed');
  }

  private count(table: 'results' | 'alerts', conditions: string[], params: unknown[]): number {
    return this.guard(`count ${table}`, () => {
      const row = this.db
        .prepare(`SELECT count(*) AS n FROM ${table}${whereClause(conditions)}`)
        .get(...params) as {
        n: number;
      };
      return row.n;
    });
  }

  private guard<T>(operation: string, fn: () => T): T {
    if (this.closed && operation !== 'close') {
      throw new VigilError(
        'VIGIL_ERR_STORE',
        `store ${this.path}: cannot ${operation}: the store is closed`,
        {
          detail: { path: this.path },
        },
      );
    }
    try {
      return fn();
    } catch (err) {
      if (err instanceof VigilError) throw err;
      throw new VigilError(
        'VIGIL_ERR_STORE',
        `store ${this.path}: cannot ${operation}: ${errorMessage(err)}. ` +
          'Check free disk space and that the file is not being modified by another program.',
        { cause: err, detail: { path: this.path, operation } },
      );
    }
  }
}
