import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { connect, type IClientOptions } from 'mqtt';
import { resolvePath, type LoadedConfig } from '../config/load.js';
import { readSecret } from '../config/secrets.js';
import { errorMessage } from '../errors.js';
import { redactUrl } from '../mqtt-connect.js';
import { MlflowRegistryClient } from '../registry/mlflow.js';
import type { CheckResult, DoctorContext } from './check.js';

/**
 * Whether the gateway reaches what its config names: a real MQTT CONNECT to each broker with its
 * credentials and TLS, the registry's REST API with its authentication, a TCP connection to each
 * OPC-UA server, and whether the ports Vigil listens on are free (or held by a running Vigil).
 */

/** CONNACK return codes (MQTT 3.1.1) and reason codes (MQTT 5) that refuse a connection. */
const CONNACK: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
  128: 'unspecified error',
  133: 'client identifier not valid',
  134: 'bad user name or password',
  135: 'not authorized',
  136: 'server unavailable',
  138: 'banned',
};

interface TlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  rejectUnauthorized: boolean;
}

export interface BrokerTarget {
  /** Row name, e.g. 'mqtt broker', 'upstream broker', 'source plant-mqtt'. */
  name: string;
  /** Config path of the section, for messages: 'mqtt', 'upstream', 'sources.x'. */
  where: string;
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** Set when the password's file could not be read: the daemon would not start this connection. */
  secretProblem?: string | undefined;
  tls?: TlsFiles | undefined;
}

/** Connects once with mqtt.js (no retry) and reports the CONNACK or why there was none. */
export async function checkBroker(
  t: BrokerTarget,
  timeoutMs: number,
  loaded?: LoadedConfig,
): Promise<CheckResult> {
  const shown = redactUrl(t.url);
  const base = { group: 'network' as const, name: t.name };
  if (t.secretProblem) {
    return {
      ...base,
      status: 'fail',
      detail: t.secretProblem,
      fix: "create the secret file, readable by the daemon's user only (chown root:vigil, chmod 0640)",
    };
  }
  let tls: Record<string, unknown> = {};
  if (t.tls) {
    try {
      const read = (key: 'ca' | 'cert' | 'key') => {
        const file = t.tls![key];
        if (file === undefined) return {};
        const abs = loaded ? resolvePath(loaded, file) : file;
        try {
          return { [key]: readFileSync(abs) };
        } catch (err) {
          throw new Error(`${t.where}.tls.${key}: cannot read ${abs} (${errorMessage(err)})`);
        }
      };
      tls = { ...read('ca'), ...read('cert'), ...read('key'), rejectUnauthorized: t.tls.rejectUnauthorized };
    } catch (err) {
      return {
        ...base,
        status: 'fail',
        detail: errorMessage(err),
        fix: "correct the path in the config, or make the file readable by the daemon's user",
      };
    }
  }
  const options: IClientOptions = {
    // Never the daemon's own client id: the broker would disconnect the running daemon.
    clientId: `vigil-doctor-${randomBytes(4).toString('hex')}`,
    username: t.username,
    password: t.password,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
    ...tls,
  };
  const started = performance.now();
  const outcome = await new Promise<{ code?: number; error?: Error }>((resolve) => {
    const client = connect(t.url, options);
    const done = (r: { code?: number; error?: Error }) => {
      clearTimeout(timer);
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end(true);
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ error: new Error(`no CONNACK within ${timeoutMs} ms`) }),
      timeoutMs,
    );
    client.once('connect', (packet) => done({ code: packet.returnCode ?? packet.reasonCode ?? 0 }));
    client.once('error', (error) => done({ error }));
    client.once('close', () => done({ error: new Error('the connection closed before a CONNACK') }));
  });
  const ms = Math.round(performance.now() - started);
  const as = `${t.username ? ` as ${t.username}` : ''}${t.tls || /^(mqtts|ssl|wss):/.test(t.url) ? ', TLS' : ''}`;
  const data = { url: shown, ms, connack: outcome.code ?? null };
  if (outcome.code === 0) {
    return { ...base, status: 'ok', detail: `${shown}: CONNACK 0 (accepted)${as} in ${ms} ms`, data };
  }
  const err = outcome.error;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'number' || outcome.code !== undefined) {
    const c = typeof code === 'number' ? code : outcome.code!;
    return {
      ...base,
      status: 'fail',
      detail: `${shown}: CONNACK ${c} (${CONNACK[c] ?? 'refused'})${as}`,
      fix:
        c === 4 || c === 5 || c === 134 || c === 135
          ? `check ${t.where}.username and its password (${t.where}.passwordFile, the password variable) against the broker's accounts and ACL`
          : c === 2 || c === 133
            ? 'the broker refuses client ids it does not know: allow vigil-* client ids in its configuration'
            : "see the broker's log for why it refused",
      data: { ...data, connack: c },
    };
  }
  const { detail, fix } = describeNetworkError(err, t.url, `${t.where}.url`);
  return { ...base, status: 'fail', detail: `${shown}: ${detail}`, fix, data };
}

