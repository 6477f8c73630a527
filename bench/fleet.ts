/**
 * Fleet benchmark (issue 6): what a fleet of gateways following one MLflow alias costs the
 * registry. One real MLflow server (test/helpers/mlflow.ts) and N simulated gateways in this one
 * Node process, each with its own MlflowRegistryClient, AliasPoller (the real 0–20 % jitter) and
 * model store folder. A gateway that sees a new version downloads it through the artifact proxy
 * and installs it (verifyPackage, signature policy off). No engines: the shadow trial is CPU work
 * on each gateway, not load on the registry.
 *
 * Per poll interval it measures:
 *   1. idle: registry requests/s and answer bytes/s while every gateway has the alias' version
 *      and just polls, the poll latency, and the CPU the MLflow server spends on it;
 *   2. rollout: after the alias moves to a new version, per-gateway time until it is installed
 *      (p50/p95/max) and until the whole fleet has it, with the requests and bytes meanwhile.
 *
 * Gateways start at random moments within one interval (a fleet boots at different times, and the
 * jitter alone would take many polls to spread gateways that start in step); --together starts
 * them all at once, as after a plant-wide power cut.
 *
 * Run: npm run build && node dist/bench/fleet.js [--gateways N] [--intervals S[,S...]]
 *        [--idle S] [--package DIR] [--together] [--basic-auth] [--auth-cache S]
 *        [--out FILE.json] [--md FILE.md]
 *   --gateways N    simulated gateways (default 200)
 *   --intervals S   registry.pollIntervalSeconds, one measurement per value (default 10)
 *   --idle S        seconds of the idle measurement (default 60)
 *   --package DIR   model package registered (default models/defect/packages/defect-int8-onnx)
 *   --together      start every gateway at the same moment instead of spread over an interval
 *   --basic-auth    run MLflow's basic-auth app (default config) and poll with a user's password
 *   --auth-cache S  with --basic-auth: set the app's auth_cache_ttl_seconds (default 0: MLflow's own
 *                   default, a PBKDF2 password check on every request)
 *   --out, --md     where the JSON and Markdown results go (default /tmp/vigil-fleet.json, .md)
 * Needs the MLflow venv of test/provision.sh and a built dist/ (npm run build).
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { appendFile, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegistryConfig } from '../runtime/config/registry.js';
import { errorMessage } from '../runtime/errors.js';
import { silentLogger } from '../runtime/log.js';
import { ModelStore } from '../runtime/modelstore/store.js';
import { verifyPackage } from '../runtime/modelstore/verify.js';
import { MlflowRegistryClient } from '../runtime/registry/mlflow.js';
import { AliasPoller } from '../runtime/registry/poller.js';
import {
  RegistryError,
  type DownloadProgress,
  type ModelVersionInfo,
  type RegistryClient,
} from '../runtime/registry/types.js';
import { mlflowPython, startMlflow, type RunningMlflow } from '../test/helpers/mlflow.js';
import { repoRoot } from './daemon-process.js';
import { machine } from './machine.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const log = silentLogger();
const MODEL = 'fleet-defect';
const ALIAS = 'champion';

export interface FleetOptions {
  gateways: number;
  intervals: number[];
  idleSeconds: number;
  packageDir: string;
  together: boolean;
  /** Run MLflow's basic-auth app; every gateway sends the same user's password. */
  basicAuth: boolean;
  /** With basicAuth: MLflow's auth_cache_ttl_seconds (0, its default, checks the password hash every request). */
  authCacheSeconds: number;
  say: (line: string) => void;
}

interface Spread {
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

function spread(values: number[]): Spread {
  if (values.length === 0) return { p50: NaN, p95: NaN, max: NaN, mean: NaN };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  const r = (v: number) => Math.round(v * 10) / 10;
  return {
    p50: r(at(0.5)),
    p95: r(at(0.95)),
    max: r(s[s.length - 1]!),
    mean: r(s.reduce((a, b) => a + b) / s.length),
  };
}

/** What the fleet did in one stretch of time, summed over gateways. */
class Counters {
  polls = 0;
  pollMs: number[] = [];
  downloads = 0;
  downloadMs: number[] = [];
  inFlight = 0;
  peakInFlight = 0;
  errors: Record<string, number> = {};

