import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MqttConfig, StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { MqttError, MqttPublisher, type MqttPublisherOptions } from '../../runtime/publish/mqtt-publisher.js';
import { Store } from '../../runtime/store/store.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { makeResult } from '../store/fixtures.js';
import { until, watch, type Watcher } from './subscriber.js';

const DEVICE = 'gw-7';

describe('MqttPublisher against Mosquitto', () => {
  let dir: string;
  let store: Store;
  let broker: RunningMosquitto | undefined;
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-publish-'));
    store = Store.open(
      path.join(dir, 'vigil.db'),
      StoreConfig.parse({ path: 'x', retentionHours: 1, maxRows: 1000, maxReadings: 1000 }),
      silentLogger(),
    );
  });

  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await broker?.stop();
    broker = undefined;
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  function publisher(
    url: string,
    extra: Partial<MqttPublisherOptions> = {},
    mqtt: Partial<MqttConfig> = {},
  ): MqttPublisher {
    const p = new MqttPublisher({
      config: MqttConfig.parse({ url, ...mqtt }),
      deviceId: DEVICE,
      log: silentLogger(),
      version: '9.9.9-test',
      outbox: store,
      reconnectMinMs: 100,
      reconnectMaxMs: 400,
      env: {},
      ...extra,
    });
    cleanups.push(() => p.stop());
    return p;
  }

  async function watcher(url: string, topic: string, options = {}): Promise<Watcher> {
    const w = await watch(url, topic, options);
    cleanups.push(() => w.end());
    return w;
  }

  it('delivers an alert on <prefix>/<device>/alerts/<kind> and marks it published', async () => {
    broker = await startMosquitto();
    const sub = await watcher(broker.url, 'vigil/#');
    const pub = publisher(broker.url);
    await pub.start();
    expect(pub.connected()).toBe(true);

    const { result, alert } = makeResult(1, { alert: true });
    store.saveResult(result, alert);
    const { ackMs } = await pub.publishAlert(alert!);
    expect(ackMs).toBeGreaterThanOrEqual(0);

    const got = await sub.waitFor((m) => m.topic === 'vigil/gw-7/alerts/defect');
    expect(got.json).toEqual({ schema: 'vigil.alert.v1', ...alert });
    expect(got.retain).toBe(false);
    expect(store.countAlerts({ published: true })).toBe(1);
    expect(store.recentAlerts(1)[0]?.publishAttempts).toBe(1);

    expect(await pub.publishResult('line1', result)).toBe(true);
    const streamed = await sub.waitFor((m) => m.topic === 'vigil/gw-7/results/line1');
    expect(streamed.json).toEqual({ schema: 'vigil.result.v1', ...result });
  });

  it('keeps a retained online status that a later subscriber receives', async () => {
    broker = await startMosquitto();
    const pub = publisher(
      broker.url,
      { status: () => ({ pipelines: ['line1'] }) },
      { topicPrefix: 'plant/a' },
    );
    const early = await watcher(broker.url, 'plant/a/gw-7/status');
    await pub.start();
    await early.waitFor((m) => m.json.state === 'online');
    // Subscribe only after the status reached the broker: it must come from its retained store.
    const late = await watcher(broker.url, 'plant/a/gw-7/status');
    const status = await late.waitFor(() => true);
    expect(status.retain).toBe(true);
    expect(status.json).toMatchObject({
      schema: 'vigil.status.v1',
      state: 'online',
      device: DEVICE,
      version: '9.9.9-test',
      pipelines: ['line1'],
    });
    expect(typeof status.json.startedAt).toBe('string');

    await pub.stop();
    const offline = await late.waitFor((m) => m.json.state === 'offline');
    expect(offline.json).toMatchObject({ device: DEVICE, reason: 'stopped' });
    const afterStop = await watcher(broker.url, 'plant/a/gw-7/status');
    expect((await afterStop.waitFor(() => true)).json.state).toBe('offline');
  });

  it('has the broker send the offline last will when its socket dies', async () => {
    broker = await startMosquitto();
    const sub = await watcher(broker.url, 'vigil/gw-7/status');
    const pub = publisher(broker.url, { reconnectMinMs: 60_000, reconnectMaxMs: 60_000 });
    await pub.start();
    await sub.waitFor((m) => m.json.state === 'online');

    (pub as unknown as { client: MqttClient }).client.stream.destroy();
    const will = await sub.waitFor((m) => m.json.state === 'offline');
    expect(will.json).toMatchObject({ schema: 'vigil.status.v1', device: DEVICE, reason: 'connection lost' });
  });

  it('publishes alerts stored while the broker was down once it is back', async () => {
    const dataDir = path.join(dir, 'mosquitto-data');
    await mkdir(dataDir);
    broker = await startMosquitto({ dataDir });
    const port = broker.port;
    // A persistent session: the broker keeps its subscription and queues messages for it
    // across the restart, so whichever of watcher and publisher reconnects first, nothing is lost.
    const sub = await watcher(broker.url, 'vigil/gw-7/alerts/#', { clean: false, clientId: 'test-watcher' });
    const pub = publisher(broker.url);
    await pub.start();
    expect(pub.connected()).toBe(true);

    await broker.stop();
    broker = undefined;
    await until(() => !pub.connected(), 10_000, 'publisher to notice the broker is gone');

    const stored = [1, 2, 3].map((n) => makeResult(n, { alert: true }));
    for (const { result, alert } of stored) store.saveResult(result, alert);
    const rejection = await pub.publishAlert(stored[0]!.alert!).catch((e: unknown) => e);
    expect(rejection).toBeInstanceOf(MqttError);
    expect((rejection as MqttError).reason).toBe('not-connected');
    expect(store.countAlerts({ published: false })).toBe(3);

    broker = await startMosquitto({ port, dataDir });
    for (const { alert } of stored) {
      const got = await sub.waitFor((m) => m.json.id === alert!.id);
      expect(got.json).toEqual({ schema: 'vigil.alert.v1', ...alert });
    }
    await until(() => store.countAlerts({ published: false }) === 0, 10_000, 'outbox to drain');
  });

  it('connects with the right password (from VIGIL_MQTT_PASSWORD) and refuses a wrong one clearly', async () => {
    broker = await startMosquitto({ users: { vigil: 's3cret' } });
    const good = publisher(broker.url, { env: { VIGIL_MQTT_PASSWORD: 's3cret' } }, { username: 'vigil' });
    await good.start();
    expect(good.connected()).toBe(true);

    const bad = publisher(broker.url, {}, { username: 'vigil', password: 'wrong' });
    const err = await bad.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MqttError);
    expect((err as MqttError).reason).toBe('refused');
    expect((err as MqttError).message).toMatch(/refused the connection/);
    expect((err as MqttError).message).toContain('mqtt.password');
    expect(bad.connected()).toBe(false);
  });
});
