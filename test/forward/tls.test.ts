import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamConfig } from '../../runtime/config/upstream.js';
import { UpstreamForwarder } from '../../runtime/forward/upstream.js';
import { silentLogger } from '../../runtime/log.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { MemoryQueue } from './memory-queue.js';
import { receive, waitUntil } from './receiver.js';

const run = promisify(execFile);

/** A throw-away CA, another CA, and a server certificate for 127.0.0.1 signed by the first. */
async function makeCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string; otherCa: string }> {
  const f = (n: string) => path.join(dir, n);
  const selfSignedCa = (cn: string, name: string) =>
    run('openssl', [
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`],
      ...['-keyout', f(`${name}.key`), '-out', f(`${name}.pem`)],
    ]);
  await selfSignedCa('vigil-upstream-test-ca', 'ca');
  await selfSignedCa('other-ca', 'other');
  await run('openssl', [
    ...['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1'],
    ...['-keyout', f('server.key'), '-out', f('server.csr')],
  ]);
  await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', [
    ...['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key')],
    ...['-CAcreateserial', '-days', '2', '-extfile', f('san.ext'), '-out', f('server.pem')],
  ]);
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), otherCa: f('other.pem') };
}

describe('UpstreamForwarder over TLS against Mosquitto', () => {
  let dir: string;
  let certs: Awaited<ReturnType<typeof makeCertificates>>;
  let broker: RunningMosquitto;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-upstream-tls-'));
    certs = await makeCertificates(dir);
    broker = await startMosquitto({ tls: { cafile: certs.ca, certfile: certs.cert, keyfile: certs.key } });
  });
  afterAll(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  function forwarder(queue: MemoryQueue, ca: string): UpstreamForwarder {
    return new UpstreamForwarder({
      config: UpstreamConfig.parse({
        url: broker.url,
        tls: { ca: path.basename(ca) },
        reconnect: { initialDelayMs: 100, maxDelayMs: 300 },
      }),
      deviceId: 'gw-tls',
      queue,
      log: silentLogger(),
      env: {},
      // TLS paths are relative to the config file's folder.
      resolvePath: (file) => path.join(dir, file),
    });
  }

  it('forwards over mqtts:// when the broker certificate verifies against upstream.tls.ca', async () => {
    expect(broker.url).toMatch(/^mqtts:\/\//);
    const receiver = await receive(broker.url, 'gw-tls', {
      ca: [await readFile(certs.ca)],
    });
    const queue = new MemoryQueue();
    queue.add('alerts', 2);
    const f = forwarder(queue, certs.ca);
    try {
      await f.start();
      expect(f.status().state).toBe('connected');
      await receiver.until(() => receiver.items('alerts').length === 2, 5_000, 'the alerts over TLS');
      await waitUntil(() => queue.acked.alerts === 2);
    } finally {
      await f.stop(0);
      await receiver.end();
    }
  });

  it('does not connect to a broker whose certificate another CA signed, and says why', async () => {
    const queue = new MemoryQueue();
    queue.add('alerts', 1);
    const f = forwarder(queue, certs.otherCa);
    try {
      await f.start();
      const status = f.status();
      expect(status.state).toBe('disconnected');
      expect(status.lastError).toMatch(/certificate/i);
      expect(queue.marks).toEqual([]);
    } finally {
      await f.stop(0);
    }
  });
});