/** A connection error in words a person can act on. */
export function describeNetworkError(
  err: Error | undefined,
  url: string,
  setting: string,
): { detail: string; fix: string } {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? '');
  const msg = err ? errorMessage(err) : 'unknown error';
  let host = '?';
  try {
    const u = new URL(url);
    host = u.host;
  } catch {
    // the raw url is shown instead
  }
  if (code === 'ECONNREFUSED')
    return {
      detail: `connection refused: nothing listens at ${host}`,
      fix: `start the server there, or correct ${setting}; check that no firewall rejects the port`,
    };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return {
      detail: `the host name does not resolve (${code})`,
      fix: `check ${setting} and the gateway's DNS (/etc/resolv.conf), or use an IP address`,
    };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || /within \d+ ms/.test(msg))
    return {
      detail: `no answer from ${host} (${code || msg})`,
      fix: `check the network route and firewall between the gateway and ${host}, and ${setting}`,
    };
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|EPROTO|SSL|certificate/i.test(code + msg))
    return {
      detail: `TLS failed: ${code ? `${code} ` : ''}${msg}`,
      fix: `set the CA that signed the server's certificate (${setting.replace(/\.url$/, '.tls.ca')}), and check the host name and the gateway's clock`,
    };
  return { detail: `${code ? `${code} ` : ''}${msg}`, fix: `check ${setting} and that the server runs` };
}

function brokerTargets(loaded: LoadedConfig, env: NodeJS.ProcessEnv): BrokerTarget[] {
  const { config } = loaded;
  const resolve = (f: string) => resolvePath(loaded, f);
  const targets: BrokerTarget[] = [];
  const secret = (key: string, value?: string, file?: string, envName?: string) => {
    try {
      return { password: readSecret({ key, value, file, envName }, { env, resolvePath: resolve }) };
    } catch (err) {
      return { secretProblem: errorMessage(err) };
    }
  };
  targets.push({
    name: 'mqtt broker',
    where: 'mqtt',
    url: config.mqtt.url,
    username: config.mqtt.username,
    ...secret('mqtt.password', config.mqtt.password, config.mqtt.passwordFile, 'VIGIL_MQTT_PASSWORD'),
    tls: config.mqtt.tls,
  });
  const up = config.upstream;
  if (up?.enabled) {
    targets.push({
      name: 'upstream broker',
      where: 'upstream',
      url: up.url,
      username: up.username,
      ...secret('upstream.password', up.password, up.passwordFile, up.passwordEnv),
      tls: up.tls,
    });
  }
  for (const [name, s] of Object.entries(config.sources)) {
    if (s.type !== 'mqtt-json' && s.type !== 'sparkplug-b') continue;
    targets.push({
      name: `source ${name}`,
      where: `sources.${name}`,
      url: s.url,
      username: s.username,
      ...secret(`sources.${name}.password`, s.password, s.passwordFile, s.passwordEnv),
      tls: s.tls,
    });
  }
  return targets;
}

