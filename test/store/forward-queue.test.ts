import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { Store } from '../../runtime/store/store.js';
import { makeResult } from './fixtures.js';
import { LEVEL, captureLogger, readings } from './helpers.js';

const HOUR = 3_600_000;
const NOW = 1_764_000_000_000;
const cfg = StoreConfig.parse({
  path: 'x',
  retentionHours: 1,
  maxRows: 2,
  maxReadings: 2,
  minFreeDiskMiB: 0,
});

describe('Store as the forward queue', () => {
  let dir: string;
  let file: string;
  let store: Store;
  let other: Store | undefined;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-fq-'));
    file = path.join(dir, 'vigil.db');
    store = Store.open(file, cfg, silentLogger());
  });
  afterEach(() => {
    store.close();
    other?.close();
    other = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('hands out rows by seq with the item a receiver gets, oldest first, from any point', () => {
    store.setForwarded(['alerts', 'results', 'readings']);
    const a = makeResult(1, { alert: true, producedAt: NOW - 10 });
    const b = makeResult(2, { producedAt: NOW - 5 });
    store.saveResult(a.result, a.alert);
    store.saveResult(b.result);
    store.saveReadings(readings(3, { receivedAt: NOW - 1 }));

    expect(store.nextRows('alerts', 0, 10)).toEqual([
      { seq: 1, at: Date.parse(a.alert!.timestamp), item: { ...a.alert, seq: 1 } },
    ]);
    expect(store.nextRows('results', 0, 10)).toEqual([
      { seq: 1, at: NOW - 10, item: { ...a.result, seq: 1 } },
      { seq: 2, at: NOW - 5, item: { ...b.result, seq: 2 } },
    ]);
    expect(store.nextRows('results', 1, 10).map((r) => r.seq)).toEqual([2]);
    const rows = store.nextRows('readings', 1, 1);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      seq: 2,
      at: NOW - 1,
      item: { id: `${store.storeId}/2`, seq: 2, source: 'opc', asset: 'pump-1', tag: 't1', value: 1 },
    });
    // An item is exactly what travels: nothing lost through JSON.
    expect(JSON.parse(JSON.stringify(rows[0]!.item))).toMatchObject({
      id: `${store.storeId}/2`,
      quality: 'good',
    });
  });

  it('keeps a monotonic, durable cursor and a backlog that follows inserts, acks and reopening', () => {
    store.setForwarded(['readings']);
    expect(store.backlog('readings')).toEqual({
      rows: 0,
      oldestSeq: null,
      oldestAt: null,
      ackedSeq: 0,
      lastDeliveryAt: null,
    });
    store.saveReadings(readings(5, { receivedAt: NOW }));
    store.saveReadings(readings(5, { receivedAt: NOW + 1 }));
    expect(store.backlog('readings')).toMatchObject({ rows: 10, oldestSeq: 1, oldestAt: NOW, ackedSeq: 0 });

    store.markDelivered('readings', 6, NOW + 100);
    expect(store.backlog('readings')).toEqual({
      rows: 4,
      oldestSeq: 7,
      oldestAt: NOW + 1,
      ackedSeq: 6,
      lastDeliveryAt: NOW + 100,
    });
    store.markDelivered('readings', 3, NOW + 200); // lower: ignored
    expect(store.backlog('readings')).toMatchObject({ rows: 4, ackedSeq: 6, lastDeliveryAt: NOW + 100 });
    store.markDelivered('readings', 1_000, NOW + 300); // beyond the last seq given: capped
    expect(store.backlog('readings')).toMatchObject({ rows: 0, oldestSeq: null, ackedSeq: 10 });
    store.saveReadings(readings(2, { receivedAt: NOW + 2 }));
    expect(store.backlog('readings')).toMatchObject({ rows: 2, oldestSeq: 11, ackedSeq: 10 });

    store.close();
    store = Store.open(file, cfg, silentLogger());
    store.setForwarded(['readings']);
    expect(store.backlog('readings')).toEqual({
      rows: 2,
      oldestSeq: 11,
      oldestAt: NOW + 2,
      ackedSeq: 10,
      lastDeliveryAt: NOW + 300,
    });
    // Classes not forwarded have no backlog.
    store.saveResult(makeResult(1).result);
    expect(store.backlog('results')).toMatchObject({ rows: 0, oldestSeq: null });
  });

  it('retention deletes only delivered rows of forwarded classes, and everything due of the others', () => {
    store.setForwarded(['results', 'readings']);
    const old = NOW - 3 * HOUR;
    for (let n = 1; n <= 4; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: old + n });
      store.saveResult(result, alert);
      store.markAlertPublished(alert!.id, old + 10);
    }
    store.saveReadings(readings(4, { receivedAt: old }));
    store.markDelivered('results', 1, NOW);
    store.markDelivered('readings', 2, NOW);

    // Old and over maxRows (2), but only what went upstream may go; alerts are not forwarded
    // and were published: they all go.
    expect(store.applyRetention(NOW)).toEqual({
      resultsDeleted: 1,
      alertsDeleted: 4,
      readingsDeleted: 2,
      readingsMore: false,
    });
    expect(store.nextRows('results', 0, 10).map((r) => r.seq)).toEqual([2, 3, 4]);
    expect(store.nextRows('readings', 0, 10).map((r) => r.seq)).toEqual([3, 4]);
    expect(store.backlog('results')).toMatchObject({ rows: 3, oldestSeq: 2 });
    expect(store.backlog('readings')).toMatchObject({ rows: 2, oldestSeq: 3 });

    // Once delivered, the rest goes too.
    store.markDelivered('results', 4, NOW);
    store.markDelivered('readings', 4, NOW);
    expect(store.applyRetention(NOW)).toMatchObject({ resultsDeleted: 3, readingsDeleted: 2 });
    expect(store.classStats().results.rows).toBe(0);
    expect(store.backlog('results')).toMatchObject({ rows: 0, oldestSeq: null });
  });

  it('a forwarded alert goes only once it is delivered upstream and published to the local broker', () => {
    store.setForwarded(['alerts']);
    const old = NOW - 3 * HOUR;
    for (let n = 1; n <= 3; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: old + n });
      store.saveResult(result, alert);
    }
    store.markAlertPublished('alert-1', old);
    store.markAlertPublished('alert-3', old);
    store.markDelivered('alerts', 2, NOW);
    expect(store.applyRetention(NOW).alertsDeleted).toBe(1);
    expect(store.nextRows('alerts', 0, 10).map((r) => r.item.id)).toEqual(['alert-2', 'alert-3']);
  });

  it('records ingest marks with their readings and recognises them', () => {
    const mark = { source: 'mqtt-1', key: '17', hash: 'abc', redelivered: false };
    store.saveReadings(readings(2), [mark]);
    expect(store.hasIngestMark('mqtt-1', '17', 'abc')).toBe(true);
    expect(store.hasIngestMark('mqtt-1', '17', 'other')).toBe(false);
    expect(store.hasIngestMark('mqtt-2', '17', 'abc')).toBe(false);
    // The broker reuses packet id 17 for another message: the mark is replaced, not added.
    store.saveReadings(readings(1), [{ ...mark, hash: 'def' }]);
    expect(store.hasIngestMark('mqtt-1', '17', 'abc')).toBe(false);
    expect(store.hasIngestMark('mqtt-1', '17', 'def')).toBe(true);
    expect(store.countReadings()).toBe(3);
    // A batch whose readings were all refused still records its mark.
    store.saveReadings([], [{ ...mark, key: '18' }]);
    expect(store.hasIngestMark('mqtt-1', '18', 'abc')).toBe(true);
  });

  it('writes readings and their mark atomically: a failing batch records neither', () => {
    const bad = { ...readings(1)[0]!, asset: null as unknown as string };
    expect(() =>
      store.saveReadings([...readings(2), bad], [{ source: 's', key: '1', hash: 'h', redelivered: false }]),
    ).toThrowError(expect.objectContaining({ code: 'VIGIL_ERR_STORE' }));
    expect(store.countReadings()).toBe(0);
    expect(store.hasIngestMark('s', '1', 'h')).toBe(false);
    expect(store.classStats().readings.rows).toBe(0);
  });

  it('gives the highest seq ever given per class, kept when the rows are gone and after reopening', () => {
    store.setForwarded(['alerts', 'results', 'readings']);
    expect(['alerts', 'results', 'readings'].map((c) => store.lastSeq(c as 'alerts'))).toEqual([0, 0, 0]);
    for (let n = 1; n <= 3; n++)
      store.saveResult(makeResult(n, { alert: n === 2 }).result, makeResult(n, { alert: n === 2 }).alert);
    store.saveReadings(readings(7, { receivedAt: NOW - 3 * HOUR }));
    expect(store.lastSeq('results')).toBe(3);
    expect(store.lastSeq('alerts')).toBe(1);
    expect(store.lastSeq('readings')).toBe(7);
    store.markDelivered('readings', 7, NOW);
    expect(store.applyRetention(NOW).readingsDeleted).toBe(7);
    expect(store.lastSeq('readings')).toBe(7);
    store.close();
    store = Store.open(file, cfg, silentLogger());
    expect(store.lastSeq('readings')).toBe(7);
    store.saveReadings(readings(1));
    expect(store.lastSeq('readings')).toBe(8);
  });

  it('deletes a row that cannot be read, counts and logs it, and forwards the rows after it', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const logged = captureLogger();
    store.close();
    store = Store.open(file, cfg, logged.log, { metrics });
    store.setForwarded(['alerts', 'results', 'readings']);
    for (let n = 1; n <= 4; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      store.saveResult(result, alert);
    }
    // Damage as a bad write or a hand edit leaves it: JSON that does not parse, or is no alert.
    const raw = new Database(file);
    try {
      raw.prepare('UPDATE alerts SET payload = \'{"id": "alert-2", trunc\' WHERE seq = 2').run();
      raw.prepare("UPDATE alerts SET payload = 'null' WHERE seq = 3").run();
      raw.prepare("UPDATE results SET scores = 'not json' WHERE seq = 1").run();
    } finally {
      raw.close();
    }

    // The limit is still filled from the rows after the unreadable ones.
    expect(store.nextRows('alerts', 0, 2).map((r) => r.item.id)).toEqual(['alert-1', 'alert-4']);
    expect(store.nextRows('alerts', 0, 10).map((r) => r.seq)).toEqual([1, 4]);
    expect(store.nextRows('results', 0, 10).map((r) => r.seq)).toEqual([2, 3, 4]);
    expect(store.countAlerts()).toBe(2);
    expect(store.countResults()).toBe(3);
    expect(store.backlog('alerts')).toMatchObject({ rows: 2, oldestSeq: 1 });
    expect(store.backlog('results')).toMatchObject({ rows: 3, oldestSeq: 2 });
    expect(store.classStats().alerts).toMatchObject({ rows: 2, evicted: { delivered: 0, undelivered: 2 } });
    const { values } = await metrics.storeEvicted.get();
    expect(
      Object.fromEntries(
        values.map((v) => [`${v.labels.class}/${v.labels.delivered}/${v.labels.reason}`, v.value]),
      ),
    ).toEqual({ 'alerts/false/unreadable': 2, 'results/false/unreadable': 1 });
    const errors = logged.lines.filter((l) => l.level === LEVEL.error);
    expect(errors.map((l) => [l.class, l.seq])).toEqual([
      ['alerts', 2],
      ['alerts', 3],
      ['results', 1],
    ]);
    expect(errors[0]!.msg).toContain('alerts row seq 2 cannot be read');
  });

  it('walks retention of forwarded classes by seq up to the cursor, never through the old undelivered rows', () => {
    const statements: string[] = [];
    let tracing = false;
    other = Store.open(
      path.join(dir, 'retention.db'),
      StoreConfig.parse({ path: 'x', retentionHours: 1, minFreeDiskMiB: 0 }),
      silentLogger(),
      { traceSql: (sql) => void (tracing && statements.push(sql)) },
    );
    const s = other;
    s.setForwarded(['alerts', 'results', 'readings']);
    const old = NOW - 3 * HOUR;
    // Spans several walk windows (10 000 rows each), then rows inside the retention period.
    for (let i = 0; i < 25; i++) s.saveReadings(readings(1_000, { receivedAt: old + i }));
    s.saveReadings(readings(1_000, { receivedAt: NOW }));
    for (let n = 1; n <= 30; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: (n <= 20 ? old : NOW) + n });
      s.saveResult(result, alert);
      if (n !== 5) s.markAlertPublished(alert!.id, NOW);
    }
    // An outage: only part of the old rows went upstream.
    s.markDelivered('readings', 12_000, NOW);
    s.markDelivered('results', 8, NOW);
    s.markDelivered('alerts', 25, NOW);

    tracing = true;
    expect(s.applyRetention(NOW)).toEqual({
      readingsDeleted: 12_000,
      resultsDeleted: 8,
      alertsDeleted: 19, // 1-20 are old; 5 still waits for the local broker
      readingsMore: false,
    });
    tracing = false;
    expect(s.nextRows('readings', 0, 1)[0]!.seq).toBe(12_001);
    expect(
      s
        .nextRows('alerts', 0, 10)
        .map((r) => r.item.id)
        .slice(0, 2),
    ).toEqual(['alert-5', 'alert-21']);
    expect(s.backlog('readings')).toMatchObject({ rows: 14_000, oldestSeq: 12_001 });

    // Every statement walks the primary key: none goes through a time index, which would step
    // over every old undelivered row at each pass.
    const raw = new Database(path.join(dir, 'retention.db'));
    try {
      const plans = statements
        .filter((sql) => /^\s*(SELECT|DELETE)/i.test(sql))
        .map((sql) =>
          (raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail),
        );
      expect(plans.length).toBeGreaterThan(3);
      for (const plan of plans) {
        expect(plan.join(' | ')).not.toMatch(
          /received_at|produced_at|created_at|SCAN (readings|results|alerts)\b/,
        );
      }
    } finally {
      raw.close();
    }
  });
});
