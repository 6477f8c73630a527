import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainTextSecrets } from '../../runtime/config/secrets.js';
import { redactUrl } from '../../runtime/mqtt-connect.js';
import { CLI, ROOT, metricValue, waitFor } from '../helpers/daemon.js';
import { startMlflow, type RunningMlflow } from '../helpers/mlflow.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';

/**
 * Secrets never leave the daemon: `vigil run` at log level trace, against a real Mosquitto with
 * password accounts (alert broker and upstream) and a real MLflow with basic auth, with passwords
 * and the ops token read from files and from the environment, right and wrong. Every secret
 * string, and the Basic header made from the registry's, must be absent from every log line, from
 * /metrics, /api/v1/status, the status page, /readyz and the MQTT messages (the retained status).
 */

const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const secret = (what: string) => `${what}-${randomBytes(9).toString('hex')}`;
const S = {
  mqtt: secret('mqttPw'),
  upstream: secret('upPw'),
  watcher: secret('watchPw'),
  registry: secret('regPw'),
  token: secret('opsTok'),
  wrongUpstream: secret('wrongUp'),
  wrongRegistry: secret('wrongReg'),
  wrongMqtt: secret('wrongMqtt'),
  wrongToken: secret('wrongTok'),
};
const basic = (user: string, pw: string) => Buffer.from(`${user}:${pw}`).toString('base64');
/** Everything that must never be seen: the secrets, and the registry's Basic credentials. */
const FORBIDDEN = [
  ...Object.values(S),
  basic('admin', S.registry),
  basic('admin', S.wrongRegistry),
  encodeURIComponent(S.wrongMqtt),
];

function leaks(text: string): string[] {
  return FORBIDDEN.filter((s) => text.includes(s));
}

interface Run {
  proc: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/** `vigil run` with its own environment (the secrets the test gives by variable). */
function run(config: string, env: Record<string, string>): Run {
  const clean = { ...process.env };
  for (const k of [
    'VIGIL_MQTT_PASSWORD',
    'VIGIL_UPSTREAM_PASSWORD',
    'MLFLOW_TRACKING_PASSWORD',
    'VIGIL_HTTP_TOKEN',
  ])
    delete clean[k];
  const proc = spawn(process.execPath, [CLI, 'run', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...clean, ...env },
  });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, output: () => output, exited };
}

async function stop(r: Run | undefined): Promise<number | null> {
  if (!r) return null;
  if (r.proc.exitCode !== null) return r.proc.exitCode;
  r.proc.kill('SIGTERM');
  return r.exited;
}

