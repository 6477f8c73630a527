import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../runtime/broker/embedded.js';
import { MqttConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { makeResult } from '../store/fixtures.js';
import { watch } from './subscriber.js';
import { pino } from 'pino';
import { Writable } from 'node:stream';

/** A pino logger that keeps its JSON lines, to check what an operator would read. */
function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

describe('embedded broker', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function broker(port: number, log = silentLogger()): Promise<EmbeddedBroker> {
    const b = await startEmbeddedBroker({ host: '127.0.0.1', port, log });
    cleanups.push(() => b.close());
    return b;
  }

  it('carries messages between real mqtt.js clients, including the publisher', async () => {
    const b = await broker(0);
    expect(b.port).toBeGreaterThan(0);
    expect(b.url).toBe(`mqtt://127.0.0.1:${b.port}`);

    const sub = await watch(b.url, 'vigil/#');
    cleanups.push(() => sub.end());
    const pub = new MqttPublisher({
      config: MqttConfig.parse({ url: b.url }),
      deviceId: 'demo',
      log: silentLogger(),
      version: 'test',
      env: {},
    });
    cleanups.push(() => pub.stop());
    await pub.start();
    const { alert } = makeResult(1, { alert: true });
    await pub.publishAlert(alert!);
    expect((await sub.waitFor((m) => m.topic === 'vigil/demo/alerts/defect')).json).toEqual({
      schema: 'vigil.alert.v1',
      ...alert,
    });
    expect((await sub.waitFor((m) => m.topic === 'vigil/demo/status')).json.state).toBe('online');
  });

  it('takes a free port, and says so, when the requested one is taken', async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const taken = (squatter.address() as net.AddressInfo).port;

    const { log, lines } = capturingLogger();
    const b = await broker(taken, log);
    expect(b.port).not.toBe(taken);
    expect(b.port).toBeGreaterThan(0);
    const warning = lines.find((l) => l.level === 40);
    expect(warning?.msg).toContain(`port ${taken} on 127.0.0.1 is already in use`);
    expect(warning?.msg).toContain(`127.0.0.1:${b.port}`);

    const sub = await watch(b.url, 't/#');
    cleanups.push(() => sub.end());
    await sub.client.publishAsync('t/x', JSON.stringify({ hello: 1 }), { qos: 1 });
    expect((await sub.waitFor(() => true)).json).toEqual({ hello: 1 });
  });

  it('closes even with clients still connected', async () => {
    const b = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, log: silentLogger() });
    const sub = await watch(b.url, 't/#', { reconnectPeriod: 0 });
    cleanups.push(() => sub.end());
    await b.close();
    await b.close(); // idempotent
    await expect(
      new Promise((resolve, reject) => {
        const s = net.connect(b.port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve('connected');
        });
        s.once('error', reject);
      }),
    ).rejects.toThrow(/ECONNREFUSED/);
  });
});
