import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamConfig } from '../../runtime/config/upstream.js';
import { UpstreamForwarder, type UpstreamForwarderOptions } from '../../runtime/forward/upstream.js';
import { DATA_CLASSES } from '../../runtime/forward/types.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { captureLog } from './capture-log.js';
import { startLink } from './link.js';
import { MemoryQueue } from './memory-queue.js';
import { receive, waitUntil } from './receiver.js';

/** Outages: a broker restarted under load, a stalled link, a broker that never answers. */

function config(url: string, extra: Record<string, unknown> = {}): UpstreamConfig {
  return UpstreamConfig.parse({ url, reconnect: { initialDelayMs: 50, maxDelayMs: 300 }, ...extra });
}

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('UpstreamForwarder through outages', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function forwarder(
    url: string,
    queue: MemoryQueue,
    extra: Record<string, unknown>,
    more: Partial<UpstreamForwarderOptions> = {},
  ): UpstreamForwarder {
    const f = new UpstreamForwarder({
      config: config(url, extra),
      deviceId: 'gw-out',
      queue,
      log: silentLogger(),
      env: {},
      ...more,
    });
    cleanups.push(() => f.stop(0));
    return f;
  }

  it('loses and reorders nothing when the broker is stopped under load and restarted on the same port', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'vigil-upstream-broker-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    let broker = await startMosquitto({ dataDir });
    cleanups.push(() => broker.stop());
    const receiver = await receive(broker.url, 'gw-out');
    cleanups.push(() => receiver.end());

    const queue = new MemoryQueue();
    queue.add('readings', 6_000);
    queue.add('results', 300);
    queue.add('alerts', 20);
    const f = forwarder(broker.url, queue, { batchSize: 100, maxRowsPerSecond: 4_000, maxInFlight: 4 });
    await f.start();
    await receiver.until(() => receiver.items('readings').length >= 1_000, 10_000, 'the drain under way');

    await broker.stop();
    // Rows keep coming while the upstream is away.
    queue.add('alerts', 5);
    queue.add('readings', 500);
    f.notify();
    await waitUntil(() => f.status().state === 'disconnected', 5_000, 'the disconnect to be seen');
    await sleepMs(300);
    broker = await startMosquitto({ dataDir, port: broker.port });

    const total = { alerts: 25, results: 300, readings: 6_500 };
    await receiver.until(
      () => DATA_CLASSES.every((c) => receiver.items(c).length === total[c]),
      20_000,
      'every row after the restart',
    );
    for (const cls of DATA_CLASSES) {
      const seqs = receiver.items(cls).map((i) => i.seq);
      expect(seqs, cls).toEqual(Array.from({ length: total[cls] }, (_, i) => i + 1));
    }
    await waitUntil(
      () => DATA_CLASSES.every((c) => queue.acked[c] === queue.lastSeq(c)),
      5_000,
      'the cursors to reach the last seq',
    );
    expect(f.status().state).toBe('connected');
  });

  it('releases rows only on PUBACK: nothing is marked delivered while the broker does not answer', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const link = await startLink(broker.port);
    cleanups.push(() => link.close());
    const receiver = await receive(broker.url, 'gw-out');
    cleanups.push(() => receiver.end());
    const queue = new MemoryQueue();
    const f = forwarder(link.url, queue, { batchSize: 100, ackTimeoutMs: 60_000 });
    await f.start();
    expect(f.status().state).toBe('connected');

    link.stall();
    queue.add('readings', 300);
    queue.add('alerts', 2);
    f.notify();
    await waitUntil(() => link.heldBytes() > 10_000, 5_000, 'the messages to be sent into the stalled link');
    await sleepMs(400); // several persistence periods
    expect(queue.marks).toEqual([]);
    expect(queue.acked).toEqual({ alerts: 0, results: 0, readings: 0 });
    expect(receiver.messages).toEqual([]);

    link.resume();
    await waitUntil(() => queue.acked.readings === 300 && queue.acked.alerts === 2, 5_000, 'the cursors');
    await receiver.until(() => receiver.items('readings').length === 300, 5_000, 'the readings');
  });

  it('treats a missing PUBACK as lost after ackTimeoutMs: reconnects and resends in order', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const link = await startLink(broker.port);
    cleanups.push(() => link.close());
    const receiver = await receive(broker.url, 'gw-out');
    cleanups.push(() => receiver.end());
    const queue = new MemoryQueue();
    const metrics = new Metrics({ processMetrics: false });
    const { log, lines } = captureLog();
    const f = forwarder(
      link.url,
      queue,
      { batchSize: 50, ackTimeoutMs: 400 },
      { metrics, log, pollIntervalMs: 50, connectTimeoutMs: 500 },
    );
    await f.start();
    queue.add('readings', 100);
    f.notify();
    await waitUntil(() => queue.acked.readings === 100, 5_000, 'the first rows');

    link.stall();
    queue.add('readings', 400);
    f.notify();
    await waitUntil(() => f.status().state === 'disconnected', 5_000, 'the ack timeout');
    expect(f.status().lastError).toMatch(/no acknowledgement from the upstream broker within 400 ms/);
    expect(queue.acked.readings).toBe(100);
    link.resume();

    await receiver.until(() => receiver.items('readings').length === 500, 10_000, 'every reading');
    const seqs = receiver.items('readings').map((i) => i.seq);
    expect(seqs).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    await waitUntil(() => queue.acked.readings === 500, 5_000, 'the cursor');
    const failed = (await metrics.registry.getMetricsAsJSON())
      .find((m) => m.name === 'vigil_upstream_messages_total')!
      .values.find((v) => v.labels.outcome === 'failed');
    expect(failed?.value).toBeGreaterThanOrEqual(1);
    // One line per state change: lost once, reconnected once (the stalled attempts in between
    // are not logged each).
    expect(lines.filter((l) => /connection lost/.test(l.msg))).toHaveLength(1);
    expect(lines.filter((l) => /reconnected/.test(l.msg))).toHaveLength(1);
  });

  it('starts without its broker, keeps retrying, and delivers once the broker appears', async () => {
    const port = await freePort();
    const queue = new MemoryQueue();
    queue.add('alerts', 3);
    const f = forwarder(`mqtt://127.0.0.1:${port}`, queue, {});
    await f.start();
    expect(f.status().state).toBe('disconnected');
    expect(f.status().lastError).toMatch(/ECONNREFUSED/);

    const broker = await startMosquitto({ port });
    cleanups.push(() => broker.stop());
    await waitUntil(() => queue.acked.alerts === 3, 10_000, 'the alerts delivered');
    expect(f.status().state).toBe('connected');
  });

  it('stop() is bounded when the broker never answers, and marks nothing unacknowledged', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const link = await startLink(broker.port);
    cleanups.push(() => link.close());
    const queue = new MemoryQueue();
    const f = forwarder(link.url, queue, { ackTimeoutMs: 60_000 });
    await f.start();
    link.stall();
    queue.add('readings', 1_000);
    f.notify();
    await waitUntil(() => link.heldBytes() > 0, 5_000, 'messages in flight');

    const started = Date.now();
    await f.stop(800);
    const took = Date.now() - started;
    // The flush deadline plus the disconnect grace (1 s), with room for a slow machine.
    expect(took).toBeLessThan(4_000);
    expect(took).toBeGreaterThanOrEqual(700);
    expect(f.status().state).toBe('stopped');
    expect(queue.marks).toEqual([]);
  });

  it('stop() returns at once when the broker is unreachable', async () => {
    const port = await freePort();
    const queue = new MemoryQueue();
    queue.add('readings', 10);
    const f = forwarder(`mqtt://127.0.0.1:${port}`, queue, {});
    await f.start();
    const started = Date.now();
    await f.stop(5_000);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(f.status().state).toBe('stopped');
  });
});
