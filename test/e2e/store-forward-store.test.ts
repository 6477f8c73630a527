import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { DaemonProcess, UNBOUNDED_QUEUE, readingKey, type DaemonStatus } from '../../bench/soak.js';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { waitFor } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { UpstreamReceiver } from '../helpers/upstream-receiver.js';
import { makeResult } from '../store/fixtures.js';

/**
 * The store's policies seen from outside `vigil run`: a readings quota that evicts the oldest
 * readings (counted, visible in the status) while alerts stay and are delivered first once the
 * upstream broker is back; and a damaged database file (garbage, or a truncated database) moved
 * aside at start, with the daemon starting on a new store and readings flowing again.
 */

const FIELDS = 50; // numeric fields per message: 50 readings each

let input: RunningMosquitto;
let dir: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  input = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
});

afterAll(async () => {
  await input?.stop();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  if (dir) await rm(dir, { recursive: true, force: true });
});

let configs = 0;

/** Writes a config (upstream at `upstreamUrl`) and starts `vigil run`; stopped after the test. */
async function start(
  dbFile: string,
  upstreamUrl: string,
  store: Record<string, unknown> = {},
): Promise<DaemonProcess> {
  const httpPort = await freePort();
  const file = path.join(dir, `vigil-${++configs}.yaml`);
  await writeFile(
    file,
    stringify({
      version: 1,
      device: { id: 'store-gw' },
      http: { port: httpPort },
      mqtt: { url: input.url },
      store: { path: dbFile, ...store },
      upstream: {
        url: upstreamUrl,
        batchSize: 500,
        maxRowsPerSecond: 100_000,
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
        flushOnStopSeconds: 1,
      },
      shutdown: { timeoutSeconds: 5 },
      models: {},
      pipelines: {},
      sources: {
        line1: {
          type: 'mqtt-json',
          url: input.url,
          // A session of its own per daemon: nothing queued for an earlier test's daemon.
          clientId: `vigil-store-test-${configs}`,
          qos: 1,
          reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
          subscriptions: [
            {
              topic: `store${configs}/+/telemetry`,
              asset: '{1}',
              allNumericFields: true,
              timestampField: 'ts',
            },
          ],
        },
      },
    }),
  );
  const d = new DaemonProcess(file, `http://127.0.0.1:${httpPort}`);
  cleanups.push(() => d.kill());
  if (!(await d.waitReady())) throw new Error(`vigil run did not become ready:\n${d.logs()}`);
  await waitFor('source line1 up', async () =>
    (await d.status())?.telemetry?.line1?.state === 'up' ? true : undefined,
  );
  return d;
}

/** Publishes `messages` messages of FIELDS readings each (values n*1000+i) to the latest config's topic. */
async function publish(asset: string, from: number, messages: number): Promise<string[]> {
  const client = await mqtt.connectAsync(input.url);
  const keys: string[] = [];
  try {
    const sends: Promise<unknown>[] = [];
    for (let n = from; n < from + messages; n++) {
      const payload: Record<string, number> = { ts: Date.now() };
      for (let i = 0; i < FIELDS; i++) {
        payload[`f${i}`] = n * 1000 + i;
        keys.push(readingKey(asset, `f${i}`, n * 1000 + i));
      }
      sends.push(
        client.publishAsync(`store${configs}/${asset}/telemetry`, JSON.stringify(payload), { qos: 1 }),
      );
    }
    await Promise.all(sends);
  } finally {
    await client.endAsync();
  }
  return keys;
}

async function status(d: DaemonProcess): Promise<DaemonStatus> {
  const s = await d.status();
  if (!s) throw new Error(`no status:\n${d.logs().slice(-5_000)}`);
  return s;
}

const goodReadings = async (d: DaemonProcess) => (await d.status())?.telemetry?.line1?.readings?.good ?? 0;

