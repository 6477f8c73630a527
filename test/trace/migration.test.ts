import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import type { DataQualityFlag, Result } from '../../runtime/pipeline/result.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../runtime/store/schema.js';
import { Store } from '../../runtime/store/store.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { insertOldReadings, makeResult } from '../store/fixtures.js';
import { readings } from '../store/helpers.js';

// Schema version 5 (trace ids): readings gain trace_id and flags, results payload_sha256 and
// data_quality. A database an earlier Vigil left (version 4) opens, keeps every row as it was,
// forwards its old rows without the new fields (absent, not null), and takes new rows with them.

const cfg = StoreConfig.parse({ path: 'x', retentionHours: 1, minFreeDiskMiB: 0 });
const SHA = 'a'.repeat(64);

/** A database as Vigil with schema version 4 left it: 2 results (1 with an alert) and 3 readings. */
function createV4(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  for (const m of MIGRATIONS.filter((m) => m.version <= 4)) db.exec(m.sql);
  db.pragma('user_version = 4');
  db.prepare("INSERT INTO store_meta (key, value) VALUES ('store_id', 'old-store')").run();
  const insertResult = db.prepare(`
    INSERT INTO results (id, sample_id, pipeline, source, origin, received_at, produced_at, model_name,
      model_version, backend, provider, label, confidence, score, threshold, scores, latency_ms, stages,
      alert_id, asset, details)
    VALUES (@id, @sampleId, @pipeline, @source, @origin, @receivedAt, @producedAt, @name, @version,
      @backend, @provider, @label, @confidence, @score, @threshold, @scores, @latencyMs, @stages,
      @alertId, NULL, NULL)`);
  for (const n of [1, 2]) {
    const { result, alert } = makeResult(n, { alert: n === 2 });
    insertResult.run({
      ...result,
      ...result.model,
      scores: JSON.stringify(result.scores),
      stages: JSON.stringify(result.stages),
      alertId: result.alertId ?? null,
    });
    if (alert)
      db.prepare(
        'INSERT INTO alerts (id, result_id, pipeline, kind, severity, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ).run(
        alert.id,
        result.id,
        alert.pipeline,
        alert.kind,
        alert.severity,
        JSON.stringify(alert),
        result.producedAt,
      );
  }
  insertOldReadings(db, 3);
  db.close();
}

describe('store migration 5: trace ids', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-trace-migrate-'));
    file = path.join(dir, 'vigil.db');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('opens a version 4 database with its rows intact, and stores and forwards the new fields', () => {
    createV4(file);
    const store = Store.open(file, cfg, silentLogger());
    try {
      expect(store.storeId).toBe('old-store');
      // Old rows: as they were, and without the new fields (not even as null).
      const oldReadings = store.nextRows('readings', 0, 10);
      expect(oldReadings.map((r) => r.item)).toEqual(
        readings(3).map((r, i) => ({ ...r, id: `old-store/${i + 1}`, seq: i + 1, serverTime: null })),
      );
      for (const r of oldReadings) {
        expect(r.item).not.toHaveProperty('traceId');
        expect(r.item).not.toHaveProperty('flags');
      }
      expect(store.getResultBySampleId('sample-1')).toEqual(makeResult(1).result);
      expect(store.getResultBySampleId('sample-2')).not.toHaveProperty('payloadSha256');
      expect(store.unpublishedAlerts(10).map((a) => a.id)).toEqual(['alert-2']);

      // New rows carry them.
      const traced: Reading[] = readings(2, { receivedAt: 1_764_000_100_000 }).map((r, i) => ({
        ...r,
        traceId: '019abcde-0000-7000-8000-000000000001',
        ...(i === 1 ? { flags: ['range', 'rate_of_change'] as const } : {}),
      }));
      store.saveReadings(traced);
      const flag: DataQualityFlag = {
        flagged: true,
        violations: [{ source: 'cam1', rule: 'image', message: 'too dark' }],
      };
      const { result, alert } = makeResult(3, { alert: true });
      const frame: Result = { ...result, payloadSha256: SHA, dataQuality: flag };
      store.saveResult(frame, { ...alert!, payloadSha256: SHA });

      const next = store.nextRows('readings', 3, 10).map((r) => r.item);
      expect(next).toEqual([
        { ...traced[0], id: 'old-store/4', seq: 4 },
        { ...traced[1], id: 'old-store/5', seq: 5 },
      ]);
      expect(next[0]).not.toHaveProperty('flags');
      expect(store.listReadings({ traceId: '019abcde-0000-7000-8000-000000000001' })).toHaveLength(2);
      expect(store.getResultBySampleId('sample-3')).toEqual(frame);
      const forwarded = store.nextRows('results', 2, 10).map((r) => r.item);
      expect(forwarded).toEqual([{ ...frame, seq: 3 }]);
      const alerts = store.nextRows('alerts', 1, 10).map((r) => r.item);
      expect(alerts).toEqual([{ ...alert, payloadSha256: SHA, seq: 2 }]);
    } finally {
      store.close();
    }

    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(5);
      const columns = (table: string) =>
        (raw.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as { name: string }[]).map(
          (c) => c.name,
        );
      expect(columns('readings')).toEqual(expect.arrayContaining(['trace_id', 'flags']));
      expect(columns('results')).toEqual(expect.arrayContaining(['payload_sha256', 'data_quality']));
      // Stored as the issue says: the trace id as text, flags as a JSON array, NULL when none.
      expect(raw.prepare('SELECT id, trace_id, flags FROM readings ORDER BY id').all()).toEqual([
        { id: 1, trace_id: null, flags: null },
        { id: 2, trace_id: null, flags: null },
        { id: 3, trace_id: null, flags: null },
        { id: 4, trace_id: '019abcde-0000-7000-8000-000000000001', flags: null },
        { id: 5, trace_id: '019abcde-0000-7000-8000-000000000001', flags: '["range","rate_of_change"]' },
      ]);
      expect(raw.prepare("SELECT payload_sha256 FROM results WHERE id = 'result-3'").get()).toEqual({
        payload_sha256: SHA,
      });
    } finally {
      raw.close();
    }
  });
});
