import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stableClientId } from '../../../adapters/mqtt/connection.js';
import { MqttJsonSource } from '../../../adapters/mqtt/json-source.js';
import { MqttJsonSource as MqttJsonSourceSchema } from '../../../runtime/config/sources/mqtt.js';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { SimJsonPublisher } from '../../../simulator/mqtt/json-publisher.js';
import { startMosquitto, type RunningMosquitto } from '../../helpers/mosquitto.js';
import { freePort } from '../../helpers/ports.js';
import { Recorder } from '../recorder.js';
import { startTcpLink } from './tcp-link.js';

let broker: RunningMosquitto;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  broker = await startMosquitto();
});

afterAll(async () => {
  await broker?.stop();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let sources = 0;
/**
 * A source name of its own per source: the default client id derives from it, and the broker
 * keeps each persistent session, so that two tests sharing a name would share a session.
 */
const newName = () => `plant${++sources}`;

async function startSource(
  url: string,
  overrides: Record<string, unknown> = {},
  env: Record<string, string | undefined> = {},
  name = newName(),
) {
  const rec = new Recorder();
  const config = MqttJsonSourceSchema.parse({
    type: 'mqtt-json',
    url,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
    subscriptions: [
      { topic: 'plant/+/telemetry', asset: '{1}', allNumericFields: true, timestampField: 'ts' },
    ],
    ...overrides,
  });
  const source = new MqttJsonSource(name, config, rec, { env });
  cleanups.push(() => source.stop());
  await source.start(new AbortController().signal);
  return { source, rec, name };
}

async function startPublisher(url: string, machines: ScriptedMachine[]) {
  const pub = new SimJsonPublisher({ url, machines, rateHz: 0 });
  cleanups.push(() => pub.stop());
  await pub.start();
  return pub;
}

describe('MQTT JSON source through Mosquitto', () => {
  it('maps the simulator’s telemetry: asset from the topic, its timestamp, null as a bad reading', async () => {
    const { source, rec, name } = await startSource(broker.url);
    expect(source.state()).toBe('up');
    const pump = new ScriptedMachine('pump-1', [{ name: 'temperature' }, { name: 'vibration_rms' }]);
    const pub = await startPublisher(broker.url, [pump]);
    pump.set('temperature', 71.25);
    pump.set('vibration_rms', Number.NaN, 'bad', 'BadSensorFailure');
    const before = Date.now();
    await pub.tick();
    await rec.until(() => rec.received.length >= 2, 'two readings');
    const temp = rec.series('pump-1', 'temperature')[0]!;
    expect(temp).toMatchObject({ source: name, value: 71.25, quality: 'good' });
    expect(temp.sourceTime).toBeGreaterThanOrEqual(before);
    expect(temp.sourceTime).toBeLessThanOrEqual(temp.receivedAt);
    expect(rec.series('pump-1', 'vibration_rms')[0]).toMatchObject({
      value: null,
      quality: 'bad',
      status: 'NoValue',
    });
    expect(rec.rejections).toEqual([]);
  });

  it('maps nested paths, templated assets and timestamps in s and ISO from several subscriptions', async () => {
    const { rec } = await startSource(broker.url, {
      subscriptions: [
        {
          topic: 'site/+/line/+/json',
          asset: '{1}-{3}',
          tags: { temp: 'data.temp', rpm: 'values.1' },
          timestampField: 'meta.time',
          timestampFormat: 'iso',
        },
        {
          topic: 'legacy/#',
          assetField: 'id',
          tags: { level: 'level' },
          timestampField: 't',
          timestampFormat: 's',
        },
      ],
    });
    const pub = await startPublisher(broker.url, []);
    await pub.publishRaw(
      'site/berlin/line/3/json',
      JSON.stringify({ meta: { time: '2025-05-01T12:00:00.500Z' }, data: { temp: 40.5 }, values: [0, 1480] }),
    );
    await pub.publishRaw('legacy/tanks/a', JSON.stringify({ id: 'tank-7', t: 1714564800.25, level: 3.5 }));
    await rec.until(() => rec.received.length >= 3, 'three readings');
    expect(rec.received.map((r) => [r.asset, r.tag, r.value, r.sourceTime])).toEqual([
      ['berlin-3', 'temp', 40.5, Date.parse('2025-05-01T12:00:00.500Z')],
      ['berlin-3', 'rpm', 1480, Date.parse('2025-05-01T12:00:00.500Z')],
      ['tank-7', 'level', 3.5, 1714564800250],
    ]);
  });

  it('refuses bad payloads with the field named, counts them, keeps running and loses nothing good', async () => {
    const { source, rec } = await startSource(broker.url, {
      maxPayloadBytes: 1024,
      subscriptions: [
        { topic: 'plant/+/telemetry', asset: '{1}', tags: { temp: 'temp' }, timestampField: 'ts' },
      ],
    });
    const pub = await startPublisher(broker.url, []);
    const topic = 'plant/pump-9/telemetry';
    const good = (v: number) => JSON.stringify({ ts: Date.now(), temp: v });
    await pub.publishRaw(topic, good(1));
    await pub.publishRaw(topic, 'temp=40;ok');
    await pub.publishRaw(topic, `{"ts": ${Date.now()}, "temp": "NaN"}`);
    await pub.publishRaw(topic, `{"ts": ${Date.now()}, "temp": 1e999}`);
    await pub.publishRaw(topic, `{"ts": ${Date.now()}, "temp": "hot"}`);
    await pub.publishRaw(topic, JSON.stringify({ ts: Date.now(), temp: 5, pad: 'x'.repeat(2000) }));
    await pub.publishRaw(topic, good(2));
    await rec.until(() => rec.received.length >= 2, 'the good reading after the bad ones');
    expect(rec.series('pump-9', 'temp').map((r) => r.value)).toEqual([1, 2]);
    expect(rec.rejections.map((r) => [r.reason, r.origin])).toEqual([
      ['malformed', topic],
      ['not_finite', topic],
      ['not_finite', topic],
      ['not_a_number', topic],
      ['too_large', topic],
    ]);
    for (const r of rec.rejections.slice(1, 4)) expect(r.message).toContain("field 'temp'");
    expect(rec.rejections[4]!.message).toContain('1024');
    expect(source.state()).toBe('up');
  });

  it('starts while the broker is down, connects when it comes, and counts a reconnect after a restart', async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const { source, rec } = await startSource(url);
    expect(source.state()).toBe('down');

    let local = await startMosquitto({ port });
    cleanups.push(() => local.stop());
    await rec.until(() => source.state() === 'up', 'the first connection');
    expect(rec.reconnects).toBe(0);
    const pump = new ScriptedMachine('pump-2', [{ name: 'temperature' }]);
    const pub = await startPublisher(url, [pump]);
    pump.set('temperature', 10);
    await pub.tick();
    await rec.until(() => rec.series('pump-2', 'temperature').length === 1, 'a reading before the restart');

    await local.stop();
    await rec.until(() => source.state() === 'down', 'the source to notice the broker is gone');
    local = await startMosquitto({ port });
    cleanups.push(() => local.stop());
    await rec.until(() => rec.reconnects === 1 && source.state() === 'up', 'the reconnect');

    pump.set('temperature', 11);
    // The simulator reconnects on its own schedule; publish until the reading comes through.
    const ticker = setInterval(() => void pub.tick().catch(() => undefined), 100);
    try {
      await rec.until(
        () => rec.series('pump-2', 'temperature').some((r) => r.value === 11),
        'data after the restart',
      );
    } finally {
      clearInterval(ticker);
    }
    expect(rec.series('pump-2', 'temperature')[0]!.value).toBe(10);
  });

  it('logs in with the password from passwordEnv, and keeps retrying, without throwing, when refused', async () => {
    const secured = await startMosquitto({ users: { vigil: 's3cret' } });
    cleanups.push(() => secured.stop());
    const ok = await startSource(
      secured.url,
      { username: 'vigil', passwordEnv: 'VIGIL_TEST_MQTT_PASSWORD' },
      { VIGIL_TEST_MQTT_PASSWORD: 's3cret' },
    );
    expect(ok.source.state()).toBe('up');
    const refused = await startSource(secured.url, { username: 'vigil', password: 'wrong' });
    expect(refused.source.state()).toBe('down');
    expect(ok.source.state()).toBe('up');
  });

  it('stop() during a start that is still connecting ends the start at once', async () => {
    // A TCP server that accepts and never answers: the attempt waits for a CONNACK (10 s).
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    silent.on('connection', (socket) => cleanups.push(async () => void socket.destroy()));
    const { port } = silent.address() as net.AddressInfo;
    const rec = new Recorder();
    const config = MqttJsonSourceSchema.parse({
      type: 'mqtt-json',
      url: `mqtt://127.0.0.1:${port}`,
      subscriptions: [{ topic: 'plant/#', asset: 'x', allNumericFields: true }],
    });
    const source = new MqttJsonSource('plant', config, rec);
    const started = source.start(new AbortController().signal);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(source.state()).toBe('starting');
    await source.stop();
    await started;
    expect(source.state()).toBe('stopped');
  });
});

describe('MQTT JSON source: persistent session', () => {
  const json = (temp: number) => JSON.stringify({ ts: Date.now(), temperature: temp });

  it('gets a QoS 1 message published while its network link was down once the link is back', async () => {
    const link = await startTcpLink(broker.port);
    cleanups.push(() => link.close());
    const { source, rec } = await startSource(link.url);
    expect(source.state()).toBe('up');
    const pub = await startPublisher(broker.url, []);
    await pub.publishRaw('plant/pump-3/telemetry', json(20));
    await rec.until(() => rec.series('pump-3', 'temperature').length === 1, 'a reading before the outage');

    link.cut();
    await rec.until(() => source.state() === 'down', 'the source to notice the outage');
    // Acknowledged by the broker while Vigil is away: the broker queues it for Vigil's session.
    await pub.publishRaw('plant/pump-3/telemetry', json(21));
    link.restore();

    await rec.until(() => rec.reconnects === 1 && source.state() === 'up', 'the reconnect');
    const values = () => rec.series('pump-3', 'temperature').map((r) => r.value);
    await rec.until(() => values().includes(21), 'the message published during the outage');
    // At least once: a message whose PUBACK the outage cut off comes again, which is allowed.
    expect(new Set(values())).toEqual(new Set([20, 21]));
  });

  it('keeps its session and queued messages across a restart of a broker that persists them', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'vigil-mqtt-session-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    let local = await startMosquitto({ port, dataDir });
    cleanups.push(() => local.stop());
    const link = await startTcpLink(port);
    cleanups.push(() => link.close());
    const { source, rec } = await startSource(link.url);
    expect(source.state()).toBe('up');

    link.cut();
    await rec.until(() => source.state() === 'down', 'the source to notice the outage');
    const before = await startPublisher(local.url, []);
    await before.publishRaw('plant/pump-4/telemetry', json(30));
    await before.stop();
    await local.stop();
    local = await startMosquitto({ port, dataDir });
    cleanups.push(() => local.stop());
    // After the restart too, the broker knows Vigil's subscription and queues for it.
    const after = await startPublisher(local.url, []);
    await after.publishRaw('plant/pump-4/telemetry', json(31));
    link.restore();

    await rec.until(() => rec.series('pump-4', 'temperature').length === 2, 'both queued messages');
    expect(rec.series('pump-4', 'temperature').map((r) => r.value)).toEqual([30, 31]);
    await rec.until(() => rec.reconnects === 1 && source.state() === 'up', 'the reconnect to be counted');
  });

  it('resumes its session after a restart of Vigil, under the same default client id', async () => {
    const name = newName();
    const first = await startSource(broker.url, {}, {}, name);
    expect(first.source.clientId).toBe(stableClientId(name, os.hostname()));
    expect(first.source.clientId).toMatch(new RegExp(`^vigil-${name}-`));
    await first.source.stop();

    const pub = await startPublisher(broker.url, []);
    await pub.publishRaw('plant/pump-5/telemetry', json(40));

    const second = await startSource(broker.url, {}, {}, name);
    expect(second.source.clientId).toBe(first.source.clientId);
    await second.rec.until(
      () => second.rec.series('pump-5', 'temperature').length === 1,
      'the message published while Vigil was stopped',
    );
    expect(second.rec.series('pump-5', 'temperature')[0]!.value).toBe(40);
  });

  it('uses the client id of the config instead of the default', async () => {
    const { source } = await startSource(broker.url, { clientId: 'line-7-gateway' });
    expect(source.state()).toBe('up');
    expect(source.clientId).toBe('line-7-gateway');
  });
});