  error(err: unknown): void {
    const kind = err instanceof RegistryError ? err.kind : 'other';
    this.errors[kind] = (this.errors[kind] ?? 0) + 1;
  }
}

/** The real client, timed: only so that the benchmark sees each poll's and download's latency. */
class TimedClient implements RegistryClient {
  constructor(
    readonly inner: MlflowRegistryClient,
    private readonly counters: () => Counters,
  ) {}

  async versionByAlias(name: string, alias: string): Promise<ModelVersionInfo> {
    const c = this.counters();
    const t = performance.now();
    c.polls += 1;
    try {
      return await this.inner.versionByAlias(name, alias);
    } catch (err) {
      c.error(err);
      throw err;
    } finally {
      c.pollMs.push(performance.now() - t);
    }
  }

  getVersion(name: string, version: string): Promise<ModelVersionInfo> {
    return this.inner.getVersion(name, version);
  }

  setVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
    return this.inner.setVersionTag(name, version, key, value);
  }

  async downloadVersion(
    version: ModelVersionInfo,
    destDir: string,
    options?: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
  ): Promise<{ files: string[]; bytes: number; resumedBytes: number }> {
    const c = this.counters();
    const t = performance.now();
    c.downloads += 1;
    c.inFlight += 1;
    c.peakInFlight = Math.max(c.peakInFlight, c.inFlight);
    try {
      const got = await this.inner.downloadVersion(version, destDir, options);
      c.downloadMs.push(performance.now() - t);
      return got;
    } catch (err) {
      c.error(err);
      throw err;
    } finally {
      c.inFlight -= 1;
    }
  }
}

/** One simulated gateway: poller, client and model store, and when each version arrived. */
class Gateway {
  readonly client: TimedClient;
  readonly poller: AliasPoller;
  /** Version → performance.now() when it was installed. */
  readonly installedAt = new Map<string, number>();
  private startTimer: NodeJS.Timeout | undefined;

  constructor(
    config: RegistryConfig,
    env: Record<string, string>,
    readonly store: ModelStore,
    counters: () => Counters,
  ) {
    this.client = new TimedClient(new MlflowRegistryClient(config, { env, log }), counters);
    this.poller = new AliasPoller({
      client: this.client,
      name: MODEL,
      alias: ALIAS,
      config,
      log,
      onVersion: (info) => this.pull(info),
    });
  }

  startIn(ms: number): void {
    this.startTimer = setTimeout(() => this.poller.start(), ms);
  }

  async stop(): Promise<void> {
    clearTimeout(this.startTimer);
    await this.poller.stop();
  }

  has(version: string): boolean {
    return this.installedAt.has(version);
  }

  /** What ModelFollower does before the shadow trial: download into staging, verify, install. */
  private async pull(info: ModelVersionInfo): Promise<void> {
    if (this.store.isInstalled(MODEL, info.version)) return;
    const staging = this.store.stagingDir(MODEL, info.version);
    await this.client.downloadVersion(info, staging);
    await this.store.install(MODEL, info.version, staging, (dir) =>
      verifyPackage(dir, { policy: 'off', publicKeys: [] }),
    );
    this.installedAt.set(info.version, performance.now());
  }
}

// ---------------------------------------------------------------------------------------------
// The MLflow server's own CPU time (Linux /proc), so that the load can be scaled to a bigger fleet.

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

