import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { makeResult } from '../store/fixtures.js';
import { watch } from './subscriber.js';

const run = promisify(execFile);

/** A throw-away CA and a server certificate for 127.0.0.1, made with openssl. */
async function makeCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string; otherCa: string }> {
  const f = (n: string) => path.join(dir, n);
  const selfSignedCa = (cn: string, name: string) =>
    run('openssl', [
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`],
      ...['-keyout', f(`${name}.key`), '-out', f(`${name}.pem`)],
    ]);
  await selfSignedCa('vigil-test-ca', 'ca');
  await selfSignedCa('other-ca', 'other');
  await run('openssl', [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('san.ext'),
    '-out',
    f('server.pem'),
  ]);
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), otherCa: f('other.pem') };
}

describe('MQTT over TLS against Mosquitto', () => {
  let dir: string;
  let certs: Awaited<ReturnType<typeof makeCertificates>>;
  let broker: RunningMosquitto;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-tls-'));
    certs = await makeCertificates(dir);
    broker = await startMosquitto({ tls: { cafile: certs.ca, certfile: certs.cert, keyfile: certs.key } });
  });

  afterAll(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  function publisher(ca: string): MqttPublisher {
    return new MqttPublisher({
      config: MqttConfig.parse({ url: broker.url, tls: { ca } }),
      deviceId: 'tls-gw',
      log: silentLogger(),
      version: 'test',
      env: {},
      reconnectMinMs: 200,
      reconnectMaxMs: 400,
    });
  }

  it('publishes an alert over mqtts:// when the broker certificate verifies against the configured CA', async () => {
    expect(broker.url).toMatch(/^mqtts:\/\//);
    const sub = await watch(broker.url, 'vigil/tls-gw/alerts/#', { ca: await readFile(certs.ca) });
    const p = publisher(certs.ca);
    try {
      await p.start();
      expect(p.connected()).toBe(true);
      const { alert } = makeResult(1, { alert: true });
      await p.publishAlert(alert!);
      const got = await sub.waitFor((m) => m.json.id === alert!.id);
      expect(got.topic).toBe('vigil/tls-gw/alerts/defect');
    } finally {
      await p.stop();
      await sub.end();
    }
  });

  it('refuses a broker whose certificate was signed by another CA', async () => {
    const p = publisher(certs.otherCa);
    try {
      await p.start();
      expect(p.connected()).toBe(false);
      const { alert } = makeResult(2, { alert: true });
      await expect(p.publishAlert(alert!)).rejects.toThrow(/not connected/i);
    } finally {
      await p.stop();
    }
  });
});
