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

  it('under the free-disk floor evicts readings first, then results, alerts last, delivered first in each', async () => {
    let free = 0;
    const s = open({ minFreeDiskMiB: 1 }, { freeDiskBytes: () => free });
    s.setForwarded(['alerts', 'results', 'readings']);
    saveReadings(s, 5_000);
    for (let n = 1; n <= 40; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: NOW + n });
      s.saveResult(result, alert);
      s.markAlertPublished(alert!.id, NOW);
    }
    s.markDelivered('readings', 1_000, NOW);
    s.markDelivered('results', 10, NOW);
    s.markDelivered('alerts', 10, NOW);
    // Enough free space: nothing to do.
    free = 10 * MIB;
    expect(s.enforceQuota(NOW).evicted).toEqual([]);

    // About 2000 readings' worth short: only readings go.
    const perReading = s.classStats().readings.bytes / 5_000;
    free = MIB - 2_000 * perReading;
    const partial = s.enforceQuota(NOW);
    expect(partial.evicted.map((e) => [e.class, e.delivered, e.reason])).toEqual([
      ['readings', true, 'disk'],
      ['readings', false, 'disk'],
    ]);
    expect(partial.evicted[0]!.rows).toBe(1_000);
    expect(s.countResults()).toBe(40);
    expect(s.countAlerts()).toBe(40);

    // Nothing free: everything goes, in priority order.
    free = 0;
    const all = s.enforceQuota(NOW);
    expect(all.evicted.map((e) => [e.class, e.delivered])).toEqual([
      ['readings', false],
      ['results', true],
      ['results', false],
      ['alerts', true],
      ['alerts', false],
    ]);
    expect(all.evicted.filter((e) => e.class === 'results').map((e) => e.rows)).toEqual([10, 30]);
    expect(s.classStats().readings.rows).toBe(0);
    const metric = await evictedMetric();
    expect(metric['readings/true/disk']).toBe(1_000);
    expect(metric['alerts/false/disk']).toBeGreaterThan(0);
    expect(logged.lines.filter((l) => l.msg.startsWith('store evicted')).at(-1)).toMatchObject({
      level: LEVEL.error,
    });
  });
});