function procStat(pid: string): { pgrp: number; cpuTicks: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pgrp: Number(f[2]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

function pids(): string[] {
  try {
    return readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
}

/** The process group of `mlflow server --port <port>` (startMlflow runs it as its own group). */
function serverGroup(port: number): number | undefined {
  for (const pid of pids()) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('--port');
    if (i >= 0 && argv[i + 1] === String(port) && argv.some((a) => a.endsWith('mlflow'))) {
      return procStat(pid)?.pgrp;
    }
  }
  return undefined;
}

/** CPU seconds used so far by the server's live processes (a worker that exits takes its own away). */
function groupCpuSeconds(pgrp: number | undefined): number {
  if (pgrp === undefined) return NaN;
  let ticks = 0;
  for (const pid of pids()) {
    const s = procStat(pid);
    if (s?.pgrp === pgrp) ticks += s.cpuTicks;
  }
  return ticks / CLK_TCK;
}

// ---------------------------------------------------------------------------------------------

interface Auth {
  username: string;
  password: string;
}

function authHeader(auth: Auth | undefined): Record<string, string> {
  if (!auth) return {};
  return { Authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` };
}

/** Bytes on the wire of one idle poll, headers included, as the client sends it (new connection). */
async function wireBytesOfPoll(
  port: number,
  auth: Auth | undefined,
): Promise<{ sent: number; received: number }> {
  const headers = Object.entries(authHeader(auth)).map(([k, v]) => `${k}: ${v}\r\n`);
  const request =
    `GET /api/2.0/mlflow/registered-models/alias?name=${MODEL}&alias=${ALIAS} HTTP/1.1\r\n` +
    `Host: 127.0.0.1:${port}\r\n${headers.join('')}Connection: close\r\n\r\n`;
  return new Promise((resolve, reject) => {
    let received = 0;
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.once('end', () => resolve({ sent: Buffer.byteLength(request), received }));
    socket.once('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('wire-bytes probe timed out')));
  });
}

/**
 * models/registry/register.py, the data scientist's side. Not test/helpers' registerPackage: that
 * finds the script relative to its own file, which is dist/test/helpers/ once built.
 */
function register(url: string, packageDir: string, auth: Auth | undefined, alias?: string): Promise<string> {
  const args = [path.join(repoRoot(), 'models/registry/register.py'), '--tracking-uri', url];
  args.push('--name', MODEL, '--package', packageDir);
  if (alias) args.push('--alias', alias);
  const env: NodeJS.ProcessEnv = { ...process.env, MLFLOW_DISABLE_TELEMETRY: 'true', DO_NOT_TRACK: '1' };
  if (auth) {
    env.MLFLOW_TRACKING_USERNAME = auth.username;
    env.MLFLOW_TRACKING_PASSWORD = auth.password;
  }
  return new Promise((resolve, reject) => {
    execFile(mlflowPython(), args, { env, timeout: 120_000 }, (err, stdout, stderr) => {
      const version = stdout.trim().split('\n').pop() ?? '';
      if (err || !/^\d+$/.test(version))
        reject(new Error(`register.py failed: ${err?.message ?? ''}\n${stderr}`));
      else resolve(version);
    });
  });
}

async function setAlias(url: string, version: string, auth: Auth | undefined): Promise<void> {
  const res = await fetch(`${url}/api/2.0/mlflow/registered-models/alias`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...authHeader(auth) },
    body: JSON.stringify({ name: MODEL, alias: ALIAS, version }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`setting ${MODEL}@${ALIAS} to ${version} failed: ${res.status} ${text}`);
}

async function serverVersion(url: string, auth: Auth | undefined): Promise<string> {
  try {
    const res = await fetch(`${url}/version`, {
      headers: authHeader(auth),
      signal: AbortSignal.timeout(5_000),
    });
    return res.ok ? (await res.text()).trim() : 'unknown';
  } catch {
    return 'unknown';
  }
}

async function packageBytes(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!e.isFile()) continue;
    files += 1;
    bytes += (await stat(path.join(dir, e.name))).size;
  }
  return { files, bytes };
}

// ---------------------------------------------------------------------------------------------

interface Window {
  seconds: number;
  requests: number;
  requestsPerSecond: number;
  responseBytes: number;
  responseBytesPerSecond: number;
  polls: number;
  pollLatencyMs: Spread;
  serverCpuPercentOfOneCore: number;
  benchCpuPercentOfOneCore: number;
  errors: Record<string, number>;
}

export interface PhaseResult {
  pollIntervalSeconds: number;
  /** gateways / (interval × 1.1): the mean poll spacing with 0–20 % jitter. */
  expectedIdleRequestsPerSecond: number;
  initialSync: { version: string; seconds: number };
  idle: Window & { bodyBytesPerPoll: number };
  rollout: Window & {
    from: string;
    to: string;
    /** Per gateway: alias moved → version installed. */
    convergenceSeconds: Spread;
    /** Alias moved → the last gateway installed it. */
    totalSeconds: number;
    downloads: number;
    downloadMs: Spread;
    peakConcurrentDownloads: number;
    pollRequests: number;
    downloadRequests: number;
  };
}

export interface FleetResult {
  machine: ReturnType<typeof machine>;
  parameters: {
    gateways: number;
    intervals: number[];
    idleSeconds: number;
    start: 'spread over one interval' | 'together';
    package: string;
    packageFiles: number;
    packageBytes: number;
    jitter: string;
    signaturePolicy: 'off';
    auth: string;
  };
  mlflow: { version: string; startupMs: number; workers: 1 };
  wirePerIdlePoll: { sent: number; received: number };
  phases: PhaseResult[];
  wallSeconds: number;
}

export async function runFleet(o: FleetOptions): Promise<FleetResult> {
  const wallStart = performance.now();
  const pkg = await packageBytes(o.packageDir);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'vigil-fleet-'));
  let server: RunningMlflow | undefined;
  let gateways: Gateway[] = [];
  try {
    o.say(`starting MLflow ...`);
    const auth = o.basicAuth
      ? { username: 'fleet-admin', password: randomBytes(12).toString('hex') }
      : undefined;
    const mlflowDir = path.join(tmp, 'mlflow');
    server = await startMlflow({ dir: mlflowDir, ...(auth ? { basicAuth: auth } : {}) });
    if (auth && o.authCacheSeconds > 0) {
      // startMlflow writes the auth config; the server reads it at start only.
      await appendFile(
        path.join(mlflowDir, 'basic_auth.ini'),
        `auth_cache_ttl_seconds = ${o.authCacheSeconds}\n`,
      );
      await server.restart();
    }
    const pgrp = serverGroup(server.port);
    o.say(
      `MLflow ${server.url} ready in ${server.startupMs} ms; registering ${o.intervals.length + 1} versions ...`,
    );
    // Every version registered up front: the registration itself must not load the measurement.
    const versions = [await register(server.url, o.packageDir, auth, ALIAS)];
    for (let i = 0; i < o.intervals.length; i++)
      versions.push(await register(server.url, o.packageDir, auth));
    const wire = await wireBytesOfPoll(server.port, auth);

    const phases: PhaseResult[] = [];
    for (const [i, interval] of o.intervals.entries()) {
      const from = versions[i]!;
      const to = versions[i + 1]!;
      let counters = new Counters();
      const current = () => counters;
      const config = RegistryConfig.parse({
        url: server.url,
        pollIntervalSeconds: interval,
        signatures: { policy: 'off' },
        reportTags: false,
        ...(auth ? { username: auth.username } : {}),
      });
      const env: Record<string, string> = auth ? { MLFLOW_TRACKING_PASSWORD: auth.password } : {};
      const dir = path.join(tmp, `fleet-${interval}s`);
      gateways = [];
      for (let g = 0; g < o.gateways; g++) {
        const store = await ModelStore.open(path.join(dir, `gw-${g}`), log);
        gateways.push(new Gateway(config, env, store, current));
      }
      const stats = () =>
        gateways.reduce(
          (s, g) => ({
            requests: s.requests + g.client.inner.stats.requests,
            responseBytes: s.responseBytes + g.client.inner.stats.responseBytes,
          }),
          { requests: 0, responseBytes: 0 },
        );
      const window = async (run: () => Promise<void>): Promise<Window> => {
        counters = new Counters();
        const s0 = stats();
        const cpu0 = groupCpuSeconds(pgrp);
        const me0 = process.cpuUsage();
        const t0 = performance.now();
        await run();
        const seconds = (performance.now() - t0) / 1000;
        const s1 = stats();
        const me = process.cpuUsage(me0);
        const requests = s1.requests - s0.requests;
        const responseBytes = s1.responseBytes - s0.responseBytes;
        const r1 = (v: number) => Math.round(v * 10) / 10;
        return {
          seconds: r1(seconds),
          requests,
          requestsPerSecond: r1(requests / seconds),
          responseBytes,
          responseBytesPerSecond: Math.round(responseBytes / seconds),
          polls: counters.polls,
          pollLatencyMs: spread(counters.pollMs),
          serverCpuPercentOfOneCore: r1(((groupCpuSeconds(pgrp) - cpu0) / seconds) * 100),
          benchCpuPercentOfOneCore: r1(((me.user + me.system) / 1e6 / seconds) * 100),
          errors: counters.errors,
        };
      };
      const until = async (version: string, limitMs: number): Promise<void> => {
        const deadline = performance.now() + limitMs;
        while (!gateways.every((g) => g.has(version))) {
          if (performance.now() > deadline) {
            const missing = gateways.filter((g) => !g.has(version)).length;
            throw new Error(
              `${missing} of ${gateways.length} gateways still lack version ${version} after ${limitMs / 1000} s ` +
                `(errors: ${JSON.stringify(counters.errors)})`,
            );
          }
          await sleep(50);
        }
      };
      const limitMs = (interval * 3 + 120) * 1000;

      o.say(`[${interval} s] ${o.gateways} gateways syncing to version ${from} ...`);
      const syncStart = performance.now();
      for (const g of gateways) g.startIn(o.together ? 0 : Math.random() * interval * 1000);
      await until(from, limitMs);
      const initialSync = { version: from, seconds: Math.round((performance.now() - syncStart) / 100) / 10 };

      o.say(`[${interval} s] idle for ${o.idleSeconds} s ...`);
      const idle = await window(() => sleep(o.idleSeconds * 1000));

      o.say(`[${interval} s] moving ${MODEL}@${ALIAS} from version ${from} to ${to} ...`);
      let moved = 0;
      const rollout = await window(async () => {
        await setAlias(server!.url, to, auth);
        moved = performance.now();
        await until(to, limitMs);
      });
      const convergence = gateways.map((g) => (g.installedAt.get(to)! - moved) / 1000);
      const pollRequests = counters.polls;
      phases.push({
        pollIntervalSeconds: interval,
        expectedIdleRequestsPerSecond: Math.round((o.gateways / (interval * 1.1)) * 10) / 10,
        initialSync,
        idle: { ...idle, bodyBytesPerPoll: Math.round(idle.responseBytes / Math.max(1, idle.requests)) },
        rollout: {
          ...rollout,
          from,
          to,
          convergenceSeconds: spread(convergence),
          totalSeconds: Math.round(Math.max(...convergence) * 10) / 10,
          downloads: counters.downloads,
          downloadMs: spread(counters.downloadMs),
          peakConcurrentDownloads: counters.peakInFlight,
          pollRequests,
          downloadRequests: rollout.requests - pollRequests,
        },
      });
      await Promise.all(gateways.map((g) => g.stop()));
      gateways = [];
      await rm(dir, { recursive: true, force: true });
    }

    return {
      machine: machine(),
      parameters: {
        gateways: o.gateways,
        intervals: o.intervals,
        idleSeconds: o.idleSeconds,
        start: o.together ? 'together' : 'spread over one interval',
        package: path.relative(repoRoot(), o.packageDir) || o.packageDir,
        packageFiles: pkg.files,
        packageBytes: pkg.bytes,
        jitter: 'each poll waits interval × (1 + U[0, 0.2])',
        signaturePolicy: 'off',
        auth: !o.basicAuth
          ? 'none'
          : `basic (MLflow basic-auth app, auth_cache_ttl_seconds ${o.authCacheSeconds})`,
      },
      mlflow: { version: await serverVersion(server.url, auth), startupMs: server.startupMs, workers: 1 },
      wirePerIdlePoll: wire,
      phases,
      wallSeconds: Math.round((performance.now() - wallStart) / 1000),
    };
  } finally {
    await Promise.all(gateways.map((g) => g.stop().catch(() => undefined)));
    await server?.stop().catch((err: unknown) => o.say(`stopping MLflow failed: ${errorMessage(err)}`));
    await rm(tmp, { recursive: true, force: true });
  }
}

export function markdown(r: FleetResult): string {
  const m = r.machine;
  const p = r.parameters;
  const lines = [
    `machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}, Node ${m.node}; ` +
      `MLflow ${r.mlflow.version} (1 worker, SQLite, auth: ${p.auth}) on the same machine`,
    `${p.gateways} gateways, start ${p.start}; package ${p.package} (${p.packageFiles} files, ${p.packageBytes} bytes); ` +
      `idle window ${p.idleSeconds} s; one idle poll on the wire: ${r.wirePerIdlePoll.sent} B sent, ` +
      `${r.wirePerIdlePoll.received} B received (headers included, one TCP connection)`,
    '',
    `| measure | ${r.phases.map((ph) => `poll ${ph.pollIntervalSeconds} s`).join(' | ')} |`,
    `|---|${r.phases.map(() => '---').join('|')}|`,
  ];
  const row = (k: string, f: (ph: PhaseResult) => string | number) =>
    lines.push(`| ${k} | ${r.phases.map((ph) => String(f(ph))).join(' | ')} |`);
  const s = (x: Spread) => `${x.p50} / ${x.p95} / ${x.max}`;
  row('initial sync of all gateways (s)', (ph) => ph.initialSync.seconds);
  row(
    'idle requests/s (expected N/1.1T)',
    (ph) => `${ph.idle.requestsPerSecond} (${ph.expectedIdleRequestsPerSecond})`,
  );
  row(
    'idle answer bytes/s (body bytes per poll)',
    (ph) => `${ph.idle.responseBytesPerSecond} (${ph.idle.bodyBytesPerPoll})`,
  );
  row('idle poll latency p50 / p95 / max (ms)', (ph) => s(ph.idle.pollLatencyMs));
  row('idle MLflow CPU (% of one core)', (ph) => ph.idle.serverCpuPercentOfOneCore);
  row('idle benchmark CPU (% of one core, all gateways)', (ph) => ph.idle.benchCpuPercentOfOneCore);
  row('rollout: version', (ph) => `${ph.rollout.from} → ${ph.rollout.to}`);
  row('rollout per-gateway convergence p50 / p95 / max (s)', (ph) => s(ph.rollout.convergenceSeconds));
  row('rollout total until every gateway installed (s)', (ph) => ph.rollout.totalSeconds);
  row(
    'rollout downloads (peak concurrent)',
    (ph) => `${ph.rollout.downloads} (${ph.rollout.peakConcurrentDownloads})`,
  );
  row('rollout download time p50 / p95 / max (ms)', (ph) => s(ph.rollout.downloadMs));
  row(
    'rollout requests: polls + download (req/s)',
    (ph) => `${ph.rollout.pollRequests} + ${ph.rollout.downloadRequests} (${ph.rollout.requestsPerSecond})`,
  );
  row(
    'rollout answer bytes (bytes/s)',
    (ph) => `${ph.rollout.responseBytes} (${ph.rollout.responseBytesPerSecond})`,
  );
  row('rollout poll latency p50 / p95 / max (ms)', (ph) => s(ph.rollout.pollLatencyMs));
  row('rollout MLflow CPU (% of one core)', (ph) => ph.rollout.serverCpuPercentOfOneCore);
  row(
    'errors idle / rollout',
    (ph) => `${JSON.stringify(ph.idle.errors)} / ${JSON.stringify(ph.rollout.errors)}`,
  );
  lines.push('', `wall time ${r.wallSeconds} s`);
  return lines.join('\n');
}

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const intervals = (arg(args, '--intervals') ?? '10').split(',').map(Number);
  const options: FleetOptions = {
    gateways: Number(arg(args, '--gateways') ?? 200),
    intervals,
    idleSeconds: Number(arg(args, '--idle') ?? 60),
    packageDir: path.resolve(
      arg(args, '--package') ?? path.join(repoRoot(), 'models/defect/packages/defect-int8-onnx'),
    ),
    together: args.includes('--together'),
    basicAuth: args.includes('--basic-auth'),
    authCacheSeconds: Number(arg(args, '--auth-cache') ?? 0),
    say: (l) => console.error(l),
  };
  if (!Number.isInteger(options.gateways) || options.gateways < 1)
    throw new Error('--gateways: a whole number ≥ 1');
  if (intervals.some((s) => !(s >= 1))) throw new Error('--intervals: seconds ≥ 1, comma-separated');
  if (!(options.idleSeconds > 0)) throw new Error('--idle: seconds > 0');
  const r = await runFleet(options);
  const md = markdown(r);
  const json = JSON.stringify(r, null, 2);
  console.log(md);
  console.log('');
  console.log(json);
  await writeFile(arg(args, '--out') ?? '/tmp/vigil-fleet.json', json + '\n');
  await writeFile(arg(args, '--md') ?? '/tmp/vigil-fleet.md', md + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  });
}
