import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamConfig } from '../../runtime/config/upstream.js';
import { UpstreamForwarder } from '../../runtime/forward/upstream.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { captureLog } from './capture-log.js';
import { startLink } from './link.js';
import { MemoryQueue } from './memory-queue.js';
import { receive, waitUntil } from './receiver.js';

/**
 * Slow links (a few KB/s, as over a weak cellular or radio connection): the forwarder must take
 * the link as dead only when nothing at all is acknowledged for ackTimeoutMs, and adapt what it
 * puts on the link so that it converges instead of reconnecting forever. A reading is ~200 bytes
 * in its message.
 */

async function failedMessages(metrics: Metrics): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find(
    (m) => m.name === 'vigil_upstream_messages_total',
  );
  return metric?.values.filter((v) => v.labels.outcome === 'failed').reduce((n, v) => n + v.value, 0) ?? 0;
}

describe('UpstreamForwarder over a slow link', () => {
  let broker: RunningMosquitto;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  async function run(device: string, bytesPerSecond: number, extra: Record<string, unknown>) {
    const link = await startLink(broker.port, { bytesPerSecond });
    cleanups.push(() => link.close());
    const receiver = await receive(broker.url, device);
    cleanups.push(() => receiver.end());
    const queue = new MemoryQueue();
    const metrics = new Metrics({ processMetrics: false });
    const { log, lines } = captureLog();
    const forwarder = new UpstreamForwarder({
      config: UpstreamConfig.parse({
        url: link.url,
        reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
        ...extra,
      }),
      deviceId: device,
      queue,
      log,
      metrics,
      env: {},
      pollIntervalMs: 50,
    });
    cleanups.push(() => forwarder.stop(0));
    return { queue, receiver, forwarder, metrics, lines };
  }

  it('does not time out while acknowledgements keep coming, however long the window takes to drain', async () => {
    // ~4 KB messages at 20 KB/s: one is acknowledged every ~200 ms, but the ten in flight take
    // ~2 s together, twice the ack timeout.
    const { queue, receiver, forwarder, metrics, lines } = await run('gw-slow-window', 20_000, {
      batchSize: 20,
      maxInFlight: 10,
      ackTimeoutMs: 1_000,
    });
    queue.add('readings', 300);
    await forwarder.start();
    await receiver.until(() => receiver.items('readings').length === 300, 20_000, 'every reading');

    const seqs = receiver.items('readings').map((i) => i.seq);
    expect(seqs).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // Every row went once: no message was given up and resent.
    expect(receiver.messages.flatMap((m) => m.items)).toHaveLength(300);
    expect(await failedMessages(metrics)).toBe(0);
    expect(lines.filter((l) => /connection lost/.test(l.msg))).toEqual([]);
    await waitUntil(() => queue.acked.readings === 300, 5_000, 'the cursor');
  });

  it('converges when one full message takes longer than the ack timeout: smaller messages, in order', async () => {
    // A 100-row message (~20 KB) takes ~1.2 s at 16 KB/s, more than twice the ack timeout.
    const { queue, receiver, forwarder, metrics, lines } = await run('gw-slow-message', 16_000, {
      batchSize: 100,
      maxInFlight: 8,
      ackTimeoutMs: 500,
    });
    queue.add('readings', 200);
    queue.add('alerts', 3);
    await forwarder.start();
    await receiver.until(
      () => receiver.items('readings').length === 200 && receiver.items('alerts').length === 3,
      30_000,
      'every row',
    );

    expect(receiver.items('readings').map((i) => i.seq)).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    expect(receiver.items('alerts').map((i) => i.seq)).toEqual([1, 2, 3]);
    // The link was given up at least once, and what got through was cut smaller than batchSize.
    expect(await failedMessages(metrics)).toBeGreaterThan(0);
    expect(Math.max(...receiver.messages.map((m) => m.items.length))).toBeLessThan(100);
    const timeout = lines.find((l) => /connection lost/.test(l.msg));
    expect(timeout?.err).toMatch(/no acknowledgement from the upstream broker within 500 ms/);
    expect(timeout?.err).toMatch(/at most \d+ messages? of \d+ rows/);
    await waitUntil(() => queue.acked.readings === 200 && queue.acked.alerts === 3, 5_000, 'the cursors');
  });
});