describe('secrets from files and the environment never reach logs, metrics, the API or MQTT', () => {
  let broker: RunningMosquitto;
  let registry: RunningMlflow;
  let dir: string;
  let watcher: MqttClient;
  const messages: string[] = [];
  const runs: Run[] = [];

  beforeAll(async () => {
    [broker, registry] = await Promise.all([
      startMosquitto({ users: { vigil: S.mqtt, upstream: S.upstream, watcher: S.watcher } }),
      startMlflow({ basicAuth: { username: 'admin', password: S.registry } }),
    ]);
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-secrets-'));
    await mkdir(path.join(dir, 'secrets'), { mode: 0o700 });
    const file = (name: string, content: string) =>
      writeFile(path.join(dir, 'secrets', name), content, { mode: 0o600 });
    await Promise.all([
      file('mqtt-password', `${S.mqtt}\n`),
      file('registry-password', `  ${S.registry}\n\n`),
      file('ops-token', `${S.token}\n`),
      file('upstream-password-wrong', S.wrongUpstream),
    ]);
    watcher = await mqtt.connectAsync(broker.url, {
      clientId: 'secrets-watcher',
      username: 'watcher',
      password: S.watcher,
    });
    watcher.on('message', (topic, payload) => messages.push(`${topic} ${payload.toString()}`));
    await watcher.subscribeAsync('vigil/#', { qos: 1 });
  });

  afterAll(async () => {
    for (const r of runs) await stop(r);
    await watcher?.endAsync();
    await Promise.all([broker?.stop(), registry?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function config(name: string, o: { camPort: number; lines: string[]; registry?: boolean }) {
    const file = path.join(dir, `${name}.yaml`);
    await writeFile(
      file,
      [
        'version: 1',
        `device: { id: ${name} }`,
        'log: { level: trace }',
        `store: { path: data-${name}/vigil.db }`,
        `models: { defect: { package: ${PACKAGE}${o.registry === false ? '' : ', registry: { name: defect-secrets }'} } }`,
        `sources: { cam: { type: camera-http, listen: { host: 127.0.0.1, port: ${o.camPort} } } }`,
        'pipelines: { inspection: { sources: [cam], model: defect, threshold: 0 } }',
        ...o.lines,
      ].join('\n'),
    );
    return file;
  }

  /** Scrapes everything the daemon shows about itself, while it runs. */
  async function exposed(http: string): Promise<string> {
    const parts = await Promise.all(
      ['/metrics', '/api/v1/status', '/readyz', '/', '/api/v1/alerts?limit=100'].map(async (route) =>
        (await fetch(`${http}${route}`)).text(),
      ),
    );
    return parts.join('\n');
  }

  async function ready(http: string, r: Run) {
    await waitFor(
      'the daemon ready',
      async () => {
        if (r.proc.exitCode !== null) throw new Error(`vigil run exited early:\n${r.output()}`);
        return (await fetch(`${http}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined;
      },
      60_000,
    );
  }

  async function frame(camPort: number) {
    const body = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#808080' } })
      .jpeg()
      .toBuffer();
    const res = await fetch(`http://127.0.0.1:${camPort}/frames`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body,
    });
    expect(res.status).toBe(202);
  }

  it('right secrets from files and the environment: connected, and nothing shows them', async () => {
    const httpPort = await freePort();
    const camPort = await freePort();
    const http = `http://127.0.0.1:${httpPort}`;
    const cfg = await config('sec-ok', {
      camPort,
      lines: [
        `http: { host: 127.0.0.1, port: ${httpPort}, tokenFile: secrets/ops-token }`,
        `mqtt: { url: "${broker.url}", username: vigil, passwordFile: secrets/mqtt-password }`,
        `upstream: { url: "${broker.url}", username: upstream }`,
        `registry: { url: "${registry.url}", username: admin, passwordFile: secrets/registry-password, pollIntervalSeconds: 1, storeDir: data-sec-ok/models }`,
      ],
    });
    const r = run(cfg, { VIGIL_UPSTREAM_PASSWORD: S.upstream });
    runs.push(r);
    await ready(http, r);
    await waitFor('both brokers connected', async () => {
      const m = await (await fetch(`${http}/metrics`)).text();
      return metricValue(m, 'vigil_mqtt_connected') === 1 && metricValue(m, 'vigil_upstream_connected') === 1
        ? true
        : undefined;
    });
    // The registry answered (the model is not registered there): the password was accepted.
    await waitFor('the registry poll', () =>
      /registry: defect-secrets@champion: .*answered 404/.test(r.output()) ? true : undefined,
    );
    await frame(camPort);
    await waitFor('the alert on MQTT', () =>
      messages.some((m) => m.includes('/sec-ok/alerts/')) ? true : undefined,
    );

    // The ops token: refused without it and with a wrong one, accepted with it.
    const check = (token?: string) =>
      fetch(`${http}/api/v1/models/defect/check`, {
        method: 'POST',
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    expect((await check()).status).toBe(401);
    expect((await check(S.wrongToken)).status).toBe(403);
    // Past the token check: the daemon asked the registry (which does not know the model).
    const authorised = await check(S.token);
    expect([401, 403]).not.toContain(authorised.status);
    expect(JSON.stringify(await authorised.json())).toMatch(/defect-secrets/);

    const seen = await exposed(http);
    expect(metricValue(seen, 'vigil_http_auth_failures_total', { reason: 'wrong' })).toBe(1);
    expect(await stop(r)).toBe(0);
    expect(r.output()).toMatch(/"level":20,.*"msg":"registry request"/); // the verbose lines were on
    expect(leaks(r.output()), 'secrets in the log').toEqual([]);
    expect(leaks(seen), 'secrets in metrics, status, readyz, the status page or alerts').toEqual([]);
    expect(messages.some((m) => m.startsWith('vigil/sec-ok/status'))).toBe(true);
    expect(leaks(messages.join('\n')), 'secrets in MQTT messages').toEqual([]);
  });

  it('wrong upstream and registry passwords: refusals are logged without the passwords', async () => {
    const httpPort = await freePort();
    const camPort = await freePort();
    const http = `http://127.0.0.1:${httpPort}`;
    const cfg = await config('sec-wrong', {
      camPort,
      lines: [
        `http: { host: 127.0.0.1, port: ${httpPort} }`,
        `mqtt: { url: "${broker.url}", username: vigil }`,
        `upstream: { url: "${broker.url}", username: upstream, passwordFile: secrets/upstream-password-wrong, reconnect: { initialDelayMs: 200, maxDelayMs: 1000 } }`,
        `registry: { url: "${registry.url}", username: admin, pollIntervalSeconds: 1, storeDir: data-sec-wrong/models }`,
      ],
    });
    const r = run(cfg, {
      VIGIL_MQTT_PASSWORD: S.mqtt,
      MLFLOW_TRACKING_PASSWORD: S.wrongRegistry,
      VIGIL_HTTP_TOKEN: S.token,
    });
    runs.push(r);
    await ready(http, r);
    await waitFor('the upstream refusal', () =>
      /upstream broker mqtt:\/\/127\.0\.0\.1:\d+ refused the connection/.test(r.output()) ? true : undefined,
    );
    await waitFor('the registry refusal', () => (/answered 401/.test(r.output()) ? true : undefined));
    await frame(camPort);
    const seen = await exposed(http);
    expect((await fetch(`${http}/api/v1/models/defect/check`, { method: 'POST' })).status).toBe(401);
    expect(await stop(r)).toBe(0);
    expect(leaks(r.output()), 'secrets in the log').toEqual([]);
    expect(leaks(seen), 'secrets in metrics, status, readyz, the status page or alerts').toEqual([]);
    expect(leaks(messages.join('\n')), 'secrets in MQTT messages').toEqual([]);
  });

  it('a wrong password inside the broker URL: the daemon stops with a message that shows neither', async () => {
    const httpPort = await freePort();
    const camPort = await freePort();
    const url = broker.url.replace('mqtt://', `mqtt://vigil:${encodeURIComponent(S.wrongMqtt)}@`);
    const cfg = await config('sec-url', {
      camPort,
      lines: [`http: { host: 127.0.0.1, port: ${httpPort} }`, `mqtt: { url: "${url}" }`],
      registry: false,
    });
    const r = run(cfg, {});
    runs.push(r);
    expect(await r.exited).toBe(1);
    expect(r.output()).toMatch(
      new RegExp(
        `vigil could not start: MQTT broker mqtt://127\\.0\\.0\\.1:${broker.port} refused the connection`,
      ),
    );
    expect(leaks(r.output()), 'secrets in the log').toEqual([]);
    expect(plainTextSecrets({ mqtt: { url } }).map((i) => i.path)).toEqual(['mqtt.url']);
  });

  it('redacts URLs and names plain-text secrets for vigil config check', () => {
    expect(redactUrl('mqtts://gw:p%40ss@broker:8883/x')).toBe('mqtts://broker:8883/x');
    expect(redactUrl('mqtt://gw@broker:1883')).toBe('mqtt://broker:1883');
    expect(redactUrl('mqtt://broker:1883')).toBe('mqtt://broker:1883');
    expect(redactUrl('mqtt://u:s3cret@[::1')).toBe('mqtt://[::1');
    expect(
      plainTextSecrets({
        mqtt: { password: 'x', passwordFile: 'f' },
        upstream: { url: 'mqtt://u:p@h:1883', passwordEnv: 'X' },
        registry: { url: 'https://h' },
        sources: {
          plc: { type: 'opcua', auth: { username: 'u', password: 'p' } },
          line: { type: 'mqtt-json', passwordFile: 'f' },
        },
      }).map((i) => i.path),
    ).toEqual(['mqtt.password', 'upstream.url', 'sources.plc.auth.password']);
  });
});