/** Sum of a counter's samples whose labels include `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

describe('store quotas and damaged databases (vigil run)', () => {
  it('evicts the oldest readings over the quota, counted, keeps the alerts, and delivers alerts first', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-sf-store-'));
    const dbFile = path.join(dir, 'vigil.db');
    // Alerts already in the store, not yet delivered upstream (no pipeline needed to make them).
    const seeded = Store.open(dbFile, StoreConfig.parse({ path: dbFile }), silentLogger());
    const alertIds: string[] = [];
    for (let n = 1; n <= 5; n++) {
      const { result, alert } = makeResult(n, { alert: true, producedAt: Date.now() });
      seeded.saveResult(result, alert);
      alertIds.push(alert!.id);
    }
    seeded.close();

    // The upstream broker: the receiver's persistent session is made first, then the broker
    // stops (keeping the session on disk) so that nothing can be delivered meanwhile.
    const brokerData = path.join(dir, 'upstream-broker');
    await mkdir(brokerData);
    let upstream = await startMosquitto({ dataDir: brokerData, extraConfig: UNBOUNDED_QUEUE });
    cleanups.push(() => upstream.stop());
    const port = upstream.port;
    const receiver = await UpstreamReceiver.start({ url: upstream.url });
    cleanups.push(() => receiver.stop());
    await upstream.stop();

    const d = await start(dbFile, `mqtt://127.0.0.1:${port}`, {
      quotaMiB: { readings: 1 },
      quotaCheckSeconds: 1,
      minFreeDiskMiB: 0,
    });
    // 600 messages x 50 readings: several times what 1 MiB holds.
    const published = await publish('pump-1', 1, 600);
    await waitFor('all readings stored', async () =>
      (await goodReadings(d)) >= published.length ? true : undefined,
    );
    // Settled: a pass has evicted, the class is within its quota, and the upstream backlog
    // (refreshed about once a second) counts the same rows; then every figure is checked.
    let s = await status(d);
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; s = await status(d)) {
      const c = s.store?.classes?.readings;
      if (
        c &&
        c.evicted.undelivered > 0 &&
        c.bytes <= c.quotaBytes &&
        s.upstream?.classes?.readings?.rows === c.rows
      )
        break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const readings = s.store!.classes!.readings!;
    const alerts = s.store!.classes!.alerts!;
    const backlog = s.upstream!.classes!.readings!;
    const metrics = await d.metrics();
    console.log(
      `store-forward quota: ${published.length} readings stored, ${readings.evicted.undelivered} evicted ` +
        `undelivered, ${readings.rows} kept in ${readings.bytes} bytes (quota ${readings.quotaBytes})`,
    );
    expect(readings.quotaBytes).toBe(1024 * 1024);
    expect(readings.evicted.delivered).toBe(0);
    expect(readings.rows + readings.evicted.undelivered).toBe(published.length);
    expect(metricSum(metrics, 'vigil_store_evicted_total', { class: 'readings', delivered: 'false' })).toBe(
      readings.evicted.undelivered,
    );
    expect(readings.evicted.undelivered).toBeGreaterThan(0);
    expect(readings.bytes).toBeLessThanOrEqual(readings.quotaBytes);
    // Oldest first: what is left is the newest rows, one contiguous run of seqs.
    expect(backlog.rows).toBe(readings.rows);
    expect(backlog.oldestSeq).toBe(readings.evicted.undelivered + 1);
    expect(alerts.rows).toBe(5);
    expect(alerts.evicted).toEqual({ delivered: 0, undelivered: 0 });
    expect(metricSum(metrics, 'vigil_store_evicted_total', { class: 'alerts' })).toBe(0);

    // The broker comes back: the alerts go first, then exactly the kept (newest) readings.
    upstream = await startMosquitto({ port, dataDir: brokerData, extraConfig: UNBOUNDED_QUEUE });
    await receiver.until(
      () => receiver.count('readings') >= readings.rows && receiver.count('alerts') >= 5,
      'the kept rows upstream',
    );
    const items = receiver.items();
    expect(items[0]!.cls).toBe('alerts');
    expect(receiver.items('alerts').map((r) => r.item.id)).toEqual(alertIds);
    const received = receiver.items('readings').map((r) => {
      const x = r.item as { asset: string; tag: string; value: number };
      return readingKey(x.asset, x.tag, x.value);
    });
    expect(received).toEqual(published.slice(published.length - readings.rows));
    const check = receiver.check();
    expect(check.gaps).toEqual([]);
    expect(check.orderViolations).toEqual([]);
    expect(check.malformed).toEqual([]);
    expect((await d.terminate()).code).toBe(0);
  }, 60_000);

  describe('a damaged database at store.path', () => {
    let upstream: RunningMosquitto;
    let receiver: UpstreamReceiver;

    beforeAll(async () => {
      upstream = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
      receiver = await UpstreamReceiver.start({ url: upstream.url });
    });

    afterAll(async () => {
      await receiver?.stop();
      await upstream?.stop();
    });

    /** Starts on the damaged file and checks the recovery; returns the daemon and its new store id. */
    async function startRecovered(
      dbFile: string,
      damagedSize: number,
    ): Promise<{ d: DaemonProcess; id: string }> {
      const d = await start(dbFile, upstream.url);
      const s = await status(d);
      const recovery = s.store?.recovery;
      expect(s.store?.id).toBeDefined();
      expect(recovery, JSON.stringify(s.store)).toBeDefined();
      expect(path.dirname(recovery!.movedTo)).toBe(path.dirname(dbFile));
      expect(path.basename(recovery!.movedTo)).toMatch(/^vigil\.db\.corrupt-/);
      expect(existsSync(recovery!.movedTo)).toBe(true);
      expect(statSync(recovery!.movedTo).size).toBe(damagedSize);
      expect(recovery!.reason.length).toBeGreaterThan(0);
      expect((await readdir(dir)).filter((f) => f.startsWith('vigil.db.corrupt-'))).toEqual([
        path.basename(recovery!.movedTo),
      ]);
      // One error line naming the moved file.
      const lines = d.errorLines().filter((l) => l.includes(recovery!.movedTo));
      expect(lines.length, d.logs().slice(-5_000)).toBe(1);
      expect(metricSum(await d.metrics(), 'vigil_store_recoveries_total', {})).toBe(1);
      return { d, id: s.store!.id! };
    }

    /** Readings published now arrive upstream under store `id`. */
    async function flows(d: DaemonProcess, id: string, asset: string): Promise<void> {
      const keys = new Set(await publish(asset, 1, 20));
      await receiver.until(
        () =>
          receiver.items('readings').filter((r) => (r.item as { asset: string }).asset === asset).length >=
          keys.size,
        `readings of ${asset} upstream`,
      );
      const got = receiver
        .items('readings')
        .map((r) => ({ store: r.store, reading: r.item as { asset: string; tag: string; value: number } }))
        .filter((r) => r.reading.asset === asset);
      expect(new Set(got.map((r) => r.store))).toEqual(new Set([id]));
      expect(got.map((r) => readingKey(asset, r.reading.tag, r.reading.value))).toEqual([...keys]);
      expect((await d.terminate()).code).toBe(0);
    }

    it('moves a file that is not a database aside and starts a new store', async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-sf-garbage-'));
      const dbFile = path.join(dir, 'vigil.db');
      await writeFile(dbFile, Buffer.alloc(64 * 1024, 'this is not an SQLite database\n'));
      const { d, id } = await startRecovered(dbFile, 64 * 1024);
      await flows(d, id, 'garbage-1');
    }, 60_000);

    it('moves a truncated database aside and starts a new store with a new id', async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-sf-truncated-'));
      const dbFile = path.join(dir, 'vigil.db');
      const first = await start(dbFile, upstream.url);
      const firstId = (await status(first)).store?.id;
      expect(firstId).toBeDefined();
      const published = await publish('before-1', 1, 200);
      await waitFor('readings stored', async () =>
        (await goodReadings(first)) >= published.length ? true : undefined,
      );
      expect((await first.terminate()).code).toBe(0);
      // A clean stop leaves one file (a truncating checkpoint): cut it to 60 %.
      expect(existsSync(`${dbFile}-wal`) ? statSync(`${dbFile}-wal`).size : 0).toBe(0);
      const size = Math.floor(statSync(dbFile).size * 0.6);
      await truncate(dbFile, size);
      const { d, id } = await startRecovered(dbFile, size);
      expect(id).not.toBe(firstId);
      await flows(d, id, 'truncated-1');
    }, 60_000);
  });
});
