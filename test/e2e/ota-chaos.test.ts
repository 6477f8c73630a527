import { readFile, readdir, stat, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { ROOT, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startFaultProxy, type FaultProxy, type ProxiedRequest } from '../helpers/http-fault-proxy.js';
import { registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';
import { PackageWorkshop, makeVersion, sha256 } from '../helpers/model-packages.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import type { SimCamera } from '../../simulator/camera/camera.js';
import { startLineCamera, stopLineCamera } from '../helpers/line-camera.js';
import { freePort } from '../helpers/ports.js';

/**
 * Over the air when things go wrong, end to end: a real MLflow server seeded by register.py, with
 * a fault-injecting proxy (test/helpers/http-fault-proxy.ts) between it and `vigil run`, a real
 * Mosquitto, and camera frames over HTTP from the simulator. The cases run in order on one
 * registry, each leaving the gateway as the next one expects:
 *
 *  (a) the registry fails while polled (500s, answers slower than requestTimeoutMs, the server
 *      stopped): frames keep being served by the current model, the status shows the poll
 *      failing, the polls back off, and once the registry is back a new version is picked up;
 *  (d) a version that fails to load is rejected as load_failed, one that is too slow as too_slow
 *      (status, MQTT, registry tags);
 *  (b) a power cut (SIGKILL) in the middle of a throttled 8 MB download: after the restart the
 *      download resumes where the partial file ended (HTTP Range, 206), completes, is verified
 *      and promoted, and the model store is consistent;
 *  (c) SIGKILL as the daemon starts verifying a downloaded version: after the restart the
 *      version is not downloaded again, the store holds only whole versions, and the version
 *      goes on to its shadow. (test/modelstore/crash.test.ts aims kills at each step of an
 *      install — verify, fsync, rename, state write, prune — far more precisely than an e2e
 *      test can; this one shows the daemon puts the pieces back together.)
 *  (e) a regression after a forced promotion: a version whose outputs are NaN, promoted by hand
 *      while in shadow with the line stopped (so nothing judged it), fails on the first live
 *      frames and the gateway rolls back by itself (deterministic: no timing is involved); the
 *      rollback shows in the status, on MQTT, in the registry tags and in the model store.
 */

const SHIPPED = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const FIXTURES = path.join(ROOT, 'test/fixtures/rollout');
const NAME = 'defect-detector';
const DEVICE = 'chaos-gw';
const MB = 1024 * 1024;

interface RolloutView {
  state: string;
  active: { version?: string };
  candidate?: { version?: string };
  lastDecision?: RolloutEvent;
  registry: { poll: string; lastError?: string; aliasVersion?: string; installedVersion?: string };
}
interface Status {
  rollout: Record<string, RolloutView>;
  pipelines: Record<string, { processed: number; dropped: Record<string, number> }>;
}

let broker: RunningMosquitto;
let registry: RunningMlflow;
let proxy: FaultProxy;
let daemon: RunningDaemon | undefined;
let camera: SimCamera | undefined;
let camPort: number;
let sub: MqttClient;
let dir: string;
let config: string;
let storeDir: string;
const workshop = new PackageWorkshop();
const events: RolloutEvent[] = [];
/** Registry versions, as register.py printed them, per case. */
const v: Record<string, string> = {};

async function status(): Promise<Status> {
  return (await (await fetch(`${daemon!.url}/api/v1/status`)).json()) as Status;
}

async function rollout(): Promise<RolloutView> {
  return (await status()).rollout.defect!;
}

function eventFor(version: string, state: string): () => RolloutEvent | undefined {
  return () => events.find((e) => e.registered?.version === version && e.state === state);
}

async function tags(version: string): Promise<Record<string, string>> {
  // Straight to the server, not through the proxy: the test reads what the gateway wrote.
  const client = new MlflowRegistryClient(RegistryConfig.parse({ url: registry.url }));
  return (await client.getVersion(NAME, version)).tags;
}

async function tagged(version: string, state: string): Promise<Record<string, string>> {
  return waitFor(`registry tag ${state} on version ${version}`, async () => {
    const t = await tags(version);
    return t[`vigil.${DEVICE}.state`] === state ? t : undefined;
  });
}

/** The daemon's JSON log lines. */
function logLines(d: RunningDaemon): Array<Record<string, unknown>> {
  return d
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function register(packageDir: string): Promise<string> {
  return registerPackage(registry.url, { name: NAME, packageDir, alias: 'champion' });
}

/** A copy of the good fixture as version `version`, with a listed payload file of `bytes`. */
async function bigVersion(version: string, bytes: number): Promise<string> {
  const pkg = await workshop.copy(path.join(FIXTURES, 'good'));
  await makeVersion(pkg, version, bytes);
  return pkg;
}

async function startGateway(
  rollout: Record<string, unknown> = {},
  onStderr?: (line: string, d: RunningDaemon) => void,
): Promise<void> {
  const port = await freePort();
  const httpPort = await freePort();
  await writeFile(
    config,
    stringify({
      device: { id: DEVICE },
      http: { port: httpPort, tokenFile: 'ops-token' },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, 'vigil.db') },
      registry: {
        url: proxy.url,
        pollIntervalSeconds: 1,
        requestTimeoutMs: 1_500,
        backoff: { initialDelayMs: 250, maxDelayMs: 4_000 },
        storeDir,
        signatures: { policy: 'off' },
      },
      models: {
        defect: {
          package: SHIPPED,
          registry: { name: NAME, alias: 'champion' },
          rollout: {
            shadowSamples: 10,
            shadowMaxSeconds: 60,
            watchSamples: 10,
            // The slow fixture needs several hundred ms per frame on any machine; the others a few.
            maxLatencyMs: 50,
            maxBudgetViolationRate: 0.3,
            ...rollout,
          },
        },
      },
      sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port } } },
      pipelines: { inspection: { sources: ['cam'], model: 'defect', budgetMs: 100 } },
    }),
  );
  daemon = await startDaemon(config, httpPort, { timeoutMs: 60_000 });
  if (onStderr) {
    const d = daemon;
    let pending = '';
    d.proc.stderr!.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) onStderr(line, d);
    });
  }
  camPort = port;
  startCamera(8);
}

