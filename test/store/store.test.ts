import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { VigilError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { SCHEMA_VERSION } from '../../runtime/store/schema.js';
import { makeResult } from './fixtures.js';

const cfg = StoreConfig.parse({ path: 'unused', retentionHours: 1, maxRows: 1_000, maxReadings: 1_000 });
const HOUR = 3_600_000;

describe('Store', () => {
  let dir: string;
  let dbFile: string;
  let store: Store;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-store-'));
    dbFile = path.join(dir, 'nested', 'deeper', 'vigil.db');
    store = Store.open(dbFile, cfg, silentLogger());
  });

  afterEach(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates parent folders, uses WAL and records the schema version', () => {
    expect(store.journalMode()).toBe('wal');
    store.close();
    const raw = new Database(dbFile, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      raw.close();
    }
  });

  it('round-trips a result and its alert, and survives reopening', () => {
    const { result, alert } = makeResult(1, { alert: true });
    store.saveResult(result, alert);
    store.saveResult(makeResult(2).result);

    expect(store.getResultBySampleId('sample-1')).toEqual(result);
    expect(store.getResultBySampleId('sample-2')?.alertId).toBeUndefined();
    expect(store.getResultBySampleId('nope')).toBeUndefined();
    expect(store.countResults()).toBe(2);
    expect(store.countResults({ label: 'scratch' })).toBe(1);
    expect(store.countResults({ pipeline: 'other' })).toBe(0);
    expect(store.countAlerts()).toBe(1);
    expect(store.unpublishedAlerts(10)).toEqual([alert]);

    store.close();
    store = Store.open(dbFile, cfg, silentLogger());
    expect(store.getResultBySampleId('sample-1')).toEqual(result);
    expect(store.recentAlerts(5)).toEqual([{ ...alert, publishedAt: null, publishAttempts: 0 }]);
  });

  it('writes a result and its alert atomically: a failing alert insert leaves neither', () => {
    const first = makeResult(1, { alert: true });
    store.saveResult(first.result, first.alert);
    const second = makeResult(2, { alert: true });
    // Same alert id as the first: the alert insert violates the primary key after the result
    // insert succeeded inside the transaction.
    const clash = { ...second.alert!, id: first.alert!.id };
    let thrown: unknown;
    try {
      store.saveResult(second.result, clash);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(VigilError);
    expect((thrown as VigilError).code).toBe('VIGIL_ERR_STORE');
    expect((thrown as VigilError).message).toContain(dbFile);
    expect(store.getResultBySampleId('sample-2')).toBeUndefined();
    expect(store.countResults()).toBe(1);
    expect(store.countAlerts()).toBe(1);
  });

  it('keeps the outbox oldest first and drops alerts once published', () => {
    for (const n of [3, 1, 2]) {
      const { result, alert } = makeResult(n, { alert: true });
      store.saveResult(result, alert);
    }
    expect(store.unpublishedAlerts(10).map((a) => a.id)).toEqual(['alert-1', 'alert-2', 'alert-3']);
    expect(store.unpublishedAlerts(2).map((a) => a.id)).toEqual(['alert-1', 'alert-2']);
    store.recordPublishAttempt('alert-1');
    store.markAlertPublished('alert-1', 1_800_000_000_000);
    expect(store.unpublishedAlerts(10).map((a) => a.id)).toEqual(['alert-2', 'alert-3']);
    expect(store.countAlerts({ published: true })).toBe(1);
    expect(store.countAlerts({ published: false })).toBe(2);
    const recent = store.recentAlerts(10);
    expect(recent.map((a) => a.id)).toEqual(['alert-3', 'alert-2', 'alert-1']);
    expect(recent[2]).toMatchObject({ publishedAt: 1_800_000_000_000, publishAttempts: 1 });
  });

  it('deletes old results and old delivered alerts, keeps undelivered alerts, caps rows', () => {
    const now = 1_700_100_000_000;
    const old = makeResult(1, { alert: true, producedAt: now - 2 * HOUR });
    const oldUndelivered = makeResult(2, { alert: true, producedAt: now - 3 * HOUR });
    const fresh = makeResult(3, { producedAt: now - 60_000 });
    store.saveResult(old.result, old.alert);
    store.saveResult(oldUndelivered.result, oldUndelivered.alert);
    store.saveResult(fresh.result);
    store.markAlertPublished('alert-1', now - HOUR);

    expect(store.applyRetention(now)).toEqual({
      resultsDeleted: 2,
      alertsDeleted: 1,
      readingsDeleted: 0,
      readingsMore: false,
    });
    expect(store.countResults()).toBe(1);
    expect(store.unpublishedAlerts(10).map((a) => a.id)).toEqual(['alert-2']);
    expect(store.countAlerts()).toBe(1);
    expect(store.applyRetention(now)).toEqual({
      resultsDeleted: 0,
      alertsDeleted: 0,
      readingsDeleted: 0,
      readingsMore: false,
    });
  });

  it('caps results at maxRows, oldest first', () => {
    store.close();
    store = Store.open(dbFile, { ...cfg, maxRows: 3, retentionHours: 10_000 }, silentLogger());
    const now = 1_700_000_010_000;
    for (let n = 0; n < 5; n++) store.saveResult(makeResult(n, { producedAt: now - 5_000 + n }).result);
    expect(store.applyRetention(now)).toEqual({
      resultsDeleted: 2,
      alertsDeleted: 0,
      readingsDeleted: 0,
      readingsMore: false,
    });
    expect(store.getResultBySampleId('sample-0')).toBeUndefined();
    expect(store.getResultBySampleId('sample-1')).toBeUndefined();
    expect(store.getResultBySampleId('sample-2')).toBeDefined();
    expect(store.countResults()).toBe(3);
  });

  it('reports an unusable path as VIGIL_ERR_STORE naming the file', async () => {
    const blocker = path.join(dir, 'a-file');
    await writeFile(blocker, 'not a folder');
    const target = path.join(blocker, 'vigil.db');
    expect(() => Store.open(target, cfg, silentLogger())).toThrowError(
      expect.objectContaining({ code: 'VIGIL_ERR_STORE', message: expect.stringContaining(target) }),
    );
  });

  it('refuses a database from a newer schema', () => {
    store.close();
    const raw = new Database(dbFile);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => Store.open(dbFile, cfg, silentLogger())).toThrowError(/newer than this Vigil understands/);
    store = Store.open(path.join(dir, 'other.db'), cfg, silentLogger());
  });

  it('refuses use after close with a clear error', () => {
    store.close();
    expect(() => store.countResults()).toThrowError(/the store is closed/);
    store = Store.open(dbFile, cfg, silentLogger());
  });
});

