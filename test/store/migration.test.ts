import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../runtime/store/schema.js';
import { Store } from '../../runtime/store/store.js';
import { insertOldReadings, makeResult } from './fixtures.js';
import { readings } from './helpers.js';

const cfg = StoreConfig.parse({ path: 'x', retentionHours: 1, minFreeDiskMiB: 0 });
const HOUR = 3_600_000;
const DETAILS = { axisStart: 1, axisEnd: 30, endTime: 1_700_000_000_000, rul: 112, unit: 'cycles' };

/** A database as Vigil with schema version 3 left it, with rows inserted in a known order. */
function createV3(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  for (const m of MIGRATIONS.filter((m) => m.version <= 3)) db.exec(m.sql);
  db.pragma('user_version = 3');
  const insertResult = db.prepare(`
    INSERT INTO results (id, sample_id, pipeline, source, origin, received_at, produced_at, model_name,
      model_version, backend, provider, label, confidence, score, threshold, scores, latency_ms, stages,
      alert_id, asset, details)
    VALUES (@id, @sampleId, @pipeline, @source, @origin, @receivedAt, @producedAt, @name, @version,
      @backend, @provider, @label, @confidence, @score, @threshold, @scores, @latencyMs, @stages,
      @alertId, @asset, @details)`);
  const insertAlert = db.prepare(`
    INSERT INTO alerts (id, result_id, pipeline, kind, severity, payload, created_at, published_at, publish_attempts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  // Inserted 3, 1, 2: the seqs must follow arrival, not the ids.
  for (const n of [3, 1, 2]) {
    const { result, alert } = makeResult(n, { alert: true });
    insertResult.run({
      ...result,
      ...result.model,
      scores: JSON.stringify(result.scores),
      stages: JSON.stringify(result.stages),
      alertId: result.alertId,
      asset: n === 2 ? 'pump-1' : null,
      details: n === 2 ? JSON.stringify(DETAILS) : null,
    });
    insertAlert.run(
      alert!.id,
      result.id,
      alert!.pipeline,
      alert!.kind,
      alert!.severity,
      JSON.stringify(alert),
      result.producedAt,
      n === 1 ? result.producedAt + 5 : null,
      n === 1 ? 2 : 0,
    );
  }
  insertOldReadings(db, 3);
  db.close();
}

describe('store migration 4', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-migrate-'));
    file = path.join(dir, 'vigil.db');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps every row and column of a v3 database and numbers results and alerts in arrival order', () => {
    createV3(file);
    const store = Store.open(file, cfg, silentLogger());
    try {
      const results = store.nextRows('results', 0, 10);
      expect(results.map((r) => [r.seq, r.item.id])).toEqual([
        [1, 'result-3'],
        [2, 'result-1'],
        [3, 'result-2'],
      ]);
      const expected = makeResult(2, { alert: true }).result;
      expect(store.getResultBySampleId('sample-2')).toEqual({
        ...expected,
        asset: 'pump-1',
        details: DETAILS,
      });
      expect(store.getResultBySampleId('sample-3')).toEqual(makeResult(3, { alert: true }).result);
      expect(store.nextRows('alerts', 0, 10).map((r) => [r.seq, r.item.id])).toEqual([
        [1, 'alert-3'],
        [2, 'alert-1'],
        [3, 'alert-2'],
      ]);
      const recent = store.recentAlerts(10).find((a) => a.id === 'alert-1');
      expect(recent).toMatchObject({ publishAttempts: 2, publishedAt: makeResult(1).result.producedAt + 5 });
      expect(store.unpublishedAlerts(10).map((a) => a.id)).toEqual(['alert-2', 'alert-3']);
      expect(store.nextRows('readings', 0, 10).map((r) => r.seq)).toEqual([1, 2, 3]);
      expect(store.storeId).toMatch(/^[0-9a-f-]{36}$/);
      // The AUTOINCREMENT counters moved with the rebuilt tables: a cursor stops at the last seq.
      store.markDelivered('results', 99, 1);
      store.markDelivered('alerts', 99, 1);
      expect(store.backlog('results').ackedSeq).toBe(3);
      expect(store.backlog('alerts').ackedSeq).toBe(3);
    } finally {
      store.close();
    }

    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const indexes = raw
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
        .all() as { name: string; sql: string }[];
      expect(indexes.map((i) => i.name)).toEqual([
        'alerts_created_at',
        'alerts_unpublished',
        'readings_received_at',
        'results_asset',
        'results_produced_at',
        'results_sample_id',
      ]);
      expect(indexes.find((i) => i.name === 'alerts_unpublished')!.sql).toMatch(
        /WHERE published_at IS NULL$/,
      );
      expect(indexes.find((i) => i.name === 'results_asset')!.sql).toMatch(/WHERE asset IS NOT NULL$/);
      // The outbox query still uses its partial index.
      const plan = raw
        .prepare(
          'EXPLAIN QUERY PLAN SELECT payload FROM alerts WHERE published_at IS NULL ORDER BY created_at LIMIT 5',
        )
        .all() as { detail: string }[];
      expect(plan.map((p) => p.detail).join(' ')).toContain('alerts_unpublished');
      for (const t of ['results', 'alerts', 'store_meta', 'forward_cursors', 'ingest_marks'])
        expect(raw.prepare('SELECT count(*) AS n FROM sqlite_schema WHERE name = ?').get(t)).toEqual({
          n: 1,
        });
    } finally {
      raw.close();
    }
  });

  it('keeps the store id across reopening; another file has another', () => {
    const a = Store.open(file, cfg, silentLogger());
    const id = a.storeId;
    a.close();
    const again = Store.open(file, cfg, silentLogger());
    const other = Store.open(path.join(dir, 'other.db'), cfg, silentLogger());
    try {
      expect(again.storeId).toBe(id);
      expect(other.storeId).not.toBe(id);
    } finally {
      again.close();
      other.close();
    }
  });

  it('never gives a seq twice, even after every row was deleted and the store reopened', () => {
    let store = Store.open(file, cfg, silentLogger());
    const now = 1_700_000_000_000;
    for (let n = 1; n <= 3; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: now - 2 * HOUR });
      store.saveResult(result, alert);
      store.markAlertPublished(alert!.id, now - 2 * HOUR);
    }
    store.saveReadings(readings(3, { receivedAt: now - 2 * HOUR }));
    store.applyRetention(now);
    expect([store.countResults(), store.countAlerts(), store.countReadings()]).toEqual([0, 0, 0]);
    store.close();

    store = Store.open(file, cfg, silentLogger());
    try {
      const { result, alert } = makeResult(9, { alert: true, producedAt: now });
      store.saveResult(result, alert);
      store.saveReadings(readings(1, { receivedAt: now }));
      expect(store.nextRows('results', 0, 10).map((r) => r.seq)).toEqual([4]);
      expect(store.nextRows('alerts', 0, 10).map((r) => r.seq)).toEqual([4]);
      expect(store.nextRows('readings', 0, 10).map((r) => r.seq)).toEqual([4]);
    } finally {
      store.close();
    }
  });
});