/** GET <registry>/health: reachability and the registry's clock (its Date header). */
function registryHealth(
  loaded: LoadedConfig,
  timeoutMs: number,
): Promise<{ status: number; date?: number; receivedAt: number; ms: number }> {
  const reg = loaded.config.registry!;
  const url = new URL(reg.url);
  url.username = '';
  url.password = '';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/health`;
  const lib = url.protocol === 'https:' ? https : http;
  const ca = reg.tls?.ca ? readFileSync(resolvePath(loaded, reg.tls.ca)) : undefined;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = lib.get(
      url,
      {
        timeout: timeoutMs,
        ...(url.protocol === 'https:' ? { ca, rejectUnauthorized: reg.tls?.rejectUnauthorized ?? true } : {}),
      },
      (res) => {
        const receivedAt = Date.now();
        res.resume();
        const date = res.headers.date ? Date.parse(res.headers.date) : NaN;
        resolve({
          status: res.statusCode ?? 0,
          ...(Number.isFinite(date) ? { date } : {}),
          receivedAt,
          ms: Math.round(performance.now() - started),
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

async function registryChecks(ctx: DoctorContext, loaded: LoadedConfig): Promise<CheckResult[]> {
  const reg = loaded.config.registry;
  if (!reg) return [{ group: 'network', name: 'registry', status: 'skip', detail: 'no registry: section' }];
  const shown = redactUrl(reg.url);
  let health;
  try {
    health = await registryHealth(loaded, ctx.timeoutMs);
  } catch (err) {
    const { detail, fix } = describeNetworkError(err as Error, reg.url, 'registry.url');
    return [{ group: 'network', name: 'registry', status: 'fail', detail: `${shown}: ${detail}`, fix }];
  }
  if (health.date !== undefined) {
    ctx.peerDates.push({ from: `registry ${shown}`, date: health.date, receivedAt: health.receivedAt });
  }
  const rows: CheckResult[] = [
    {
      group: 'network',
      name: 'registry',
      status: 'ok',
      detail: `${shown} answers (GET /health: HTTP ${health.status} in ${health.ms} ms)`,
      data: { url: shown, status: health.status, ms: health.ms },
    },
  ];
  const followed = Object.entries(loaded.config.models).filter(([, m]) => m.registry);
  if (followed.length === 0) return rows;
  let client: MlflowRegistryClient;
  try {
    client = new MlflowRegistryClient(
      { ...reg, requestTimeoutMs: ctx.timeoutMs },
      { env: ctx.env, baseDir: loaded.baseDir },
    );
  } catch (err) {
    return [
      ...rows,
      {
        group: 'network',
        name: 'registry client',
        status: 'fail',
        detail: errorMessage(err),
        fix: 'fix the registry: section',
      },
    ];
  }
  const group = loaded.config.device.group;
  for (const [name, m] of followed) {
    const source = m.registry!;
    const alias = (group && source.aliasByGroup[group]) || source.alias;
    const row = `registry ${name}`;
    try {
      const v = await client.versionByAlias(source.name, alias);
      rows.push({
        group: 'network',
        name: row,
        status: 'ok',
        detail: `registered model '${source.name}' alias '${alias}' is version ${v.version} (${v.status})`,
        data: { model: source.name, alias, version: v.version },
      });
    } catch (err) {
      const kind = (err as { kind?: string }).kind;
      rows.push({
        group: 'network',
        name: row,
        status: 'fail',
        detail: errorMessage(err),
        fix:
          kind === 'auth'
            ? 'check registry.username and its password (registry.passwordFile or the password variable), or the token'
            : kind === 'not_found'
              ? `register the model or set the alias '${alias}' in MLflow, or correct models.${name}.registry`
              : 'check registry.url and that the MLflow server runs with --serve-artifacts',
      });
    }
  }
  return rows;
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    socket.once('connect', () => {
      socket.destroy();
      resolve(Math.round(performance.now() - started));
    });
    socket.once('error', reject);
  });
}

async function opcuaChecks(ctx: DoctorContext, loaded: LoadedConfig): Promise<CheckResult[]> {
  const rows: Array<Promise<CheckResult>> = [];
  for (const [name, s] of Object.entries(loaded.config.sources)) {
    if (s.type !== 'opcua') continue;
    const m = /^opc\.tcp:\/\/(\[[^\]]+\]|[^\s/:]+)(?::(\d+))?/.exec(s.endpoint);
    const host = (m?.[1] ?? '').replace(/^\[|\]$/g, '');
    const port = Number(m?.[2] ?? 4840);
    rows.push(
      tcpConnect(host, port, ctx.timeoutMs).then(
        (ms): CheckResult => ({
          group: 'network',
          name: `source ${name}`,
          status: 'ok',
          detail: `${s.endpoint}: TCP connect in ${ms} ms (security ${s.securityMode}: vigil opcua browse checks the session and certificates)`,
          data: { endpoint: s.endpoint, ms },
        }),
        (err: Error): CheckResult => {
          const { detail, fix } = describeNetworkError(
            err,
            s.endpoint.replace(/^opc\.tcp/, 'tcp'),
            `sources.${name}.endpoint`,
          );
          return {
            group: 'network',
            name: `source ${name}`,
            status: 'fail',
            detail: `${s.endpoint}: ${detail}`,
            fix,
          };
        },
      ),
    );
  }
  return Promise.all(rows);
}

/** Whether a listener can be opened on host:port now. */
function canListen(
  host: string,
  port: number,
): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, code: err.code ?? '', message: errorMessage(err) }),
    );
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve({ ok: true })));
  });
}

/** Whether a Vigil daemon answers /healthz at this ops address. */
async function vigilAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  try {
    const res = await fetch(`http://${h.includes(':') ? `[${h}]` : h}:${port}/healthz`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.json()) as { status?: unknown; uptimeSeconds?: unknown };
    return body.status === 'ok' && typeof body.uptimeSeconds === 'number';
  } catch {
    return false;
  }
}