describe('Store readings', () => {
  it('stores readings with their qualities, timestamps and increasing ids, and applies retention', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-readings-'));
    const s = Store.open(
      path.join(dir, 'r.db'),
      { ...cfg, retentionHours: 1, maxReadings: 3 },
      silentLogger(),
    );
    try {
      const now = Date.now();
      const base = {
        source: 'opc',
        asset: 'pump-1',
        sourceTime: now - 5,
        serverTime: now - 4,
        receivedAt: now,
      };
      s.saveReadings([
        { ...base, tag: 'temperature', value: 21.5, quality: 'good' },
        {
          ...base,
          tag: 'pressure',
          value: null,
          quality: 'bad',
          status: 'BadSensorFailure',
          serverTime: null,
        },
        { ...base, tag: 'speed', value: 1450, quality: 'uncertain', status: 'UncertainLastUsableValue' },
      ]);
      const all = s.listReadings();
      expect(all.map((x) => [x.tag, x.value, x.quality, x.status])).toEqual([
        ['temperature', 21.5, 'good', undefined],
        ['pressure', null, 'bad', 'BadSensorFailure'],
        ['speed', 1450, 'uncertain', 'UncertainLastUsableValue'],
      ]);
      expect(all[0]!.id).toBeLessThan(all[1]!.id);
      expect(all[0]!.sourceTime).toBe(now - 5);
      expect(all[1]!.serverTime).toBeNull();
      expect(s.countReadings({ quality: 'bad' })).toBe(1);

      s.saveReadings([{ ...base, tag: 'temperature', value: 22, quality: 'good' }]);
      s.saveReadings([{ ...base, tag: 'old', value: 1, quality: 'good', receivedAt: now - 2 * 3600_000 }]);
      // One too old, then one more beyond maxReadings (3), oldest first; one reading per pass.
      expect(s.applyRetention(now, 1)).toMatchObject({ readingsDeleted: 1, readingsMore: true });
      expect(s.applyRetention(now, 1)).toMatchObject({ readingsDeleted: 1, readingsMore: true });
      expect(s.applyRetention(now, 1)).toMatchObject({ readingsDeleted: 0, readingsMore: false });
      expect(s.listReadings().map((x) => x.tag)).toEqual(['pressure', 'speed', 'temperature']);
    } finally {
      s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
