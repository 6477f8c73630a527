import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, metricValue, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';

/**
 * Mutual TLS: a Mosquitto that demands a client certificate signed by the plant's CA
 * (require_certificate, the certificate's CN as the user name). `vigil run` with mqtt.tls and
 * upstream.tls carrying a client certificate and key connects both its alert publisher and its
 * upstream forwarder; without the certificate neither gets in, and the log says why.
 */

const run = promisify(execFile);
const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    throw new Error(`openssl failed (${(err as Error).message}); install it with 'apt-get install openssl'`);
  }
}

/** A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
async function certificates(dir: string) {
  const f = (n: string) => path.join(dir, n);
  await openssl([
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=plant-ca'],
    ...['-keyout', f('ca.key'), '-out', f('ca.pem')],
  ]);
  await writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await writeFile(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, cn] of [
    ['server', '127.0.0.1'],
    ['client', 'line3-gateway'],
  ] as const) {
    await openssl([
      ...['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`],
      ...['-keyout', f(`${name}.key`), '-out', f(`${name}.csr`)],
    ]);
    await openssl([
      ...['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key')],
      ...['-CAcreateserial', '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`)],
    ]);
  }
  return {
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}

describe('MQTT with TLS client certificates (alert broker and upstream)', () => {
  let dir: string;
  let certs: Awaited<ReturnType<typeof certificates>>;
  let broker: RunningMosquitto;
  const daemons: RunningDaemon[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-mtls-'));
    certs = await certificates(dir);
    broker = await startMosquitto({
      tls: { cafile: certs.ca, certfile: certs.cert, keyfile: certs.key },
      extraConfig: ['require_certificate true', 'use_identity_as_username true'],
    });
  });

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await broker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function daemon(name: string, tls: string): Promise<RunningDaemon> {
    const httpPort = await freePort();
    const cfg = path.join(dir, `${name}.yaml`);
    await writeFile(
      cfg,
      [
        'version: 1',
        `device: { id: ${name} }`,
        `http: { host: 127.0.0.1, port: ${httpPort} }`,
        `mqtt: { url: "${broker.url}", tls: ${tls} }`,
        `upstream: { url: "${broker.url}", tls: ${tls} }`,
        `store: { path: ${path.join(dir, name, 'vigil.db')} }`,
        `models: { defect: { package: ${PACKAGE} } }`,
        'sources: {}',
        'pipelines: {}',
      ].join('\n'),
    );
    const d = await startDaemon(cfg, httpPort, { waitReady: false });
    daemons.push(d);
    return d;
  }

  const connected = async (d: RunningDaemon) => {
    const m = await (await fetch(`${d.url}/metrics`)).text();
    return {
      mqtt: metricValue(m, 'vigil_mqtt_connected'),
      upstream: metricValue(m, 'vigil_upstream_connected'),
    };
  };

  it('connects the publisher and the forwarder with the client certificate', async () => {
    const d = await daemon(
      'mtls-ok',
      `{ ca: ${certs.ca}, cert: ${certs.clientCert}, key: ${certs.clientKey} }`,
    );
    await waitFor('both connections up', async () => {
      const c = await connected(d);
      return c.mqtt === 1 && c.upstream === 1 ? c : undefined;
    });
    expect(broker.output()).not.toMatch(/line3-gateway.*(denied|refused)/i);
  });

  it('gets no connection without a client certificate, and logs the TLS failure', async () => {
    const d = await daemon('mtls-none', `{ ca: ${certs.ca} }`);
    await waitFor('the publisher failure logged', () =>
      /"component":"mqtt".*MQTT broker not reachable yet/.test(d.logs()) ? true : undefined,
    );
    await waitFor('the upstream failure logged', () =>
      /"component":"upstream".*"level":40|"level":40.*"component":"upstream"/.test(d.logs())
        ? true
        : undefined,
    );
    expect(await connected(d)).toEqual({ mqtt: 0, upstream: 0 });
  });
});
