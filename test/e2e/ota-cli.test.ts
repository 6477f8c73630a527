import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { CLI, ROOT, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { generateKeys, registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';
import { PackageWorkshop, makeVersion } from '../helpers/model-packages.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import type { SimCamera } from '../../simulator/camera/camera.js';
import { startLineCamera, stopLineCamera } from '../helpers/line-camera.js';
import { freePort } from '../helpers/ports.js';

/**
 * `vigil models pull | status | promote | rollback --config FILE` as an operator types them, against
 * a real MLflow server and a real `vigil run`: status from the running daemon and, once it is
 * stopped, from the model store on disk; pull with no daemon (download with a progress bar on a
 * terminal, verify the signature, install; the next daemon start tries that version without
 * downloading it again) and through a running daemon; promote of a version whose shadow would
 * take all day; rollback to the version before. Exit codes: 0 done, 1 refused or no daemon, 2 a
 * model the config does not follow.
 */

const SHIPPED = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const GOOD = path.join(ROOT, 'test/fixtures/rollout/good');
const NAME = 'defect-detector';
const DEVICE = 'cli-gw';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let broker: RunningMosquitto;
let registry: RunningMlflow;
let daemon: RunningDaemon | undefined;
let camera: SimCamera | undefined;
let sub: MqttClient;
let dir: string;
let config: string;
let httpPort: number;
let keys: { privateKey: string; publicKey: string };
const workshop = new PackageWorkshop();
const events: RolloutEvent[] = [];
const v: Record<string, string> = {};

/** Runs the compiled CLI, as a user does. */
function vigil(args: string[]): Promise<Run> {
  return collect(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Runs the compiled CLI on a pseudo-terminal (util-linux `script`), where progress bars draw. */
function vigilOnTerminal(args: string[]): Promise<Run> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return collect(spawn('script', ['-qec', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

function collect(proc: ReturnType<typeof spawn>): Promise<Run> {
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const models = (cmd: string, ...rest: string[]) => vigil(['models', cmd, ...rest, '--config', config]);

async function rollout(): Promise<{
  state: string;
  active: { version?: string };
  candidate?: { version?: string };
  lastDecision?: RolloutEvent;
}> {
  const s = (await (await fetch(`${daemon!.url}/api/v1/status`)).json()) as {
    rollout: Record<string, never>;
  };
  return s.rollout.defect!;
}

async function tags(version: string): Promise<Record<string, string>> {
  const client = new MlflowRegistryClient(RegistryConfig.parse({ url: registry.url }));
  return (await client.getVersion(NAME, version)).tags;
}

function eventFor(version: string, state: string): () => RolloutEvent | undefined {
  return () => events.find((e) => e.registered?.version === version && e.state === state);
}

async function startGateway(): Promise<void> {
  const camPort = await freePort();
  await writeFile(
    config,
    stringify({
      device: { id: DEVICE },
      http: { port: httpPort, tokenFile: 'ops-token' },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, 'vigil.db') },
      registry: {
        url: registry.url,
        pollIntervalSeconds: 1,
        backoff: { initialDelayMs: 200, maxDelayMs: 1_000 },
        storeDir: 'models',
        signatures: { policy: 'require', publicKeys: [keys.publicKey] },
      },
      models: {
        defect: {
          package: SHIPPED,
          registry: { name: NAME, alias: 'champion' },
          // A shadow that would take all day: versions are promoted by hand here.
          rollout: { shadowSamples: 100_000, shadowMaxSeconds: 3_600, watchSamples: 10 },
        },
      },
      sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: camPort } } },
      pipelines: { inspection: { sources: ['cam'], model: 'defect', budgetMs: 100 } },
    }),
  );
  daemon = await startDaemon(config, httpPort, { timeoutMs: 60_000 });
  camera = startLineCamera(camPort, 8, 7);
}

async function stopGateway(): Promise<void> {
  await stopLineCamera(camera);
  camera = undefined;
  if (daemon) expect(await daemon.stop()).toBe(0);
  daemon = undefined;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-ota-cli-'));
  config = path.join(dir, 'vigil.yaml');
  // promote, rollback and pull go through the running daemon: both read this token file.
  await writeFile(path.join(dir, 'ops-token'), `ota-cli-${process.pid}\n`, { mode: 0o600 });
  httpPort = await freePort();
  [broker, registry] = await Promise.all([startMosquitto(), startMlflow()]);
  keys = await generateKeys(path.join(dir, 'keys'));
  sub = await mqtt.connectAsync(broker.url);
  sub.on('message', (_topic, payload) => events.push(JSON.parse(payload.toString()) as RolloutEvent));
  await sub.subscribeAsync(`vigil/${DEVICE}/rollout/#`, { qos: 1 });
  // The config the commands read; startGateway writes the same one.
  await writeFile(
    config,
    stringify({
      device: { id: DEVICE },
      http: { port: httpPort, tokenFile: 'ops-token' },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, 'vigil.db') },
      registry: {
        url: registry.url,
        storeDir: 'models',
        signatures: { policy: 'require', publicKeys: [keys.publicKey] },
      },
      models: { defect: { package: SHIPPED, registry: { name: NAME, alias: 'champion' } } },
      sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: await freePort() } } },
      pipelines: { inspection: { sources: ['cam'], model: 'defect', budgetMs: 100 } },
    }),
  );
}, 120_000);

