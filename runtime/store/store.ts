import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { StoreConfig } from '../config/schema.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Alert, Result, StageTimings, TelemetryDetails } from '../pipeline/result.js';
import type { Reading } from '../telemetry/reading.js';
import { ReadingTable, type ReadingFilter, type StoredReading } from './readings.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

/**
 * Every result and alert, kept in SQLite until delivered (and for `retentionHours` after).
 * Writes are synchronous and prepared: one small transaction per result, well under a
 * millisecond, so the pipeline never waits on I/O callbacks. The alerts table doubles as the
 * MQTT outbox: `published_at IS NULL` marks an alert not yet acknowledged by the broker.
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

const BUSY_TIMEOUT_MS = 5_000;

interface ResultRow {
  id: string;
  sample_id: string;
  pipeline: string;
  source: string;
  origin: string;
  received_at: number;
  produced_at: number;
  model_name: string;
  model_version: string;
  backend: string;
  provider: string;
  label: string;
  confidence: number;
  score: number;
  threshold: number;
  scores: string;
  latency_ms: number;
  stages: string;
  alert_id: string | null;
  asset: string | null;
  details: string | null;
}

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

export class Store {
  private readonly insertResult: Database.Statement;
  private readonly insertAlert: Database.Statement;
  private readonly markPublished: Database.Statement;
  private readonly addAttempt: Database.Statement;
  private readonly selectUnpublished: Database.Statement;
  private readonly selectRecentAlerts: Database.Statement;
  private readonly selectBySampleId: Database.Statement;
  private readonly saveTx: (result: Result, alert: Alert | undefined) => void;
  private readonly readings: ReadingTable;
  private closed = false;

  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
    private readonly cfg: StoreConfig,
    private readonly log: Logger,
  ) {
    this.insertResult = db.prepare(`
      INSERT INTO results (id, sample_id, pipeline, source, origin, received_at, produced_at,
        model_name, model_version, backend, provider, label, confidence, score, threshold,
        scores, latency_ms, stages, alert_id, asset, details)
      VALUES (@id, @sampleId, @pipeline, @source, @origin, @receivedAt, @producedAt,
        @modelName, @modelVersion, @backend, @provider, @label, @confidence, @score, @threshold,
        @scores, @latencyMs, @stages, @alertId, @asset, @details)`);
    this.insertAlert = db.prepare(`
      INSERT INTO alerts (id, result_id, pipeline, kind, severity, payload, created_at)
      VALUES (@id, @resultId, @pipeline, @kind, @severity, @payload, @createdAt)`);
    this.markPublished = db.prepare(
      'UPDATE alerts SET published_at = ? WHERE id = ? AND published_at IS NULL',
    );
    this.addAttempt = db.prepare('UPDATE alerts SET publish_attempts = publish_attempts + 1 WHERE id = ?');
    this.selectUnpublished = db.prepare(
      'SELECT payload FROM alerts WHERE published_at IS NULL ORDER BY created_at ASC, rowid ASC LIMIT ?',
    );
    this.selectRecentAlerts = db.prepare(
      'SELECT payload, published_at, publish_attempts FROM alerts ORDER BY created_at DESC, rowid DESC LIMIT ?',
    );
    this.selectBySampleId = db.prepare(
      'SELECT * FROM results WHERE sample_id = ? ORDER BY produced_at DESC, rowid DESC LIMIT 1',
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

  /** Opens (creating if needed) the database at `file`, creating its folder and applying migrations. */
  static open(file: string, cfg: StoreConfig, log: Logger): Store {
    const dbPath = path.resolve(file);
    let db: Database.Database | undefined;
    try {
      mkdirSync(path.dirname(dbPath), { recursive: true });
      db = new Database(dbPath);
      // WAL lets the status API read while the pipeline writes. synchronous=NORMAL skips the
      // fsync on every commit: with WAL that is still safe against a crash of this process (the
      // WAL is in the OS page cache); only an OS crash or power cut can lose the last few
      // transactions. The store-and-forward issue will revisit this (FULL costs an fsync per
      // result).
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      migrate(db, dbPath, log);
      const store = new Store(db, dbPath, cfg, log);
      log.info({ path: dbPath, schemaVersion: SCHEMA_VERSION }, 'store opened');
      return store;
    } catch (err) {
      db?.close();
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
  }

  /** Writes a batch of telemetry readings in one transaction (all or none). */
  saveReadings(batch: readonly Reading[]): void {
    this.guard('save readings', () => this.readings.insertBatch(batch));
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
      (this.selectUnpublished.all(limit) as { payload: string }[]).map((r) => JSON.parse(r.payload) as Alert),
    );
  }

  /** The most recent alerts, newest first, with their delivery state. */
  recentAlerts(limit: number): StoredAlert[] {
    return this.guard('read recent alerts', () =>
      (this.selectRecentAlerts.all(limit) as AlertRow[]).map((r) => ({
        ...(JSON.parse(r.payload) as Alert),
        publishedAt: r.published_at,
        publishAttempts: r.publish_attempts,
      })),
    );
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
            `SELECT * FROM results${whereClause(conditions)} ORDER BY produced_at ASC, rowid ASC LIMIT ?`,
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
   * `readingsMore` asks for another).
   */
  applyRetention(now: number = Date.now(), readingChunk = 50_000): RetentionOutcome {
    return this.guard('apply retention', () =>
      this.db.transaction((): RetentionOutcome => {
        const cutoff = now - this.cfg.retentionHours * 3_600_000;
        let resultsDeleted = this.db.prepare('DELETE FROM results WHERE produced_at < ?').run(cutoff).changes;
        const alertsDeleted = this.db
          .prepare('DELETE FROM alerts WHERE created_at < ? AND published_at IS NOT NULL')
          .run(cutoff).changes;
        const total = (this.db.prepare('SELECT count(*) AS n FROM results').get() as { n: number }).n;
        const excess = total - this.cfg.maxRows;
        if (excess > 0) {
          resultsDeleted += this.db
            .prepare(
              'DELETE FROM results WHERE rowid IN (SELECT rowid FROM results ORDER BY produced_at ASC, rowid ASC LIMIT ?)',
            )
            .run(excess).changes;
        }
        const readings = this.readings.applyRetention(cutoff, this.cfg.maxReadings, readingChunk);
        const readingsDeleted = readings.deleted;
        if (resultsDeleted > 0 || alertsDeleted > 0 || readingsDeleted > 0) {
          this.log.info(
            { resultsDeleted, alertsDeleted, readingsDeleted, cutoff },
            'store retention applied',
          );
        }
        return { resultsDeleted, alertsDeleted, readingsDeleted, readingsMore: readings.more };
      })(),
    );
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

  close(): void {
    if (this.closed) return;
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

function migrate(db: Database.Database, dbPath: string, log: Logger): void {
  const current = Number(db.pragma('user_version', { simple: true }));
  if (current > SCHEMA_VERSION) {
    throw new VigilError(
      'VIGIL_ERR_STORE',
      `store ${dbPath} has schema version ${current}, newer than this Vigil understands (${SCHEMA_VERSION}). ` +
        'Upgrade Vigil, or point store.path at another file.',
      { detail: { path: dbPath, schemaVersion: current } },
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
    })();
    log.info(
      { path: dbPath, version: migration.version, description: migration.description },
      'store schema migrated',
    );
  }
}

function rowToResult(row: ResultRow): Result {
  return {
    id: row.id,
    sampleId: row.sample_id,
    pipeline: row.pipeline,
    source: row.source,
    origin: row.origin,
    receivedAt: row.received_at,
    producedAt: row.produced_at,
    model: { name: row.model_name, version: row.model_version, backend: row.backend, provider: row.provider },
    label: row.label,
    confidence: row.confidence,
    score: row.score,
    threshold: row.threshold,
    scores: JSON.parse(row.scores) as Record<string, number>,
    latencyMs: row.latency_ms,
    stages: JSON.parse(row.stages) as StageTimings,
    alertId: row.alert_id ?? undefined,
    ...(row.asset !== null ? { asset: row.asset } : {}),
    ...(row.details !== null ? { details: JSON.parse(row.details) as TelemetryDetails } : {}),
  };
}