async function listenChecks(ctx: DoctorContext, loaded: LoadedConfig): Promise<CheckResult[]> {
  const { config } = loaded;
  const ports: Array<{ name: string; setting: string; host: string; port: number }> = [];
  if (config.http.enabled)
    ports.push({ name: 'ops http port', setting: 'http', host: config.http.host, port: config.http.port });
  for (const [name, s] of Object.entries(config.sources)) {
    if (s.type === 'camera-http' && s.listen.port !== 0)
      ports.push({
        name: `source ${name} port`,
        setting: `sources.${name}.listen`,
        host: s.listen.host,
        port: s.listen.port,
      });
  }
  const daemonRuns =
    config.http.enabled && (await vigilAnswers(config.http.host, config.http.port, ctx.timeoutMs));
  return Promise.all(
    ports.map(async (p): Promise<CheckResult> => {
      const at = `${p.host}:${p.port}`;
      const base = { group: 'network' as const, name: p.name, data: { host: p.host, port: p.port } };
      const r = await canListen(p.host, p.port);
      if (r.ok) return { ...base, status: 'ok', detail: `${at} is free: the daemon can listen there` };
      if (r.code === 'EADDRINUSE') {
        return daemonRuns
          ? { ...base, status: 'ok', detail: `${at} is in use by the running Vigil daemon` }
          : {
              ...base,
              status: 'warn',
              detail: `${at} is in use by another program`,
              fix: `stop that program (ss -ltnp 'sport = :${p.port}' names it) or choose another port in ${p.setting}.port`,
            };
      }
      return {
        ...base,
        status: 'fail',
        detail: `cannot listen on ${at}: ${r.code} ${r.message}`,
        fix:
          r.code === 'EADDRNOTAVAIL'
            ? `${p.host} is not an address of this gateway: use 127.0.0.1, 0.0.0.0 or one of its addresses in ${p.setting}.host`
            : r.code === 'EACCES'
              ? `ports below 1024 need privileges the daemon does not have: use a port above 1024 in ${p.setting}.port`
              : `check ${p.setting}`,
      };
    }),
  );
}

export async function networkChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  const loaded = ctx.loaded;
  if (!loaded) {
    return [
      {
        group: 'network',
        name: 'network',
        status: 'skip',
        detail: 'no --config: brokers, registry and source endpoints not checked',
      },
    ];
  }
  const brokers = brokerTargets(loaded, ctx.env);
  const groups = await Promise.all([
    Promise.all(brokers.map((b) => checkBroker(b, ctx.timeoutMs, loaded))),
    registryChecks(ctx, loaded),
    opcuaChecks(ctx, loaded),
    listenChecks(ctx, loaded),
  ]);
  return groups.flat();
}
