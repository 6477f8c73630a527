import net from 'node:net';
import { Writable } from 'node:stream';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MqttConfig } from '../../runtime/config/schema.js';
import { MqttError, MqttPublisher, redactUrl } from '../../runtime/publish/mqtt-publisher.js';
import { topicsFor } from '../../runtime/publish/topics.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { makeResult } from '../store/fixtures.js';
import { until } from './subscriber.js';

function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

describe('MqttPublisher connection handling', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('backs off and logs an unreachable broker once, not on every retry', async () => {
    // A TCP server that hangs up on every connection: a broker that is there but broken.
    let attempts = 0;
    const server = net.createServer((socket) => {
      attempts++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as net.AddressInfo;

    const { log, lines } = capturingLogger();
    const pub = new MqttPublisher({
      config: MqttConfig.parse({ url: `mqtt://127.0.0.1:${port}` }),
      deviceId: 'gw-7',
      log,
      version: 'test',
      env: {},
      reconnectMinMs: 10,
      reconnectMaxMs: 80,
    });
    cleanups.push(() => pub.stop());
    await pub.start();
    expect(pub.connected()).toBe(false);
    await until(() => attempts >= 6, 20_000, 'six connection attempts');

    const client = (pub as unknown as { client: MqttClient }).client;
    expect(client.options.reconnectPeriod).toBe(80);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings.filter((l) => String(l.msg).includes('not reachable'))).toHaveLength(1);
    expect(warnings).toHaveLength(1);

    const { alert } = makeResult(1, { alert: true });
    const err = await pub.publishAlert(alert!).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MqttError);
    expect((err as MqttError).reason).toBe('not-connected');
    expect(await pub.publishResult('line1', makeResult(2).result)).toBe(false);
  });

  it('logs connected, disconnected and reconnected once each', async () => {
    const broker = await startMosquitto();
    const port = broker.port;
    let current = broker;
    cleanups.push(() => current.stop());
    const { log, lines } = capturingLogger();
    const pub = new MqttPublisher({
      config: MqttConfig.parse({ url: broker.url }),
      deviceId: 'gw-7',
      log,
      version: 'test',
      env: {},
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
    });
    cleanups.push(() => pub.stop());
    await pub.start();
    await broker.stop();
    await until(() => !pub.connected(), 10_000, 'disconnect');
    await new Promise((r) => setTimeout(r, 300)); // several failed retries meanwhile
    current = await startMosquitto({ port });
    await until(() => pub.connected(), 10_000, 'reconnect');

    const messages = lines.map((l) => String(l.msg));
    expect(messages.filter((m) => m === 'MQTT connected')).toHaveLength(2);
    expect(messages.filter((m) => m.startsWith('MQTT disconnected'))).toHaveLength(1);
  });

  it('builds topics from prefix and device, neutralising wildcards, and hides passwords', () => {
    const t = topicsFor('plant/a/', 'gw-7');
    expect(t.alert('defect')).toBe('plant/a/gw-7/alerts/defect');
    expect(t.alert('a/b+#')).toBe('plant/a/gw-7/alerts/a_b__');
    expect(t.result('line1')).toBe('plant/a/gw-7/results/line1');
    expect(t.status).toBe('plant/a/gw-7/status');
    expect(redactUrl('mqtt://u:secret@h:1883')).not.toContain('secret');
  });

  it('fails loudly when the Mosquitto binary is missing', async () => {
    const saved = process.env.VIGIL_TEST_MOSQUITTO;
    process.env.VIGIL_TEST_MOSQUITTO = '/nonexistent/mosquitto';
    try {
      await expect(startMosquitto()).rejects.toThrow(
        /mosquitto not found at \/nonexistent\/mosquitto.*apt-get install mosquitto/,
      );
    } finally {
      if (saved === undefined) delete process.env.VIGIL_TEST_MOSQUITTO;
      else process.env.VIGIL_TEST_MOSQUITTO = saved;
    }
  });
});