afterAll(async () => {
  camera?.stop();
  await camera?.finished.catch(() => undefined);
  if (daemon) await daemon.stop();
  await sub?.endAsync();
  await registry?.stop();
  await broker?.stop();
  await workshop.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('vigil models pull | status | promote | rollback against a real registry', () => {
  it('pulls with no daemon running: progress on a terminal, verified, installed, not yet active', async () => {
    const empty = await models('status');
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain(
      `daemon: not answering at http://127.0.0.1:${httpPort}; from the model store`,
    );

    // Nothing registered yet: the registry's answer, and exit 1.
    const none = await models('pull');
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^defect: .*defect-detector/m);

    v.good = await registerPackage(registry.url, {
      name: NAME,
      packageDir: GOOD,
      alias: 'champion',
      signKey: keys.privateKey,
    });
    const pulled = await vigilOnTerminal(['models', 'pull', '--config', config]);
    expect(pulled.code, pulled.stdout + pulled.stderr).toBe(0);
    expect(pulled.stdout).toMatch(new RegExp(`defect v${v.good} \\[.*\\] 100%`));
    expect(pulled.stdout).toContain(`defect: version ${v.good} of ${NAME} downloaded (3 files, `);
    expect(pulled.stdout).toContain(
      'verified and installed; the daemon tries it in shadow at its next start',
    );

    const again = await models('pull');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`${NAME}@champion is version ${v.good}, already installed`);

    const stored = await models('status', '--json');
    expect(stored.code).toBe(0);
    const snap = JSON.parse(stored.stdout) as {
      daemon: string;
      store: Record<string, Record<string, unknown>>;
    };
    expect(snap.daemon).toBe('not running');
    expect(snap.store.defect).toMatchObject({ installed: [v.good], rejected: {} });
    expect(snap.store.defect!.active).toBeUndefined();
  });

  it('the next daemon start tries the pulled version without downloading it; promote by hand', async () => {
    await startGateway();
    await waitFor('pulled version in shadow', eventFor(v.good!, 'shadow'), 30_000);
    expect(events.filter((e) => e.state === 'downloading')).toEqual([]);
    await waitFor('a few shadow samples', async () => {
      const r = (await rollout()) as { shadow?: { samples: number } };
      return (r.shadow?.samples ?? 0) >= 3 ? true : undefined;
    });

    const st = await models('status');
    expect(st.code).toBe(0);
    expect(st.stdout).toContain(
      `defect: shadow · serving 1.0.0 · candidate 1.1.0 · follows ${NAME}@champion (registry version ${v.good}`,
    );
    expect(st.stdout).toMatch(/^ {2}shadow: \d+\/100000 inputs, agreement [\d.]+, p95 [\d.]+ ms$/m);

    // A daemon owns the store: a status that cannot reach it must not read the store under it.
    const wrongUrl = await models('status', '--url', `http://127.0.0.1:${await freePort()}`);
    expect(wrongUrl.code).toBe(1);
    expect(wrongUrl.stderr).toMatch(/a Vigil daemon \(pid \d+\) owns the model store but does not answer/);

    const promoted = await models('promote', 'defect');
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(promoted.stdout).toMatch(/version 1\.1\.0 promoted by hand after \d+ shadow samples/);
    expect(await waitFor('promoted event', eventFor(v.good!, 'promoted'))).toMatchObject({
      reason: 'manual',
      from: '1.0.0',
      to: '1.1.0',
    });
    expect((await rollout()).active.version).toBe('1.1.0');

    const nothing = await models('promote', 'defect');
    expect(nothing.code).toBe(1);
    expect(nothing.stdout + nothing.stderr).toContain('model defect has no version in shadow to promote');

    const unknown = await models('promote', 'nosuch');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("model 'nosuch' does not follow the registry in this config");

    // A new version; pull through the running daemon makes it look now.
    const pkg = await workshop.copy(GOOD);
    await makeVersion(pkg, '1.8.0');
    v.next = await registerPackage(registry.url, {
      name: NAME,
      packageDir: pkg,
      alias: 'champion',
      signKey: keys.privateKey,
    });
    const through = await models('pull');
    expect(through.code).toBe(0);
    expect(through.stdout).toContain(
      `the running daemon checked the registry: champion is version ${v.next}`,
    );
    await waitFor('new version in shadow', eventFor(v.next, 'shadow'), 30_000);
    const second = await models('promote', 'defect');
    expect(second.code, second.stderr).toBe(0);
    expect((await rollout()).active.version).toBe('1.8.0');
    const t = await waitFor('promoted tag', async () => {
      const got = await tags(v.next!);
      return got[`vigil.${DEVICE}.state`] === 'promoted' ? got : undefined;
    });
    expect(t[`vigil.${DEVICE}.reason`]).toMatch(/^manual: /);
  });

  it('rolls back by hand to the version before, everywhere, and refuses without a daemon', async () => {
    const back = await models('rollback', 'defect');
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain('rolled back by hand; model defect is back on version 1.1.0');
    const r = await rollout();
    expect(r.active.version).toBe('1.1.0');
    expect(r.lastDecision).toMatchObject({
      state: 'rolled_back',
      reason: 'manual',
      from: '1.8.0',
      to: '1.1.0',
    });
    const event = await waitFor('rolled_back event', () => events.find((e) => e.state === 'rolled_back'));
    expect(event).toMatchObject({ reason: 'manual', from: '1.8.0', to: '1.1.0' });
    // The version rolled back, named as the registry knows it, so that the registry, the model
    // store and a restart all follow the operator's decision.
    expect.soft(event.registered, 'rolled_back event names the registry version').toMatchObject({
      version: v.next,
    });
    const key = `vigil.${DEVICE}.state`;
    const tag = await waitFor(
      'rolled_back tag',
      async () => ((await tags(v.next!))[key] === 'rolled_back' ? 'rolled_back' : undefined),
      5_000,
    ).catch(async () => (await tags(v.next!))[key]);
    expect.soft(tag, 'registry tag of the version rolled back by hand').toBe('rolled_back');

    await stopGateway();
    const gone = await models('rollback', 'defect');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`no Vigil daemon answers at http://127.0.0.1:${httpPort}`);

    const stored = await models('status', '--json');
    expect(stored.code).toBe(0);
    const snap = JSON.parse(stored.stdout) as {
      store: Record<
        string,
        { active?: string; installed: string[]; rejected: Record<string, { reason: string }> }
      >;
    };
    expect(snap.store.defect!.installed).toEqual([v.good, v.next]);
    // A restart must serve 1.1.0, the version the operator went back to.
    expect.soft(snap.store.defect!.active, 'model store active version after a manual rollback').toBe(v.good);
    expect
      .soft(snap.store.defect!.rejected[v.next!]?.reason, 'model store refusal of the version rolled back')
      .toBe('manual');

    // The alias still points at the version rolled back: pull refuses it unless told to retry.
    const refused = await models('pull');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `defect: ${NAME}@champion is version ${v.next}, which this gateway refused (manual); pass --retry to try it again`,
    );
    const retried = await models('pull', '--retry');
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toContain(`is version ${v.next}, already installed`);
    const cleared = JSON.parse((await models('status', '--json')).stdout) as {
      store: Record<string, { rejected: Record<string, unknown> }>;
    };
    expect(cleared.store.defect!.rejected).toEqual({});
  });
});
