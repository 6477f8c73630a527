import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpcUaSource } from '../../../adapters/opcua/source.js';
import { peerPython } from '../../helpers/python-peers.js';
import { ROOT } from '../../helpers/daemon.js';
import { LogRecorder, eventually, opcuaConfig, tempDir } from './support.js';

/**
 * Interoperability: the OPC-UA source against a second, independent implementation, the asyncua
 * server from PyPI (test/peers/asyncua_server.py), over real sockets. Its node ids are written with
 * the namespace URI (nsu=), as an integrator would copy them from a server whose namespace index
 * may change.
 */

const execFileAsync = promisify(execFile);
const PEER = path.join(ROOT, 'test/peers/asyncua_server.py');
const NS = 'nsu=urn:vigil:peer';

interface Peer {
  endpoint: string;
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Port 0 by default: the peer binds a port the OS picks and names it on its READY line, so no other
 * process can take it in between. A restart asks for the port the first instance reported.
 */
async function startPeer(python: string, args: string[], port = 0): Promise<Peer> {
  const proc = spawn(python, [PEER, '--port', String(port), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the asyncua peer did not print READY within 30 s:\n${output}`));
    }, 30_000);
    let buffered = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      output += d.toString();
      const m = /^READY (\S+)/m.exec(buffered);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the asyncua peer exited with ${code} before it was ready:\n${output}`));
    });
  });
  return {
    endpoint,
    proc,
    output: () => output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
        proc.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        proc.stdin!.end(); // the peer stops when its stdin closes
        proc.kill('SIGTERM');
      }),
  };
}

let tmp: { dir: string; remove(): Promise<void> };
let python: string;
let peer: Peer;
let serverCert: string;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  python = peerPython('asyncua'); // throws a clear error when the environment is missing
  tmp = await tempDir('vigil-opcua-peer-');
  serverCert = path.join(tmp.dir, 'peer-cert.pem');
  const key = path.join(tmp.dir, 'peer-key.pem');
  // A self-signed application instance certificate, as an OPC-UA server carries (Part 6, 6.2.2).
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    key,
    '-out',
    serverCert,
    '-days',
    '2',
    '-subj',
    '/CN=vigil-asyncua-peer/O=Vigil tests',
    '-addext',
    'subjectAltName=URI:urn:vigil:peer,DNS:localhost,IP:127.0.0.1',
    '-addext',
    'keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment,keyCertSign',
    '-addext',
    'extendedKeyUsage=serverAuth,clientAuth',
  ]);
  // One server process with both endpoints (None and SignAndEncrypt), as many PLCs offer them:
  // Python's start-up is the slow part of this file.
  peer = await startPeer(python, [
    '--security',
    'None,SignAndEncrypt',
    '--cert',
    serverCert,
    '--key',
    key,
    '--user',
    'alice',
    '--password',
    'secret',
  ]);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await peer?.stop();
  await tmp?.remove();
});

function startSource(name: string, fields: Record<string, unknown>, rec: LogRecorder): Promise<OpcUaSource> {
  const source = new OpcUaSource(name, opcuaConfig(fields), rec);
  const life = new AbortController();
  cleanups.push(async () => {
    life.abort();
    await source.stop();
  });
  return source.start(life.signal).then(() => source);
}

const items = (...tags: string[]) =>
  tags.map((tag) => ({ nodeId: `${NS};s=line-1.${tag}`, asset: 'line-1', tag, samplingIntervalMs: 50 }));

async function trustPeer(pki: string): Promise<void> {
  await mkdir(path.join(pki, 'trusted', 'certs'), { recursive: true });
  await copyFile(serverCert, path.join(pki, 'trusted', 'certs', 'asyncua-peer.pem'));
}