/** Frames to the daemon's camera endpoint at `fps`. */
function startCamera(fps: number): void {
  camera = startLineCamera(camPort, fps, 5);
}

async function stopCamera(): Promise<void> {
  await stopLineCamera(camera);
  camera = undefined;
}

async function stopGateway(): Promise<void> {
  await stopCamera();
  if (daemon) expect(await daemon.stop()).toBe(0);
  daemon = undefined;
}

/** A power cut: SIGKILL, nothing flushed or closed. */
async function killGateway(): Promise<void> {
  const d = daemon!;
  daemon = undefined;
  if (d.proc.exitCode === null && d.proc.signalCode === null) {
    const exited = new Promise((r) => d.proc.once('exit', r));
    d.proc.kill('SIGKILL');
    await exited;
  }
  await stopCamera();
}

/** Every installed version of the model store is whole: each file listed, each sha256 right. */
async function expectStoreConsistent(): Promise<{ active: string | null; installed: string[] }> {
  const modelDir = path.join(storeDir, 'defect');
  const state = JSON.parse(await readFile(path.join(modelDir, 'state.json'), 'utf8')) as {
    active: string | null;
  };
  const installed = (await readdir(path.join(modelDir, 'versions'))).sort();
  for (const version of installed) await loadModelPackage(path.join(modelDir, 'versions', version));
  if (state.active !== null) expect(installed).toContain(state.active);
  const staging = await readdir(path.join(modelDir, 'staging')).catch(() => [] as string[]);
  expect(staging.filter((s) => s.startsWith('.import-'))).toEqual([]);
  for (const s of staging) expect(installed).not.toContain(s);
  return { active: state.active, installed };
}

function artifactGets(file: string, since = 0): ProxiedRequest[] {
  return proxy.requests.filter(
    (r) =>
      r.at >= since &&
      r.method === 'GET' &&
      r.path.includes('/mlflow-artifacts/artifacts/') &&
      r.path.endsWith(`/${file}`),
  );
}

const OPS_TOKEN = `ota-chaos-${process.pid}`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-ota-chaos-'));
  config = path.join(dir, 'vigil.yaml');
  await writeFile(path.join(dir, 'ops-token'), OPS_TOKEN, { mode: 0o600 });
  storeDir = path.join(dir, 'models');
  [broker, registry] = await Promise.all([
    startMosquitto(),
    // Our own folder, so that the server can be stopped and started again on the same data.
    startMlflow({ dir: path.join(dir, 'mlflow') }),
  ]);
  proxy = await startFaultProxy(registry.url);
  sub = await mqtt.connectAsync(broker.url);
  sub.on('message', (_topic, payload) => events.push(JSON.parse(payload.toString()) as RolloutEvent));
  await sub.subscribeAsync(`vigil/${DEVICE}/rollout/#`, { qos: 1 });
}, 120_000);

