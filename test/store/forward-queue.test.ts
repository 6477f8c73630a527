import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { makeResult } from './fixtures.js';
import { readings } from './helpers.js';

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

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-fq-'));
    file = path.join(dir, 'vigil.db');
    store = Store.open(file, cfg, silentLogger());
  });
  afterEach(() => {
    store.close();
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
});
