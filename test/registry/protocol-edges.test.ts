import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import { AliasPoller } from '../../runtime/registry/poller.js';
import { RegistryError, type ModelVersionInfo } from '../../runtime/registry/types.js';
import { silentLogger } from '../../runtime/log.js';
import { freePort } from '../helpers/ports.js';

/**
 * Protocol edges that a healthy MLflow server never shows on demand (hostile listings, 5xx,
 * stalls, ignored Range, cut transfers, TLS with a private CA), against a SCRIPTED HTTP SERVER
 * that speaks MLflow's REST shapes; it is not MLflow. Everything a real server can show is
 * tested against one in mlflow.test.ts.
 */

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void;

interface Scripted {
  url: string;
  requests: { path: string; headers: http.IncomingHttpHeaders }[];
  handle: Handler;
  close(): Promise<void>;
}

async function scriptedRegistry(
  tls?: { cert: Buffer; key: Buffer },
  handle: Handler = (_req, res) => res.writeHead(404).end(),
): Promise<Scripted> {
  const requests: Scripted['requests'] = [];
  const state = { handle };
  const listener: http.RequestListener = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ path: url.pathname + url.search, headers: req.headers });
    state.handle(req, res, url);
  };
  const server = tls
    ? https.createServer({ cert: tls.cert, key: tls.key }, listener)
    : http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    requests,
    get handle() {
      return state.handle;
    },
    set handle(h: Handler) {
      state.handle = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const ROOT = '1/0123456789abcdef/artifacts/package';

function version(v = '7'): ModelVersionInfo {
  return {
    name: 'defect',
    version: v,
    status: 'READY',
    source: `mlflow-artifacts:/${ROOT}`,
    tags: {},
    aliases: ['champion'],
    lastUpdated: 0,
  };
}

function modelVersionJson(v: string) {
  return {
    model_version: {
      name: 'defect',
      version: v,
      status: 'READY',
      source: `mlflow-artifacts:/${ROOT}`,
      aliases: ['champion'],
      creation_timestamp: 1,
      last_updated_timestamp: 2,
    },
  };
}

/** Answers get-download-uri, a listing and file downloads from `files` (name -> bytes). */
function artifactServer(
  listing: { path: string; is_dir?: boolean; file_size?: number }[],
  files: Record<string, Buffer>,
  download?: (name: string, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void,
): Handler {
  return (req, res, url) => {
    if (url.pathname === '/api/2.0/mlflow/model-versions/get-download-uri') {
      return json(res, 200, { artifact_uri: `mlflow-artifacts:/${ROOT}` });
    }
    if (url.pathname === '/api/2.0/mlflow-artifacts/artifacts') {
      return json(res, 200, url.searchParams.get('path') === ROOT ? { files: listing } : {});
    }
    const prefix = `/api/2.0/mlflow-artifacts/artifacts/${ROOT}/`;
    if (url.pathname.startsWith(prefix)) {
      const name = decodeURIComponent(url.pathname.slice(prefix.length));
      const body = files[name];
      if (!body)
        return json(res, 404, {
          error_code: 'RESOURCE_DOES_NOT_EXIST',
          message: `No such artifact: ${name}`,
        });
      if (download) return download(name, req, res, body);
      res.writeHead(200, { 'Content-Length': body.length }).end(body);
      return;
    }
    json(res, 404, { error_code: 'ENDPOINT_NOT_FOUND', message: 'no such endpoint' });
  };
}

function client(url: string, extra: Partial<Record<string, unknown>> = {}, env: Record<string, string> = {}) {
  return new MlflowRegistryClient(RegistryConfig.parse({ url, requestTimeoutMs: 2_000, ...extra }), { env });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('MlflowRegistryClient protocol edges (scripted HTTP server, not MLflow)', () => {
  let server: Scripted;
  let dest: string;

  beforeAll(async () => {
    server = await scriptedRegistry();
  });
  afterAll(async () => {
    await server?.close();
  });
  afterEach(async () => {
    if (dest) await rm(dest, { recursive: true, force: true });
    server.requests.length = 0;
  });
  async function freshDest(): Promise<string> {
    dest = await mkdtemp(path.join(os.tmpdir(), 'vigil-registry-edges-'));
    return path.join(dest, 'staging');
  }

  it.each([
    ['../escape.bin', 'parent'],
    ['..', 'dot-dot'],
    ['sub\\..\\..\\escape.bin', 'backslashes'],
    ['/etc/passwd-copy', 'absolute'],
    ['a/../../escape.bin', 'slashes'],
    ['C:evil.bin', 'drive letter'],
  ])('refuses a listing entry %j (%s) with invalid and writes nothing', async (evil) => {
    server.handle = artifactServer(
      [
        { path: 'vigil.json', file_size: 2 },
        { path: evil, file_size: 4 },
      ],
      { 'vigil.json': Buffer.from('{}'), [evil]: Buffer.from('evil') },
    );
    const staging = await freshDest();
    const err = await client(server.url)
      .downloadVersion(version(), staging)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).kind).toBe('invalid');
    expect((err as RegistryError).message).toMatch(/outside the download folder/);
    expect(existsSync(path.join(dest, 'escape.bin'))).toBe(false);
    // Refused while listing, before any file was fetched.
    expect(server.requests.some((r) => r.path.includes(`${ROOT}/`))).toBe(false);
  });

  it('refuses a download URI that climbs out of the artifact root', async () => {
    server.handle = (_req, res) => json(res, 200, { artifact_uri: 'mlflow-artifacts:/1/../../../etc' });
    const err = await client(server.url)
      .downloadVersion(version(), await freshDest())
      .catch((e: unknown) => e);
    expect((err as RegistryError).kind).toBe('invalid');
  });

  it('refuses artifacts that are not behind the artifact proxy, saying how to fix it', async () => {
    server.handle = (_req, res) => json(res, 200, { artifact_uri: 's3://bucket/models/1' });
    const err = (await client(server.url)
      .downloadVersion({ ...version(), source: 's3://bucket/models/1' }, await freshDest())
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('invalid');
    expect(err.message).toMatch(/--serve-artifacts/);
  });

  it('maps 500 with an MLflow error body to unavailable, showing error_code and message', async () => {
    server.handle = (_req, res) =>
      json(res, 500, { error_code: 'INTERNAL_ERROR', message: 'database is locked' });
    const err = (await client(server.url)
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('unavailable');
    expect(err.retryable).toBe(true);
    expect(err.status).toBe(500);
    expect(err.errorCode).toBe('INTERNAL_ERROR');
    expect(err.message).toBe(
      `registry ${server.url} answered 500 INTERNAL_ERROR: database is locked (GET registered-models/alias)`,
    );
  });

  it('parses plain-text and HTML error bodies defensively', async () => {
    server.handle = (_req, res) =>
      res
        .writeHead(503, { 'Content-Type': 'text/html' })
        .end('<html><body><h1>Service Unavailable</h1> proxy off</body></html>');
    const err = (await client(server.url)
      .getVersion('defect', '1')
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('unavailable');
    expect(err.errorCode).toBeUndefined();
    expect(err.message).toMatch(/answered 503: Service Unavailable proxy off/);

    server.handle = (_req, res) => res.writeHead(429).end('slow down');
    expect(
      (
        (await client(server.url)
          .getVersion('defect', '1')
          .catch((e: unknown) => e)) as RegistryError
      ).kind,
    ).toBe('unavailable');

    server.handle = (_req, res) =>
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<html>login</html>');
    const notJson = (await client(server.url)
      .getVersion('defect', '1')
      .catch((e: unknown) => e)) as RegistryError;
    expect(notJson.kind).toBe('invalid');
    expect(notJson.message).toMatch(/not JSON/);

    server.handle = (_req, res) => json(res, 200, { model_version: { name: 'defect' } });
    expect(
      (
        (await client(server.url)
          .getVersion('defect', '1')
          .catch((e: unknown) => e)) as RegistryError
      ).kind,
    ).toBe('invalid');
  });

  it('times out a registry that accepts the connection but never answers', async () => {
    server.handle = () => undefined; // holds the request open
    const err = (await client(server.url, { requestTimeoutMs: 300 })
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('timeout');
    expect(err.message).toMatch(/did not answer within 300 ms/);
  });

  it('times out a download that stalls mid-file, keeping the part for the next attempt', async () => {
    const body = randomBytes(64 * 1024);
    server.handle = artifactServer(
      [{ path: 'model.bin', file_size: body.length }],
      { 'model.bin': body },
      (_n, _q, res) => {
        res.writeHead(200, { 'Content-Length': body.length });
        res.write(body.subarray(0, 1000)); // then nothing
      },
    );
    const staging = await freshDest();
    const err = (await client(server.url, { requestTimeoutMs: 300 })
      .downloadVersion(version(), staging)
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('timeout');
    expect((await stat(path.join(staging, 'model.bin.part'))).size).toBe(1000);
  });

  it('resumes a transfer cut short with Range, and restarts a file when Range is ignored', async () => {
    const body = randomBytes(256 * 1024);
    let mode: 'cut' | 'range' | 'ignore-range' = 'cut';
    server.handle = artifactServer(
      [{ path: 'model.bin', file_size: body.length }],
      { 'model.bin': body },
      (_n, req, res) => {
        const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (mode === 'cut') {
          // Promises the whole file, sends a third, hangs up: what a dropped proxy looks like.
          res.writeHead(200, { 'Content-Length': body.length });
          res.write(body.subarray(0, 100_000), () => res.destroy());
        } else if (mode === 'range' && range) {
          const from = Number(range[1]);
          res.writeHead(206, {
            'Content-Length': body.length - from,
            'Content-Range': `bytes ${from}-${body.length - 1}/${body.length}`,
          });
          res.end(body.subarray(from));
        } else {
          res.writeHead(200, { 'Content-Length': body.length }).end(body);
        }
      },
    );
    const staging = await freshDest();
    const registry = client(server.url);
    const first = (await registry
      .downloadVersion(version(), staging)
      .catch((e: unknown) => e)) as RegistryError;
    expect(first).toBeInstanceOf(RegistryError);
    expect(first.retryable).toBe(true);
    const partial = (await stat(path.join(staging, 'model.bin.part'))).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(body.length);

    mode = 'range';
    const second = await registry.downloadVersion(version(), staging);
    expect(second.resumedBytes).toBe(partial);
    expect(second.bytes).toBe(body.length);
    expect(server.requests.at(-1)?.headers.range).toBe(`bytes=${partial}-`);
    expect(sha256(await readFile(path.join(staging, 'model.bin')))).toBe(sha256(body));
    expect(await readdir(staging)).toEqual(['model.bin']);

    // A server that ignores Range answers 200 with the whole file: start over, do not append.
    await rm(staging, { recursive: true });
    mode = 'cut';
    await registry.downloadVersion(version(), staging).catch(() => undefined);
    mode = 'ignore-range';
    const third = await registry.downloadVersion(version(), staging);
    expect(third.resumedBytes).toBe(0);
    expect(sha256(await readFile(path.join(staging, 'model.bin')))).toBe(sha256(body));
  });

  it('reports a file larger than listed as invalid rather than keeping it', async () => {
    const body = randomBytes(2000);
    server.handle = artifactServer([{ path: 'model.bin', file_size: 1000 }], { 'model.bin': body });
    const staging = await freshDest();
    const err = (await client(server.url)
      .downloadVersion(version(), staging)
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('invalid');
    expect(err.message).toMatch(/ended after 2000 of 1000 bytes/);
    expect(existsSync(path.join(staging, 'model.bin'))).toBe(false);
  });

  it('sends Basic for username + password variable, Bearer for a token, and never shows them', async () => {
    server.handle = (_req, res) =>
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="mlflow"' }).end('You are not authenticated.');
    const basic = client(server.url, { username: 'gateway-7' }, { MLFLOW_TRACKING_PASSWORD: 'pa55-word!' });
    const err = (await basic.versionByAlias('defect', 'champion').catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/check registry.username/);
    expect(err.message).not.toContain('pa55-word!');
    expect(server.requests.at(-1)?.headers.authorization).toBe(
      `Basic ${Buffer.from('gateway-7:pa55-word!').toString('base64')}`,
    );

    const token = client(server.url, { tokenEnv: 'REGISTRY_TOKEN' }, { REGISTRY_TOKEN: 'tok-123' });
    await token.versionByAlias('defect', 'champion').catch(() => undefined);
    expect(server.requests.at(-1)?.headers.authorization).toBe('Bearer tok-123');

    const missing = client(server.url, { username: 'gateway-7' }, {});
    const before = server.requests.length;
    const noPassword = (await missing
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(noPassword.kind).toBe('auth');
    expect(noPassword.message).toMatch(/\$MLFLOW_TRACKING_PASSWORD is not set/);
    expect(server.requests.length).toBe(before);

    const inUrl = client(server.url.replace('http://', 'http://u:secret-in-url@'));
    const shown = (await inUrl
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(shown.message).not.toContain('secret-in-url');
    expect(server.requests.at(-1)?.headers.authorization).toBe(
      `Basic ${Buffer.from('u:secret-in-url').toString('base64')}`,
    );
  });

  it('returns the abort reason, not a registry error, when the caller aborts', async () => {
    server.handle = () => undefined;
    const controller = new AbortController();
    const pending = client(server.url).downloadVersion(version(), await freshDest(), {
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 50);
    const err = await pending.catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(RegistryError);
    expect((err as Error).name).toBe('AbortError');
  });
});

describe('MlflowRegistryClient over TLS with a private CA (scripted HTTPS server, not MLflow)', () => {
  let dir: string;
  let server: Scripted;
  const run = promisify(execFile);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-registry-tls-'));
    const f = (n: string) => path.join(dir, n);
    await run('openssl', [
      ...[
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=vigil-registry-test-ca',
      ],
      ...['-keyout', f('ca.key'), '-out', f('ca.pem')],
    ]);
    await run('openssl', [
      ...['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1'],
      ...['-keyout', f('server.key'), '-out', f('server.csr')],
    ]);
    await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await run('openssl', [
      ...['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key')],
      ...['-CAcreateserial', '-days', '2', '-extfile', f('san.ext'), '-out', f('server.pem')],
    ]);
    server = await scriptedRegistry(
      { cert: await readFile(f('server.pem')), key: await readFile(f('server.key')) },
      (_req, res) => json(res, 200, modelVersionJson('3')),
    );
  });
  afterAll(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('trusts the registry through tls.ca (relative to the config folder)', async () => {
    const registry = new MlflowRegistryClient(
      RegistryConfig.parse({ url: server.url, tls: { ca: 'ca.pem' } }),
      {
        baseDir: dir,
        env: {},
      },
    );
    expect((await registry.versionByAlias('defect', 'champion')).version).toBe('3');
  });

  it('refuses an unknown CA as unreachable with a hint, unless told not to verify', async () => {
    const strict = new MlflowRegistryClient(RegistryConfig.parse({ url: server.url }), { env: {} });
    const err = (await strict.versionByAlias('defect', 'champion').catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('unreachable');
    expect(err.message).toMatch(/set registry.tls.ca/);
    const lax = new MlflowRegistryClient(
      RegistryConfig.parse({ url: server.url, tls: { rejectUnauthorized: false } }),
      {
        env: {},
      },
    );
    expect((await lax.versionByAlias('defect', 'champion')).version).toBe('3');
  });

  it('says which CA file it cannot read', () => {
    expect(
      () =>
        new MlflowRegistryClient(RegistryConfig.parse({ url: server.url, tls: { ca: 'missing.pem' } }), {
          baseDir: dir,
        }),
    ).toThrow(/registry.tls.ca: cannot read .*missing.pem/);
  });
});

describe('AliasPoller (scripted HTTP server, not MLflow)', () => {
  let server: Scripted;
  let answer: { status: number; version: string };

  beforeAll(async () => {
    answer = { status: 200, version: '1' };
    server = await scriptedRegistry(undefined, (_req, res) =>
      answer.status === 200
        ? json(res, 200, modelVersionJson(answer.version))
        : json(res, answer.status, { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'maintenance' }),
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  function captureLog() {
    const lines: { level: number; msg: string }[] = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      }),
    );
    return { log, lines };
  }

  it('backs off with jitter while failing, logs once per state change, and hands on only new versions', async () => {
    answer = { status: 200, version: '1' };
    const { log, lines } = captureLog();
    const seen: string[] = [];
    const poller = new AliasPoller({
      client: client(server.url),
      name: 'defect',
      alias: 'champion',
      config: RegistryConfig.parse({
        url: server.url,
        pollIntervalSeconds: 600,
        backoff: { initialDelayMs: 10_000, maxDelayMs: 40_000 },
      }),
      log,
      onVersion: (info) => void seen.push(info.version),
      random: () => 0.5,
    });

    expect((await poller.pollNow())?.version).toBe('1');
    expect(seen).toEqual(['1']);
    // Normal interval plus the fixed jitter: 600 s × 1.1.
    expect(poller.nextDelayMs).toBe(660_000);
    await poller.pollNow();
    await poller.pollNow();
    expect(seen).toEqual(['1']);

    answer = { status: 503, version: '1' };
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const err = (await poller.pollNow().catch((e: unknown) => e)) as RegistryError;
      expect(err.kind).toBe('unavailable');
      delays.push(poller.nextDelayMs!);
    }
    expect(poller.state).toBe('failing');
    // Half fixed, half random (0.5): 0.75 × min(max, initial × 2^n).
    expect(delays).toEqual([7_500, 15_000, 30_000, 30_000, 30_000]);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    expect(lines.find((l) => l.level === 40)?.msg).toMatch(
      /answered 503 TEMPORARILY_UNAVAILABLE: maintenance.*retrying with back-off/,
    );

    answer = { status: 200, version: '1' };
    await poller.pollNow();
    expect(poller.state).toBe('ok');
    expect(poller.nextDelayMs).toBe(660_000);
    expect(seen).toEqual(['1']);
    expect(lines.at(-1)?.msg).toMatch(/answers again; defect@champion is still version 1/);

    answer = { status: 200, version: '2' };
    await poller.pollNow();
    expect(seen).toEqual(['1', '2']);
    expect(poller.requests).toBe(10);
    await poller.stop();
  });

  it('offers a version again when the callback failed, and not the known one', async () => {
    answer = { status: 200, version: '5' };
    let fail = true;
    const seen: string[] = [];
    const poller = new AliasPoller({
      client: client(server.url),
      name: 'defect',
      alias: 'champion',
      config: RegistryConfig.parse({ url: server.url }),
      log: silentLogger(),
      known: '4',
      onVersion: (info) => {
        seen.push(info.version);
        if (fail) throw new Error('disk full');
      },
    });
    await poller.pollNow();
    fail = false;
    await poller.pollNow();
    await poller.pollNow();
    expect(seen).toEqual(['5', '5']);
    expect(poller.lastVersion).toBe('5');

    answer = { status: 200, version: '4' };
    const quiet = new AliasPoller({
      client: client(server.url),
      name: 'defect',
      alias: 'champion',
      config: RegistryConfig.parse({ url: server.url }),
      log: silentLogger(),
      known: '4',
      onVersion: (info) => void seen.push(`quiet-${info.version}`),
    });
    await quiet.pollNow();
    expect(seen).toEqual(['5', '5']);
  });

  it('polls on its own once started, and stops', async () => {
    answer = { status: 200, version: '9' };
    const seen: string[] = [];
    let resolveFirst: () => void = () => undefined;
    const first = new Promise<void>((r) => (resolveFirst = r));
    const poller = new AliasPoller({
      client: client(server.url),
      name: 'defect',
      alias: 'champion',
      config: RegistryConfig.parse({ url: server.url, pollIntervalSeconds: 1 }),
      log: silentLogger(),
      onVersion: (info) => {
        seen.push(info.version);
        resolveFirst();
      },
    });
    poller.start();
    await first;
    await poller.stop();
    const after = poller.requests;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(poller.requests).toBe(after);
    expect(poller.state).toBe('stopped');
    expect(seen).toEqual(['9']);
  });
});

describe('MlflowRegistryClient against a closed port', () => {
  it('reports unreachable', async () => {
    const port = await freePort();
    const err = (await client(`http://127.0.0.1:${port}`)
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(err.kind).toBe('unreachable');
    expect(err.message).toMatch(new RegExp(`cannot reach registry http://127.0.0.1:${port}: ECONNREFUSED`));
  });
});