afterAll(async () => {
  camera?.stop();
  await camera?.finished.catch(() => undefined);
  if (daemon) {
    daemon.proc.kill('SIGKILL');
    await daemon.stop();
  }
  await sub?.endAsync();
  await proxy?.close();
  await registry?.stop();
  await broker?.stop();
  await workshop.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('over-the-air rollout when the registry, the network or the power fail (vigil run)', () => {
  it('(a) keeps serving while the registry fails, backs off, and picks up a version once it is back', async () => {
    const aliasPolls = () => proxy.requests.filter((r) => r.path.includes('/registered-models/alias'));
    await startGateway();
    // No model registered yet: the poll says so and carries on at the normal interval.
    await waitFor('poll not_found', async () =>
      (await rollout()).registry.poll === 'not_found' ? true : undefined,
    );
    const processedBefore = (await status()).pipelines.inspection!.processed;

    // 1. The server answers 500.
    const failingSince = Date.now();
    proxy.setFault({ kind: 'status', status: 500 });
    const failing = await waitFor('poll failing on 500', async () => {
      const r = await rollout();
      return r.registry.poll === 'failing' ? r : undefined;
    });
    // The status should say why the poll fails, not only that it does.
    expect
      .soft(String(failing.registry.lastError), 'status.rollout.defect.registry.lastError while polls fail')
      .toMatch(/500/);
    await waitFor('three failed polls', () =>
      aliasPolls().filter((r) => r.status === 500).length >= 3 ? true : undefined,
    );

    // 2. The server answers, but later than registry.requestTimeoutMs: the gateway gives up.
    proxy.setFault({ kind: 'delay', ms: 3_000 });
    const slowSince = Date.now();
    await waitFor(
      'a poll given up for its timeout',
      () => (aliasPolls().some((r) => r.at >= slowSince && r.outcome === 'client_gone') ? true : undefined),
      15_000,
    );
    expect((await rollout()).registry.poll).toBe('failing');

    // 3. The server is stopped: the proxy in front of it answers 502, as nginx would.
    proxy.pass();
    await registry.stop();
    const downSince = Date.now();
    await waitFor(
      'a poll answered 502',
      () => (aliasPolls().some((r) => r.at >= downSince && r.status === 502) ? true : undefined),
      15_000,
    );
    const during = await status();
    expect(during.rollout.defect!.registry.poll).toBe('failing');
    // Frames kept flowing through all of it, with the model that was serving.
    expect(during.pipelines.inspection!.processed).toBeGreaterThan(processedBefore);
    expect(during.rollout.defect!.active.version).toBe('1.0.0');
    expect(during.pipelines.inspection!.dropped.model_unavailable ?? 0).toBe(0);

    // 4. The server is back, and a version is registered: the gateway takes it.
    await registry.restart();
    v.good = await register(path.join(FIXTURES, 'good'));
    const promoted = await waitFor('good version promoted', eventFor(v.good, 'promoted'), 60_000);
    expect(promoted).toMatchObject({ from: '1.0.0', to: '1.1.0' });
    expect((await rollout()).registry.poll).toBe('ok');

    // The polls backed off while failing: the wait before a poll grew past the normal interval
    // (1 s plus at most 20 % jitter). Back-off delays never undercut half their ceiling, which
    // doubles from 250 ms, so a wait of 2 s or more is certain by the fifth failure.
    const failed = aliasPolls().filter(
      (r) => r.at >= failingSince && r.finishedAt && (r.status === undefined || r.status >= 500),
    );
    expect(failed.length).toBeGreaterThanOrEqual(5);
    const waits = failed.slice(1).map((r, i) => r.at - failed[i]!.finishedAt!);
    expect(Math.max(...waits)).toBeGreaterThanOrEqual(2_000);
  });

  it('(d) rejects a version that fails to load and one that is too slow, and says so everywhere', async () => {
    v.broken = await register(path.join(FIXTURES, 'broken'));
    const broken = await waitFor('broken version rejected', eventFor(v.broken, 'rejected'), 30_000);
    expect(broken).toMatchObject({ reason: 'load_failed', to: '1.4.0', from: '1.1.0' });

    v.slow = await register(path.join(FIXTURES, 'slow'));
    await waitFor('slow version in shadow', eventFor(v.slow, 'shadow'), 30_000);
    const slow = await waitFor('slow version rejected', eventFor(v.slow, 'rejected'), 30_000);
    expect(slow).toMatchObject({ reason: 'too_slow', to: '1.3.0' });
    expect(Number(slow.evidence?.p95Ms)).toBeGreaterThan(50);

    const r = await rollout();
    expect(r.active.version).toBe('1.1.0');
    expect(r.lastDecision).toMatchObject({ state: 'rejected', reason: 'too_slow', to: '1.3.0' });
    expect((await status()).pipelines.inspection!.dropped.model_unavailable ?? 0).toBe(0);
    expect((await tagged(v.broken, 'rejected'))[`vigil.${DEVICE}.reason`]).toMatch(/^load_failed: /);
    expect((await tagged(v.slow, 'rejected'))[`vigil.${DEVICE}.reason`]).toMatch(/^too_slow: /);
  });

  it('(b) resumes a download cut by the network, then by a power failure, and installs it whole', async () => {
    // The first transfer of the 8 MB payload is cut after 1 MB, as a flaky link would; the next
    // ones take about 4 s, time to pull the plug in the middle.
    const payloadPath = /\/mlflow-artifacts\/artifacts\/.*payload\.bin$/;
    proxy.setRules([
      { match: payloadPath, fault: { kind: 'cut', afterBytes: 1 * MB }, times: 1 },
      { match: payloadPath, fault: { kind: 'throttle', bytesPerSecond: 2 * MB } },
    ]);
    const pkg = await bigVersion('1.7.0', 8 * MB);
    const payloadSha = await sha256(path.join(pkg, 'payload.bin'));
    v.big = await register(pkg);
    await waitFor('download started', eventFor(v.big, 'downloading'), 30_000);
    // Cut: the daemon keeps what it got and asks for the rest at its next poll.
    const [cut, rest] = await waitFor('the transfer resumed after the cut', () => {
      const gets = artifactGets('payload.bin');
      return gets.length >= 2 && gets[1]!.bodyBytes >= 1 * MB ? gets : undefined;
    });
    expect(cut).toMatchObject({ outcome: 'cut', bodyBytes: 1 * MB });
    expect(cut!.range).toBeUndefined();
    // It resumes from what reached its disk: the proxy's last chunk before the cut may still have
    // been in flight (seen: 3 KB short), and the ranged request asks for exactly the rest.
    expect(rest).toMatchObject({ status: 206 });
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(rest!.range ?? '')?.[1]);
    expect(resumedAt).toBeLessThanOrEqual(1 * MB);
    expect(resumedAt).toBeGreaterThan(1 * MB - 256 * 1024);
    expect(logLines(daemon!).some((l) => String(l.msg).includes('resumes at the next poll'))).toBe(true);
    // Power cut, with 2 MB on disk and 6 MB still to come.
    await killGateway();

    const part = path.join(storeDir, 'defect', 'staging', v.big, 'payload.bin.part');
    const partBytes = (await stat(part)).size;
    expect(partBytes).toBeGreaterThan(0);
    expect(partBytes).toBeLessThan(8 * MB);
    await expectStoreConsistent();

    proxy.pass();
    const restartedAt = Date.now();
    await startGateway();
    // The gateway serves what it had promoted before the cut while it finishes the download.
    expect((await rollout()).active.version).toBe('1.1.0');
    const promoted = await waitFor('resumed version promoted', eventFor(v.big, 'promoted'), 60_000);
    expect(promoted).toMatchObject({ from: '1.1.0', to: '1.7.0' });

    // One request after the restart, for the rest of the file only.
    const resumed = artifactGets('payload.bin', restartedAt);
    expect(resumed.map((r) => [r.range, r.status])).toEqual([[`bytes=${partBytes}-`, 206]]);
    expect(resumed[0]!.bodyBytes).toBe(8 * MB - partBytes);
    const done = logLines(daemon!).find((l) => l.version === v.big && l.resumedBytes !== undefined);
    expect(done).toMatchObject({ bytes: expect.any(Number) });
    expect(Number(done!.resumedBytes)).toBeGreaterThanOrEqual(partBytes);

    // The model store follows the promotion (written just after the event).
    await waitFor('store active', async () =>
      (await expectStoreConsistent()).active === v.big ? true : undefined,
    );
    expect(await sha256(path.join(storeDir, 'defect', 'versions', v.big, 'payload.bin'))).toBe(payloadSha);
    await tagged(v.big, 'promoted');
  });

  it('(c) recovers from a SIGKILL while a downloaded version is being verified and installed', async () => {
    await stopGateway();
    // A long shadow from here on: (c) only needs the version tried, (e) needs its version to stay in shadow.
    const longShadow = { shadowSamples: 100_000, shadowMaxSeconds: 600 };
    let killedAt = 0;
    await startGateway(longShadow, (line, d) => {
      // The only version this daemon verifies is the new one (it starts on the active 1.7.0).
      if (!killedAt && line.includes('"msg":"verifying version ')) {
        killedAt = Date.now();
        d.proc.kill('SIGKILL');
      }
    });
    const pkg = await bigVersion('1.9.0', 24 * MB);
    v.huge = await register(pkg);
    await waitFor('killed while verifying', () => (killedAt ? true : undefined), 30_000);
    await killGateway();

    // Whatever step the kill hit, the store holds whole versions only and still serves 1.7.0.
    const after = await expectStoreConsistent();
    expect(after.active).toBe(v.big);
    const installedByKill = after.installed.includes(v.huge);
    console.log(
      installedByKill,
      after,
      await readdir(path.join(storeDir, 'defect', 'staging', v.huge)).catch(() => 'none'),
    );

    const restartedAt = Date.now();
    await startGateway(longShadow);
    await waitFor(
      'version tried after the restart',
      async () => {
        const r = await rollout();
        return r.state === 'shadow' && r.candidate?.version === '1.9.0' ? true : undefined;
      },
      30_000,
    );
    // Nothing was downloaded twice: the staging folder had the whole download, or it was installed.
    expect(artifactGets('payload.bin', restartedAt)).toEqual([]);
    const store = await expectStoreConsistent();
    expect(store.installed).toContain(v.huge);
    if (!installedByKill) {
      const done = logLines(daemon!).find((l) => l.version === v.huge && l.resumedBytes !== undefined);
      expect(done?.resumedBytes).toBe(done?.bytes);
    }
  });

  it('(e) rolls back by itself when a version promoted by hand regresses on live frames', async () => {
    // A version that fails on live inputs but was never seen failing: no frames while it is in
    // shadow (the line is stopped), so nothing judges it before an engineer promotes it by hand.
    // Its outputs are NaN, so the first live frame after the promotion is a regression, whatever
    // the machine's speed.
    await stopCamera();
    v.regressing = await register(path.join(FIXTURES, 'nan'));
    await waitFor('NaN version in shadow', eventFor(v.regressing, 'shadow'), 30_000);
    const res = await fetch(`${daemon!.url}/api/v1/models/defect/promote`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ state: 'promoted', reason: 'manual', version: '1.2.0' });

    // The line starts again: the watch sees NaN and rolls it back.
    startCamera(8);
    const back = await waitFor(
      'regression rolled back',
      () => events.find((e) => e.state === 'rolled_back' && e.reason === 'regression'),
      30_000,
    );
    expect(back).toMatchObject({ from: '1.2.0', to: '1.7.0' });
    const r = await rollout();
    expect(r.active.version).toBe('1.7.0');
    expect(r.lastDecision).toMatchObject({ state: 'rolled_back', reason: 'regression' });
    expect((await status()).pipelines.inspection!.dropped.model_unavailable ?? 0).toBe(0);

    // Which registry version was rolled back, for dashboards, the registry and the model store.
    expect.soft(back.registered, 'rolled_back event names the registry version rolled back').toMatchObject({
      name: NAME,
      version: v.regressing,
    });
    // The model store follows the decision a moment after the event: give it a few seconds.
    const readState = async () =>
      JSON.parse(await readFile(path.join(storeDir, 'defect', 'state.json'), 'utf8')) as {
        active: string;
        rejected: Record<string, { reason: string }>;
      };
    const state = await waitFor(
      'model store back on the version before',
      async () => {
        const s = await readState();
        return s.active === v.big ? s : undefined;
      },
      5_000,
    ).catch(readState);
    expect.soft(state.active, 'model store active version after the rollback').toBe(v.big);
    expect
      .soft(state.rejected[v.regressing]?.reason, 'model store refusal of the rolled-back version')
      .toBe('regression');
    const key = `vigil.${DEVICE}.state`;
    const tag = await waitFor(
      'registry tag rolled_back',
      async () => ((await tags(v.regressing))[key] === 'rolled_back' ? 'rolled_back' : undefined),
      5_000,
    ).catch(async () => (await tags(v.regressing))[key]);
    expect.soft(tag, 'registry tag of the rolled-back version').toBe('rolled_back');
  });
});
