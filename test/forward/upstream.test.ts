import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamConfig } from '../../runtime/config/upstream.js';
import { VigilError } from '../../runtime/errors.js';
import { UpstreamForwarder } from '../../runtime/forward/upstream.js';
import { DATA_CLASSES, type DataClass } from '../../runtime/forward/types.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { captureLog } from './capture-log.js';
import { MemoryQueue } from './memory-queue.js';
import { receive, waitUntil, type Receiver } from './receiver.js';

function config(url: string, extra: Record<string, unknown> = {}): UpstreamConfig {
  return UpstreamConfig.parse({ url, reconnect: { initialDelayMs: 50, maxDelayMs: 300 }, ...extra });
}

async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

describe('UpstreamForwarder against Mosquitto', () => {
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

  async function setup(
    device: string,
    queue: MemoryQueue,
    extra: Record<string, unknown> = {},
    more: Partial<ConstructorParameters<typeof UpstreamForwarder>[0]> = {},
  ): Promise<{ forwarder: UpstreamForwarder; receiver: Receiver }> {
    const receiver = await receive(broker.url, device);
    cleanups.push(() => receiver.end());
    const forwarder = new UpstreamForwarder({
      config: config(broker.url, extra),
      deviceId: device,
      queue,
      log: silentLogger(),
      env: {},
      ...more,
    });
    cleanups.push(() => forwarder.stop(0));
    return { forwarder, receiver };
  }

  it('delivers every class in order, alerts first, in vigil.upstream.v1 envelopes, and moves the cursor on PUBACK', async () => {
    const queue = new MemoryQueue();
    queue.add('readings', 450);
    queue.add('results', 5);
    queue.add('alerts', 3);
    const metrics = new Metrics({ processMetrics: false });
    // A long poll interval: new rows below must go out because of notify(), not the poll.
    const { forwarder, receiver } = await setup(
      'gw-1',
      queue,
      { batchSize: 100 },
      { metrics, pollIntervalMs: 60_000 },
    );
    await forwarder.start();
    expect(forwarder.status().state).toBe('connected');
    await receiver.until(() => receiver.items('readings').length === 450, 10_000, '450 readings');

    expect(receiver.messages[0]!.class).toBe('alerts');
    expect(receiver.messages[1]!.class).toBe('results');
    for (const m of receiver.messages) {
      expect(m.topic).toBe(`vigil/gw-1/upstream/${m.class}`);
      expect(m.schema).toBe('vigil.upstream.v1');
      expect(m.device).toBe('gw-1');
      expect(m.store).toBe(queue.storeId);
      expect(m.items.length).toBeGreaterThan(0);
      expect(m.items.length).toBeLessThanOrEqual(100);
      expect(m.first).toBe(m.items[0]!.seq);
      expect(m.last).toBe(m.items[m.items.length - 1]!.seq);
      expect(new Date(m.sentAt).toISOString()).toBe(m.sentAt);
    }
    const expectSeqs = (cls: DataClass, n: number) =>
      expect(receiver.items(cls).map((i) => i.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expectSeqs('alerts', 3);
    expectSeqs('results', 5);
    expectSeqs('readings', 450);
    expect(receiver.items('readings')[0]).toMatchObject({
      id: `${queue.storeId}/1`,
      asset: 'press-1',
      tag: 'pressure',
      quality: 'good',
    });
    expect(receiver.items('alerts')[0]).toMatchObject({ id: `alert-${queue.storeId}-1`, kind: 'defect' });

    // Cursors are persisted, coalesced, only up to what was acknowledged.
    await waitUntil(
      () => queue.acked.readings === 450 && queue.acked.alerts === 3 && queue.acked.results === 5,
    );
    for (const mark of queue.marks) expect(mark.seq).toBeLessThanOrEqual(queue.lastSeq(mark.cls));
    expect(queue.marks.length).toBeLessThan(receiver.messages.length);

    queue.add('alerts', 1);
    forwarder.notify();
    await receiver.until(() => receiver.items('alerts').length === 4, 5_000, 'the 4th alert after notify()');

    await waitUntil(() => queue.acked.alerts === 4);
    expect(await metricValue(metrics, 'vigil_upstream_rows_delivered_total', { class: 'readings' })).toBe(
      450,
    );
    expect(await metricValue(metrics, 'vigil_upstream_rows_delivered_total', { class: 'alerts' })).toBe(4);
    expect(
      await metricValue(metrics, 'vigil_upstream_messages_total', { class: 'readings', outcome: 'acked' }),
    ).toBe(5);
    expect(await metricValue(metrics, 'vigil_upstream_connected', {})).toBe(1);

    const status = forwarder.status();
    expect(status).toMatchObject({ enabled: true, state: 'connected', clientId: 'vigil-gw-1-upstream' });
    expect(status.classes.readings.deliveredThisRun).toBe(450);
    expect(status.classes.alerts.deliveredThisRun).toBe(4);
    expect(status.drainRowsPerSecond).toBeGreaterThan(0);
    await forwarder.stop();
    expect(forwarder.status().state).toBe('stopped');
    expect(await metricValue(metrics, 'vigil_upstream_connected', {})).toBe(0);
  });

  it('sends an alert stored during a large readings drain in the next message picked', async () => {
    const queue = new MemoryQueue();
    queue.add('readings', 20_000);
    const { forwarder, receiver } = await setup('gw-prio', queue, {
      batchSize: 100,
      maxRowsPerSecond: 4_000,
      maxInFlight: 2,
    });
    await forwarder.start();
    await receiver.until(
      () => receiver.items('readings').length >= 1_000,
      10_000,
      'the drain to be under way',
    );

    const picksBefore = queue.picks.length;
    queue.add('alerts', 2);
    forwarder.notify();
    await receiver.until(() => receiver.items('alerts').length === 2, 5_000, 'the alerts');

    expect(queue.picks[picksBefore]).toEqual({ cls: 'alerts', first: 1 });
    const alertAt = receiver.messages.findIndex((m) => m.class === 'alerts');
    const readingsBefore = receiver.messages.slice(0, alertAt).flatMap((m) => m.items).length;
    expect(readingsBefore).toBeLessThan(20_000);
    await receiver.until(
      () => receiver.messages.slice(alertAt + 1).some((m) => m.class === 'readings'),
      5_000,
      'readings after the alert',
    );
    // The drain resumed where it was, in order.
    const seqs = receiver.items('readings').map((i) => i.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  });

  it('honours maxRowsPerSecond: rows received by time t are at most rate·t + burst', async () => {
    const queue = new MemoryQueue();
    queue.add('readings', 2_500);
    const t0 = Date.now();
    const { forwarder, receiver } = await setup('gw-rate', queue, {
      batchSize: 100,
      maxRowsPerSecond: 1_000,
    });
    await forwarder.start();
    await receiver.until(() => receiver.items('readings').length === 2_500, 15_000, 'all readings');

    const rate = 1_000;
    const burst = 1_000;
    let received = 0;
    for (const m of receiver.messages) {
      received += m.items.length;
      expect(received).toBeLessThanOrEqual((rate * (m.receivedAt - t0)) / 1000 + burst);
      // Waiting for tokens yields full batches (>= 100 ms worth of the rate), not a trickle.
      expect(m.items.length).toBe(100);
    }
  });

  it('stop() forwards the backlog present now before disconnecting and stores the cursor', async () => {
    const queue = new MemoryQueue();
    const { forwarder, receiver } = await setup('gw-stop', queue, { batchSize: 50, maxRowsPerSecond: 1_000 });
    await forwarder.start();
    queue.add('results', 40);
    queue.add('readings', 1_500);
    await forwarder.stop(10_000);
    expect(queue.acked).toEqual({ alerts: 0, results: 40, readings: 1_500 });
    await receiver.until(() => receiver.items('readings').length === 1_500, 5_000, 'the flushed readings');
    expect(forwarder.status().state).toBe('stopped');
    await forwarder.stop(); // idempotent
  });

  it('stop() flushes up to the last seq stored, across gaps left by evicted rows', async () => {
    const queue = new MemoryQueue();
    const { forwarder, receiver } = await setup('gw-gaps', queue, { batchSize: 50 });
    await forwarder.start();
    queue.add('readings', 30);
    // 20 rows in the middle evicted under a quota: 10 rows left, the newest is seq 30.
    queue.evict('readings', 5, 24);
    queue.add('alerts', 1);
    await forwarder.stop(10_000);
    expect(queue.acked).toEqual({ alerts: 1, results: 0, readings: 30 });
    await receiver.until(() => receiver.items('readings').length === 10, 5_000, 'the flushed readings');
    expect(receiver.items('readings').map((i) => i.seq)).toEqual([1, 2, 3, 4, 25, 26, 27, 28, 29, 30]);
  });

  it('keeps forwarding the other classes while one cannot be read, and resumes it later', async () => {
    const queue = new MemoryQueue();
    queue.failReads.results = new Error('database disk image is malformed');
    queue.add('alerts', 2);
    queue.add('results', 5);
    queue.add('readings', 300);
    const { log, lines } = captureLog();
    const { forwarder, receiver } = await setup(
      'gw-bad-class',
      queue,
      { batchSize: 100 },
      { log, pollIntervalMs: 50, classRetryMs: { initialMs: 100, maxMs: 200 } },
    );
    await forwarder.start();
    await receiver.until(
      () => receiver.items('readings').length === 300 && receiver.items('alerts').length === 2,
      10_000,
      'the alerts and readings',
    );
    // Retried with back-off (not at every pump), logged once with the class.
    await waitUntil(() => queue.failedReads.results >= 3, 5_000, 'the retries');
    const retries = queue.failedReads.results;
    expect(retries).toBeLessThan(30);
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ class: 'results', err: 'database disk image is malformed' });
    expect(errors[0]!.msg).toMatch(/results/);
    expect(forwarder.status().classes.results.lastError).toBe('database disk image is malformed');
    expect(receiver.items('results')).toEqual([]);

    // A different error is logged once too.
    queue.failReads.results = new Error('disk I/O error');
    await waitUntil(() => lines.filter((l) => l.level === 50).length === 2, 5_000, 'the new error line');
    expect(lines.filter((l) => l.level === 50)[1]).toMatchObject({ class: 'results', err: 'disk I/O error' });

    delete queue.failReads.results;
    await receiver.until(() => receiver.items('results').length === 5, 5_000, 'the results once readable');
    expect(receiver.items('results').map((i) => i.seq)).toEqual([1, 2, 3, 4, 5]);
    await waitUntil(() => queue.acked.results === 5, 5_000, 'the results cursor');
    expect(forwarder.status().classes.results.lastError).toBeUndefined();
    expect(lines.filter((l) => l.level === 50)).toHaveLength(2);
  });

  it('skips a class whose rows cannot be put in a message and keeps forwarding the others', async () => {
    const queue = new MemoryQueue();
    queue.add('results', 3);
    queue.add('readings', 20);
    // A value JSON cannot encode: the message of results 1-3 cannot be built.
    (queue.rows.results[1]!.item as unknown as { score: unknown }).score = 10n;
    const { log, lines } = captureLog();
    const { forwarder, receiver } = await setup(
      'gw-bad-row',
      queue,
      {},
      { log, pollIntervalMs: 50, classRetryMs: { initialMs: 100, maxMs: 200 } },
    );
    await forwarder.start();
    await receiver.until(() => receiver.items('readings').length === 20, 5_000, 'the readings');
    await waitUntil(() => lines.some((l) => l.level === 50), 5_000, 'the error line');
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    expect(lines.find((l) => l.level === 50)).toMatchObject({ class: 'results' });
    expect(lines.find((l) => l.level === 50)!.err).toMatch(/BigInt/);
    expect(receiver.items('results')).toEqual([]);
    expect(queue.acked.results).toBe(0);

    // Nothing was taken from the drain rate or put in flight for it: new readings still go.
    queue.add('readings', 5);
    forwarder.notify();
    await receiver.until(() => receiver.items('readings').length === 25, 5_000, 'the new readings');
  });

  it('reports a refused login as state refused with an actionable message, logged once', async () => {
    const secured = await startMosquitto({ users: { vigil: 'right-password' } });
    cleanups.push(() => secured.stop());
    const queue = new MemoryQueue();
    queue.add('alerts', 1);
    const { log, lines } = captureLog();
    const refused = new UpstreamForwarder({
      config: config(secured.url, { username: 'vigil', password: 'wrong' }),
      deviceId: 'gw-auth',
      queue,
      log,
      env: {},
    });
    cleanups.push(() => refused.stop(0));
    await refused.start();
    const status = refused.status();
    expect(status.state).toBe('refused');
    expect(status.lastError).toMatch(/refused the connection/);
    expect(status.lastError).toMatch(/upstream\.username and upstream\.password/);
    expect(status.lastError).toMatch(/VIGIL_UPSTREAM_PASSWORD/);
    // Retried at the longest back-off (300 ms here), without a new error line per retry.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(secured.output().match(/not authorised/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    expect(lines.find((l) => l.level === 50)!.msg).toBe(status.lastError);
    await refused.stop(0);

    const accepted = new UpstreamForwarder({
      config: config(secured.url, { username: 'vigil', passwordEnv: 'PLANT_PW' }),
      deviceId: 'gw-auth',
      queue,
      log: silentLogger(),
      env: { PLANT_PW: 'right-password' },
    });
    cleanups.push(() => accepted.stop(0));
    await accepted.start();
    expect(accepted.status().state).toBe('connected');
    await waitUntil(() => queue.acked.alerts === 1, 5_000, 'the alert acknowledged');
  });

  it('keeps forwarding when the store cannot record the cursor, and records it once it can', async () => {
    const queue = new MemoryQueue();
    queue.failMarks = true;
    const { log, lines } = captureLog();
    const { forwarder, receiver } = await setup('gw-disk', queue, {}, { log, pollIntervalMs: 50 });
    await forwarder.start();
    queue.add('alerts', 1);
    forwarder.notify();
    await receiver.until(() => receiver.items('alerts').length === 1, 5_000, 'the first alert');
    queue.add('alerts', 1);
    forwarder.notify();
    await receiver.until(() => receiver.items('alerts').length === 2, 5_000, 'the second alert');
    await waitUntil(
      () => lines.some((l) => /could not record/.test(l.msg)),
      5_000,
      'the error line about the cursor',
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(lines.filter((l) => /could not record/.test(l.msg))).toHaveLength(1);
    expect(queue.acked.alerts).toBe(0);

    queue.failMarks = false;
    await waitUntil(() => queue.acked.alerts === 2, 5_000, 'the cursor recorded after the disk recovered');
  });

  it('fails at construction, naming the key, when a TLS file cannot be read', () => {
    const make = () =>
      new UpstreamForwarder({
        config: config('mqtts://127.0.0.1:8883', { tls: { ca: '/nonexistent/ca.pem' } }),
        deviceId: 'gw-tls',
        queue: new MemoryQueue(),
        log: silentLogger(),
      });
    expect(make).toThrow(VigilError);
    expect(make).toThrow(/upstream\.tls\.ca: cannot read \/nonexistent\/ca\.pem/);
    try {
      make();
    } catch (err) {
      expect((err as VigilError).code).toBe('VIGIL_ERR_CONFIG_READ');
    }
  });

  it('forwards only the configured classes and reports all of them in status()', async () => {
    const queue = new MemoryQueue();
    queue.add('readings', 10);
    queue.add('alerts', 2);
    const { forwarder, receiver } = await setup('gw-classes', queue, { classes: ['alerts'] });
    await forwarder.start();
    await receiver.until(() => receiver.items('alerts').length === 2, 5_000, 'the alerts');
    await waitUntil(() => queue.acked.alerts === 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.messages.every((m) => m.class === 'alerts')).toBe(true);
    const status = forwarder.status();
    expect(Object.keys(status.classes).sort()).toEqual([...DATA_CLASSES].sort());
    expect(status.classes.readings.rows).toBe(10);
  });
});