describe('OPC-UA source against asyncua (PyPI)', () => {
  it('subscribes: changing values with timestamps, Bad and Uncertain statuses', async () => {
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'peer',
      {
        endpoint: peer.endpoint,
        auth: { username: 'alice', password: 'secret' },
        pkiFolder: 'pki-plain',
        items: items('temperature', 'counter', 'broken', 'stale'),
      },
      rec,
    );
    expect(source.state(), rec.text()).toBe('up');
    await rec.until(
      () =>
        rec.series('line-1', 'counter').length >= 5 &&
        rec.series('line-1', 'broken').length > 0 &&
        rec.series('line-1', 'stale').length > 0,
      'several counter values and the two bad/uncertain nodes',
    );
    const counter = rec.series('line-1', 'counter');
    const values = counter.map((r) => r.value as number);
    expect(values.every((v, i) => i === 0 || v > values[i - 1]!)).toBe(true);
    for (const r of counter) {
      expect(r).toMatchObject({ quality: 'good', source: 'peer', asset: 'line-1' });
      expect(r.sourceTime).toBeGreaterThan(Date.now() - 60_000);
      expect(typeof r.serverTime).toBe('number');
    }
    // The server's own source timestamps, not our receive time: they differ per value.
    expect(new Set(counter.map((r) => r.sourceTime)).size).toBe(counter.length);
    expect(rec.series('line-1', 'temperature').at(-1)).toMatchObject({ quality: 'good' });
    expect(rec.series('line-1', 'broken').at(-1)).toMatchObject({
      value: null,
      quality: 'bad',
      status: 'BadSensorFailure',
    });
    expect(rec.series('line-1', 'stale').at(-1)).toMatchObject({
      value: 7.5,
      quality: 'uncertain',
      status: 'UncertainLastUsableValue',
    });
    expect(rec.rejections).toEqual([]);
  });

  it('connects with SignAndEncrypt (Basic256Sha256) and a user, once the certificate is trusted', async () => {
    const pki = path.join(tmp.dir, 'pki-secure');
    await trustPeer(pki);
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'peer-secure',
      {
        endpoint: peer.endpoint,
        securityMode: 'SignAndEncrypt',
        securityPolicy: 'Basic256Sha256',
        auth: { username: 'alice', password: 'secret' },
        pkiFolder: pki,
        items: items('counter', 'broken'),
      },
      rec,
    );
    expect(source.state(), rec.text() + '\n' + peer.output()).toBe('up');
    await rec.until(() => rec.series('line-1', 'counter').length >= 3, 'encrypted counter values');
    expect(rec.series('line-1', 'broken').at(-1)).toMatchObject({
      quality: 'bad',
      status: 'BadSensorFailure',
    });
  });

  it('refuses the server certificate while it is not trusted', async () => {
    const rec = new LogRecorder(tmp.dir);
    const pki = path.join(tmp.dir, 'pki-untrusted');
    const source = await startSource(
      'peer-untrusted',
      {
        endpoint: peer.endpoint,
        securityMode: 'SignAndEncrypt',
        auth: { username: 'alice', password: 'secret' },
        pkiFolder: pki,
        items: items('counter'),
      },
      rec,
    );
    expect(source.state()).toBe('down');
    expect(rec.logged(/certificate of the OPC-UA server .* is not trusted.*rejected/, 50)).not.toHaveLength(
      0,
    );
    expect(rec.received).toHaveLength(0);
  });

  it('resumes data after the server restarts on the same port, and counts the reconnection', async () => {
    // A peer of its own (plain, anonymous): the shared one must stay up for the other tests.
    const first = await startPeer(python, []);
    cleanups.push(() => first.stop());
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'peer-restart',
      {
        endpoint: first.endpoint,
        pkiFolder: 'pki-plain',
        // Also the time node-opcua's repair of the session gets once the server answers again.
        connectTimeoutMs: 2000,
        items: items('counter', 'broken'),
      },
      rec,
    );
    expect(source.state(), rec.text()).toBe('up');
    await rec.until(() => rec.series('line-1', 'counter').length >= 3, 'counter values before the restart');

    await first.stop();
    await eventually(
      'the source to notice the lost server',
      () => source.state() === 'down',
      () => rec.text(),
    );
    expect(rec.reconnects).toBe(0);
    const port = Number(new URL(first.endpoint.replace('opc.tcp', 'http')).port);
    const restartedAt = Date.now();
    const second = await startPeer(python, [], port);
    cleanups.push(() => second.stop());
    expect(second.endpoint).toBe(first.endpoint);

    // The new process writes its own source timestamps: values stamped after it started are its.
    const resumed = () => rec.series('line-1', 'counter').filter((r) => r.sourceTime! >= restartedAt);
    await eventually(
      'counter values from the restarted server',
      () => resumed().length >= 3,
      () => rec.text(),
      15_000,
    );
    const values = resumed().map((r) => r.value as number);
    expect(values.every((v, i) => i === 0 || v > values[i - 1]!)).toBe(true);
    expect(resumed().every((r) => r.quality === 'good')).toBe(true);
    // The re-created items start with the current values, the bad one included.
    expect(
      rec
        .series('line-1', 'broken')
        .filter((r) => r.receivedAt >= restartedAt)
        .at(-1),
    ).toMatchObject({
      value: null,
      quality: 'bad',
      status: 'BadSensorFailure',
    });
    expect(rec.reconnects).toBe(1);
    expect(source.state()).toBe('up');
    expect(rec.logged(/lost the connection/, 40).length).toBeGreaterThanOrEqual(1);
    expect(rec.rejections).toEqual([]);
  });

  it('reports wrong credentials clearly and stays down', async () => {
    const pki = path.join(tmp.dir, 'pki-secure');
    await trustPeer(pki);
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'peer-wrong',
      {
        endpoint: peer.endpoint,
        securityMode: 'SignAndEncrypt',
        auth: { username: 'alice', password: 'not-the-password' },
        pkiFolder: pki,
        items: items('counter'),
      },
      rec,
    );
    expect(source.state()).toBe('down');
    const refused = rec.logged(/refused the login of user 'alice'/, 50);
    expect(refused, rec.text()).toHaveLength(1);
    expect(refused[0]!.msg).toContain(peer.endpoint);
    await new Promise((r) => setTimeout(r, 500));
    expect(source.state()).toBe('down');
    expect(rec.received).toHaveLength(0);
  });
});
