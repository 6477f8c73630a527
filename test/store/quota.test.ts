import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { Store, type StoreOptions } from '../../runtime/store/store.js';
import { makeResult } from './fixtures.js';
import { LEVEL, captureLogger, readings } from './helpers.js';

const MIB = 1024 * 1024;
const NOW = 1_764_000_000_000;

describe('store quotas and the free-disk floor', () => {
  let dir: string;
  let file: string;
  let store: Store | undefined;
  let metrics: Metrics;
  let logged: ReturnType<typeof captureLogger>;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-quota-'));
    file = path.join(dir, 'vigil.db');
    metrics = new Metrics({ processMetrics: false });
    logged = captureLogger();
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  function open(config: Record<string, unknown>, options: StoreOptions = {}): Store {
    store = Store.open(
      file,
      StoreConfig.parse({ path: 'x', retentionHours: 1e6, minFreeDiskMiB: 0, ...config }),
      logged.log,
      { metrics, ...options },
    );
    return store;
  }

  async function evictedMetric(): Promise<Record<string, number>> {
    const { values } = await metrics.storeEvicted.get();
    return Object.fromEntries(
      values.map((v) => [`${v.labels.class}/${v.labels.delivered}/${v.labels.reason}`, v.value]),
    );
  }

  function saveReadings(s: Store, n: number): void {
    for (let i = 0; i < n; i += 1000)
      s.saveReadings(readings(Math.min(1000, n - i), { receivedAt: NOW + i }));
  }

  it('measures bytes per class as dbstat does', () => {
    const s = open({});
    saveReadings(s, 10_000);
    s.enforceQuota(NOW);
    const raw = new Database(file, { readonly: true });
    try {
      const { bytes } = raw
        .prepare(
          "SELECT sum(pgsize) AS bytes FROM dbstat WHERE name IN ('readings', 'readings_received_at') AND aggregate = 1",
        )
        .get() as { bytes: number };
      expect(s.classStats().readings.bytes).toBe(bytes);
      expect(s.classStats().readings).toMatchObject({ rows: 10_000, quotaBytes: 4096 * MIB });
    } finally {
      raw.close();
    }
  });

  it('evicts delivered readings first, then the oldest undelivered, down to the quota, in bounded passes', async () => {
    const s = open({ quotaMiB: { readings: 0.25 } }, { evictBatchRows: 2_500 });
    s.setForwarded(['readings']);
    saveReadings(s, 10_000);
    s.markDelivered('readings', 2_000, NOW);

    const first = s.enforceQuota(NOW);
    expect(first.more).toBe(true);
    expect(first.evicted).toEqual([
      { class: 'readings', delivered: true, reason: 'quota', rows: 2_000 },
      { class: 'readings', delivered: false, reason: 'quota', rows: 500 },
    ]);
    let last = first;
    for (let i = 0; i < 10 && last.more; i++) last = s.enforceQuota(NOW);
    expect(last.more).toBe(false);

    const { rows, bytes, quotaBytes } = s.classStats().readings;
    expect(quotaBytes).toBe(0.25 * MIB);
    expect(bytes).toBeLessThanOrEqual(quotaBytes);
    expect(rows).toBeGreaterThan(1_000);
    // What is left is the newest, unbroken run, and the backlog says so.
    const oldest = 10_000 - rows + 1;
    expect(s.nextRows('readings', 0, 1)[0]!.seq).toBe(oldest);
    expect(s.backlog('readings')).toMatchObject({ rows, oldestSeq: oldest, ackedSeq: 2_000 });
    expect(s.classStats().readings.evicted).toEqual({ delivered: 2_000, undelivered: 10_000 - rows - 2_000 });
    expect(await evictedMetric()).toEqual({
      'readings/true/quota': 2_000,
      'readings/false/quota': 10_000 - rows - 2_000,
    });
    const { values } = await metrics.storeClassBytes.get();
    expect(values.find((v) => v.labels.class === 'readings')?.value).toBe(bytes);

    const lines = logged.lines.filter((l) => l.msg.startsWith('store evicted'));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines[0]).toMatchObject({ level: LEVEL.warn });
    expect(lines[0]!.msg).toContain('2000 readings (delivered, over store.quotaMiB.readings)');
    expect(lines[0]!.msg).toContain('500 readings (NOT delivered');
    expect(s.enforceQuota(NOW).evicted).toEqual([]);
  });

  it('evicts alerts delivered upstream and published first, then the oldest; losing alerts is an error', async () => {
    const s = open({ quotaMiB: { alerts: 0.03 } });
    s.setForwarded(['alerts']);
    for (let n = 1; n <= 300; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      s.saveResult(result, alert);
      if (n <= 100 || (n > 200 && n <= 250)) s.markAlertPublished(alert!.id, NOW + 100);
    }
    s.markDelivered('alerts', 200, NOW + 100);

    const outcome = s.enforceQuota(NOW);
    const left = s.classStats().alerts.rows;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(100);
    expect(s.classStats().alerts.bytes).toBeLessThanOrEqual(0.03 * MIB);
    // 1-100: delivered; then 101-200 (upstream, not yet published locally), then 201... by seq.
    expect(outcome.evicted).toEqual([
      { class: 'alerts', delivered: true, reason: 'quota', rows: 100 },
      { class: 'alerts', delivered: false, reason: 'quota', rows: 200 - left },
    ]);
    expect(s.nextRows('alerts', 0, 1000).map((r) => r.seq)).toEqual(
      Array.from({ length: left }, (_, i) => 301 - left + i),
    );
    expect(s.backlog('alerts')).toMatchObject({ rows: left, oldestSeq: 301 - left });
    expect(s.classStats().alerts.evicted).toEqual({ delivered: 100, undelivered: 200 - left });
    expect(await evictedMetric()).toEqual({ 'alerts/true/quota': 100, 'alerts/false/quota': 200 - left });
    const line = logged.lines.find((l) => l.msg.startsWith('store evicted'));
    expect(line).toMatchObject({ level: LEVEL.error });
    expect(line!.msg).toContain('alerts (NOT delivered');
    // Results are a class of their own: untouched.
    expect(s.countResults()).toBe(300);
  });

  it('counts rows of classes that are not forwarded as delivered, except alerts still in the outbox', async () => {
    const s = open({ quotaMiB: { alerts: 0.02, readings: 0.1 } });
    saveReadings(s, 3_000);
    for (let n = 1; n <= 300; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      s.saveResult(result, alert);
      if (n % 4 === 0) s.markAlertPublished(alert!.id, NOW + 100);
    }
    s.enforceQuota(NOW);
    const left = s.classStats().alerts.rows;
    expect(left).toBeGreaterThan(0);
    const metric = await evictedMetric();
    expect(metric['readings/true/quota']).toBe(3_000 - s.classStats().readings.rows);
    expect(metric['readings/false/quota']).toBeUndefined();
    expect(metric['alerts/true/quota']).toBe(75);
    expect(metric['alerts/false/quota']).toBe(225 - left);
    // The outbox keeps the newest unpublished alerts.
    const outbox = s.unpublishedAlerts(1000).map((a) => a.id);
    expect(outbox).toHaveLength(left);
    expect(outbox.at(-1)).toBe('alert-299');
  });

  function pageCount(): number {
    const raw = new Database(file, { readonly: true });
    try {
      return Number(raw.pragma('page_count', { simple: true }));
    } finally {
      raw.close();
    }
  }

  function evictedRows(outcome: { evicted: { class: string; rows: number }[] }, cls: string): number {
    return outcome.evicted.filter((e) => e.class === cls).reduce((n, e) => n + e.rows, 0);
  }

  it('below the free-disk floor stops growing instead of emptying the store, and never evicts alerts for it', async () => {
    // The default floor (256 MiB) above what the disk has free (200 MiB): no eviction can close
    // that gap, so none may try to.
    const s = open({ minFreeDiskMiB: 256 }, { freeDiskBytes: () => 200 * MIB });
    s.setForwarded(['alerts', 'results', 'readings']);
    saveReadings(s, 5_000);
    for (let n = 1; n <= 40; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      s.saveResult(result, alert);
    }
    s.markDelivered('readings', 2_000, NOW);

    // No write rate known yet: only the smallest reserve (16 pages), from delivered readings.
    const first = s.enforceQuota(NOW);
    expect(first.more).toBe(false);
    expect(first.evicted.map((e) => [e.class, e.delivered, e.reason])).toEqual([['readings', true, 'disk']]);
    expect(evictedRows(first, 'readings')).toBeGreaterThan(100);
    expect(
      evictedRows(first, 'readings') * (s.classStats().readings.bytes / s.classStats().readings.rows),
    ).toBeLessThanOrEqual(17 * 4096);
    const warned = logged.lines.filter((l) => l.msg.includes('below store.minFreeDiskMiB (256 MiB)'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: LEVEL.warn });

    // Nothing written since: once the room is there, checks evict nothing, however long the
    // disk stays below the floor.
    let total = evictedRows(first, 'readings');
    let quiet = 0;
    for (let i = 1; i <= 10 && quiet < 2; i++) {
      const outcome = s.enforceQuota(NOW + i * 10_000);
      total += evictedRows(outcome, 'readings');
      expect(evictedRows(outcome, 'results') + evictedRows(outcome, 'alerts')).toBe(0);
      quiet = outcome.evicted.length === 0 ? quiet + 1 : 0;
    }
    expect(quiet).toBe(2);
    expect(total).toBeLessThan(2_000);
    expect(s.countResults()).toBe(40);
    expect(s.countAlerts()).toBe(40);
    expect(s.countAlerts({ published: false })).toBe(40);
    expect(s.classStats().readings.rows).toBe(5_000 - total);
    expect(await evictedMetric()).toEqual({ 'readings/true/disk': total });
    expect(logged.lines.filter((l) => l.msg.includes('the store stops growing'))).toHaveLength(1);
  });

  it('below the floor evicts about what is written, so the file keeps its size', () => {
    const s = open({ minFreeDiskMiB: 256, quotaCheckSeconds: 10 }, { freeDiskBytes: () => 200 * MIB });
    saveReadings(s, 20_000);
    for (let n = 1; n <= 20; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      s.saveResult(result, alert);
    }
    s.enforceQuota(NOW);
    const pages: number[] = [];
    const evicted: number[] = [];
    for (let k = 1; k <= 12; k++) {
      for (let i = 0; i < 5; i++) s.saveReadings(readings(1_000, { receivedAt: NOW + k * 10_000 + i }));
      const outcome = s.enforceQuota(NOW + k * 10_000);
      expect(outcome.more).toBe(false);
      evicted.push(evictedRows(outcome, 'readings'));
      pages.push(pageCount());
    }
    // The first interval's writes grow the file once (no write rate was known); from then on
    // the file keeps its size while each check evicts about one interval's rows.
    expect(Math.max(...pages.slice(2))).toBeLessThanOrEqual(pages[1]!);
    const steady = evicted.slice(2);
    const mean = steady.reduce((a, b) => a + b, 0) / steady.length;
    expect(mean).toBeGreaterThan(4_000);
    expect(mean).toBeLessThan(6_500);
    expect(Math.max(...evicted)).toBeLessThan(12_000);
    expect(s.countAlerts()).toBe(20);
    expect(s.countResults()).toBe(20);
  });

  it('below the floor takes delivered readings and results before anything undelivered, alerts never', async () => {
    let free = 10 * MIB;
    const s = open({ minFreeDiskMiB: 1 }, { freeDiskBytes: () => free, evictBatchRows: 1_000 });
    s.setForwarded(['alerts', 'results', 'readings']);
    saveReadings(s, 5_000);
    for (let n = 1; n <= 40; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      s.saveResult(result, alert);
      s.markAlertPublished(alert!.id, NOW);
    }
    s.markDelivered('readings', 2_000, NOW);
    s.markDelivered('results', 10, NOW);
    s.markDelivered('alerts', 40, NOW);
    // Enough free space: nothing to do.
    expect(s.enforceQuota(NOW).evicted).toEqual([]);

    // Nothing free at all, and 3 000 readings written in the interval: room for about twice
    // that is made, in bounded passes, delivered rows first; alerts, even delivered, stay.
    free = 0;
    saveReadings(s, 3_000);
    const passes = [];
    let outcome = s.enforceQuota(NOW + 10_000);
    passes.push(outcome);
    for (let i = 0; i < 20 && outcome.more; i++) {
      outcome = s.enforceQuota(NOW + 10_000);
      passes.push(outcome);
    }
    expect(outcome.more).toBe(false);
    expect(passes.length).toBeGreaterThan(2);
    const order: string[] = [];
    for (const e of passes.flatMap((p) => p.evicted)) {
      const key = `${e.class}/${e.delivered}`;
      if (order.at(-1) !== key) order.push(key);
    }
    expect(order).toEqual(['readings/true', 'results/true', 'readings/false']);
    const metric = await evictedMetric();
    expect(metric['readings/true/disk']).toBe(2_000);
    expect(metric['results/true/disk']).toBe(10);
    expect(metric['readings/false/disk']).toBeGreaterThan(2_000);
    expect(metric['readings/false/disk']).toBeLessThan(6_000);
    expect(s.countResults()).toBe(30);
    expect(s.countAlerts()).toBe(40);
    // The room is there now: the same check evicts nothing more.
    expect(s.enforceQuota(NOW + 10_000).evicted).toEqual([]);
    expect(logged.lines.filter((l) => l.msg.startsWith('store evicted')).at(-1)).toMatchObject({
      level: LEVEL.warn,
    });
  });
});
