import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VigilError } from '../../runtime/errors.js';
import { createLogger, type Logger } from '../../runtime/log.js';
import { authFailure, bearerToken, isLoopback, opsToken } from '../../runtime/ops/auth.js';
import { startOpsServer, type ModelAction, type OpsServer } from '../../runtime/ops/http.js';
import { warnIfRoot } from '../../runtime/ops/privileges.js';
import { CLI, metricValue } from '../helpers/daemon.js';

/**
 * The ops token on a real Fastify ops server: every request that is not GET or HEAD needs it,
 * including routes that do not exist (so an endpoint added later is covered by itself); read-only
 * endpoints stay open; refusals are counted and logged without the token; the `vigil models`
 * commands send it from --token-file, VIGIL_HTTP_TOKEN or the config's http.tokenFile.
 */

const TOKEN = 'ops-Token-7f3a9c1e5b2d4680';
const execFileAsync = promisify(execFile);

/** A logger (the real one, with its redaction) whose lines land in an array. */
function capturedLogger(): { log: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger({ level: 'trace', stream }), lines: () => lines };
}

describe('ops token on state-changing requests', () => {
  const servers: OpsServer[] = [];
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-auth-'));
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function start(token: string | undefined, host = '127.0.0.1') {
    const registry = new Registry();
    const captured = capturedLogger();
    const actions: Array<[string, ModelAction]> = [];
    const server = await startOpsServer({
      host,
      port: 0,
      log: captured.log,
      registry,
      token,
      health: () => ({ models: [], sources: [], mqtt: { connected: true } }),
      api: {
        status: () => ({ device: 'gw-auth' }),
        alerts: () => [],
        modelAction: async (model, action) => {
          actions.push([model, action]);
          return { status: 200, body: { message: `${action} of ${model} done` } };
        },
      },
    });
    servers.push(server);
    const local = `http://127.0.0.1:${server.port}`;
    const failures = async (reason: string) =>
      metricValue(await (await fetch(`${local}/metrics`)).text(), 'vigil_http_auth_failures_total', {
        reason,
      });
    return { server, local, actions, lines: captured.lines, failures };
  }

  it('refuses every state change when no token is configured, and says how to configure one', async () => {
    const { local, actions, failures, lines } = await start(undefined);
    const res = await fetch(`${local}/api/v1/models/defect/promote`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toMatch(
      /no ops token configured; set http\.tokenFile or VIGIL_HTTP_TOKEN/,
    );
    expect(actions).toEqual([]);
    expect(await failures('not_configured')).toBe(1);
    // Reading stays open.
    for (const route of ['/healthz', '/readyz', '/metrics', '/api/v1/status', '/api/v1/alerts', '/']) {
      expect((await fetch(`${local}${route}`)).status, route).toBe(200);
    }
    expect((await fetch(`${local}/healthz`, { method: 'HEAD' })).status).toBe(200);
    expect(lines().join('\n')).toContain('promote, rollback and check over HTTP are refused');
    expect(lines().join('\n')).not.toContain(TOKEN);
  });

  it('answers 401 with WWW-Authenticate without a token, 403 for a wrong one, and acts on the right one', async () => {
    const { local, actions, failures, lines } = await start(TOKEN);
    const promote = (headers: Record<string, string> = {}) =>
      fetch(`${local}/api/v1/models/defect/promote`, { method: 'POST', headers });

    let res = await promote();
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="vigil"');
    expect(((await res.json()) as { error: string }).error).toMatch(/Authorization: Bearer/);

    res = await promote({ authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` });
    expect(res.status).toBe(401);

    const wrong = `${TOKEN.slice(0, -1)}X`;
    res = await promote({ authorization: `Bearer ${wrong}` });
    expect(res.status).toBe(403);
    res = await promote({ authorization: `Bearer ${TOKEN}extra` });
    expect(res.status).toBe(403);
    expect(actions).toEqual([]);

    res = await promote({ authorization: `Bearer ${TOKEN}` });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ message: 'promote of defect done' });
    res = await fetch(`${local}/api/v1/models/defect/rollback`, {
      method: 'POST',
      headers: { authorization: `bearer  ${TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(actions).toEqual([
      ['defect', 'promote'],
      ['defect', 'rollback'],
    ]);

    expect(await failures('missing')).toBe(2);
    expect(await failures('wrong')).toBe(2);
    expect(await failures('not_configured')).toBe(0);
    const log = lines().join('\n');
    expect(log).toMatch(
      /ops HTTP POST \/api\/v1\/models\/defect\/promote from 127\.0\.0\.1 refused: no bearer token/,
    );
    expect(log).not.toContain(TOKEN.slice(4));
    expect(log).not.toContain(wrong.slice(4));
  });

  it('guards every method but GET and HEAD, on routes that do not exist yet too', async () => {
    const { local } = await start(TOKEN);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const res = await fetch(`${local}/api/v1/config/reload`, { method });
      expect(res.status, method).toBe(401);
      const authed = await fetch(`${local}/api/v1/config/reload`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(authed.status, `${method} with the token reaches routing`).toBe(404);
    }
    expect((await fetch(`${local}/api/v1/nothing-here`)).status).toBe(404);
  });

  it('warns at start when it listens beyond loopback, naming who can reach it', async () => {
    const { lines } = await start(undefined, '0.0.0.0');
    const warn = lines()
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.level === 40 && l.msg.includes('not loopback'));
    expect(warn?.msg).toMatch(
      /listens on 0\.0\.0\.0, not loopback: every host that can reach port \d+ can read metrics, status and alerts; requests that change state are refused/,
    );
  });

  it('reads the token from http.tokenFile (trimmed) or VIGIL_HTTP_TOKEN, with errors naming the setting and file', async () => {
    const file = path.join(dir, 'ops-token');
    await writeFile(file, `  ${TOKEN}\n`);
    expect(opsToken({ tokenFile: 'ops-token' }, { resolvePath: (f) => path.join(dir, f), env: {} })).toBe(
      TOKEN,
    );
    expect(opsToken({ tokenFile: file }, { env: { VIGIL_HTTP_TOKEN: 'other' } })).toBe(TOKEN);
    expect(opsToken({}, { env: { VIGIL_HTTP_TOKEN: 'from-env' } })).toBe('from-env');
    expect(opsToken({}, { env: { VIGIL_HTTP_TOKEN: '' } })).toBeUndefined();
    expect(opsToken({}, { env: {} })).toBeUndefined();

    const missing = path.join(dir, 'nope');
    expect(() => opsToken({ tokenFile: missing })).toThrow(VigilError);
    expect(() => opsToken({ tokenFile: missing })).toThrow(
      `http.tokenFile: cannot read the secret file ${missing}: the file does not exist`,
    );
    const empty = path.join(dir, 'empty');
    await writeFile(empty, '\n \n');
    expect(() => opsToken({ tokenFile: empty })).toThrow(`http.tokenFile: the secret file ${empty} is empty`);
    expect(() => opsToken({ tokenFile: dir })).toThrow(/it is a folder, not a file/);
  });

  it('parses bearer tokens and compares them by digest', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer\tabc ')).toBe('abc');
    expect(bearerToken('Bearer')).toBeUndefined();
    expect(bearerToken('Bearer a b')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
    expect(isLoopback('127.0.0.1')).toBe(true);
    expect(isLoopback('127.1.2.3')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('[::1]')).toBe(true);
    expect(isLoopback('localhost')).toBe(true);
    expect(isLoopback('0.0.0.0')).toBe(false);
    expect(isLoopback('::')).toBe(false);
    expect(isLoopback('192.168.1.10')).toBe(false);
    expect(authFailure('Bearer x', undefined)).toBe('not_configured');
  });

  it('warns once at start when running as root', () => {
    const { log, lines } = capturedLogger();
    expect(warnIfRoot(log, 1000)).toBe(false);
    expect(warnIfRoot(log, 0)).toBe(true);
    expect(lines()).toHaveLength(1);
    expect(lines()[0]).toContain('running as root (uid 0)');
  });

  describe('vigil models promote | rollback sends the token', () => {
    async function cli(args: string[], env: Record<string, string> = {}) {
      const clean = { ...process.env };
      delete clean.VIGIL_HTTP_TOKEN;
      try {
        const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, 'models', ...args], {
          env: { ...clean, ...env },
        });
        return { code: 0, out: stdout + stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, out: e.stdout + e.stderr };
      }
    }

    async function config(extra = ''): Promise<string> {
      const file = path.join(dir, `vigil-${Math.random().toString(36).slice(2)}.yaml`);
      await writeFile(
        file,
        [
          'device: { id: gw-auth }',
          `http: { port: 8470${extra} }`,
          'registry: { url: "http://127.0.0.1:9" }',
          'models: { defect: { package: pkg, registry: { name: defect } } }',
          'sources: {}',
          'pipelines: {}',
        ].join('\n'),
      );
      return file;
    }

    it('from --token-file, VIGIL_HTTP_TOKEN or http.tokenFile; refused without one', async () => {
      const { local, actions } = await start(TOKEN);
      await writeFile(path.join(dir, 'cli-token'), `${TOKEN}\n`);
      const plain = await config();

      let r = await cli(['promote', 'defect', '--config', plain, '--url', local]);
      expect(r.code, r.out).toBe(1);
      expect(r.out).toContain('send the ops token as Authorization: Bearer <token>');

      r = await cli([
        'promote',
        'defect',
        '--config',
        plain,
        '--url',
        local,
        '--token-file',
        path.join(dir, 'cli-token'),
      ]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain('promote of defect done');

      r = await cli(['rollback', 'defect', '--config', plain, '--url', local], { VIGIL_HTTP_TOKEN: TOKEN });
      expect(r.code, r.out).toBe(0);

      const withFile = await config(', tokenFile: cli-token');
      r = await cli(['rollback', 'defect', '--config', withFile, '--url', local]);
      expect(r.code, r.out).toBe(0);

      r = await cli(['promote', 'defect', '--config', plain, '--url', local], { VIGIL_HTTP_TOKEN: 'wrong' });
      expect(r.code, r.out).toBe(1);
      expect(r.out).toContain('does not match');

      r = await cli([
        'promote',
        'defect',
        '--config',
        plain,
        '--url',
        local,
        '--token-file',
        '/nonexistent/t',
      ]);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toContain(
        '--token-file: cannot read the secret file /nonexistent/t: the file does not exist',
      );

      expect(actions).toEqual([
        ['defect', 'promote'],
        ['defect', 'rollback'],
        ['defect', 'rollback'],
      ]);
    });
  });
});
