import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { ROOT, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { generateKeys, registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';
import { copyPackage, corruptFile } from '../helpers/model-packages.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import type { SimCamera } from '../../simulator/camera/camera.js';
import { startLineCamera, stopLineCamera } from '../helpers/line-camera.js';
import { freePort } from '../helpers/ports.js';
import { contractErrors, keepMessages } from '../contracts/support.js';

/**
 * Over the air, end to end: an ML engineer registers versions with the real mlflow client
 * (models/registry/register.py) and moves the `champion` alias; `vigil run` follows it against a
 * real MLflow server, tries each version in shadow on live camera frames, promotes the good one
 * while frames keep flowing, rejects the bad ones with their reasons — on MQTT, in the status and
 * as tags in the registry — and after a restart serves what it promoted.
 */

const SHIPPED = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const FIXTURES = path.join(ROOT, 'test/fixtures/rollout');
const NAME = 'defect-detector';
const DEVICE = 'ota-gw';

let broker: RunningMosquitto;
let registry: RunningMlflow;
let daemon: RunningDaemon | undefined;
let camera: SimCamera | undefined;
let sub: MqttClient;
let dir: string;
let config: string;
let keys: { privateKey: string; publicKey: string };
const events: RolloutEvent[] = [];

async function status(): Promise<{
  rollout: Record<string, { state: string; active: { version?: string } }>;
  pipelines: Record<string, { processed: number; dropped: Record<string, number> }>;
}> {
  return (await (await fetch(`${daemon!.url}/api/v1/status`)).json()) as never;
}

function eventFor(version: string, state: string): () => RolloutEvent | undefined {
  return () => events.find((e) => e.registered?.version === version && e.state === state);
}

async function tags(version: string): Promise<Record<string, string>> {
  const client = new MlflowRegistryClient(RegistryConfig.parse({ url: registry.url }));
  return (await client.getVersion(NAME, version)).tags;
}

async function startGateway(): Promise<void> {
  const camPort = await freePort();
  const httpPort = await freePort();
  await writeFile(
    config,
    stringify({
      device: { id: DEVICE },
      http: { port: httpPort },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, 'vigil.db') },
      registry: {
        url: registry.url,
        pollIntervalSeconds: 1,
        backoff: { initialDelayMs: 200, maxDelayMs: 1_000 },
        storeDir: path.join(dir, 'models'),
        signatures: { policy: 'require', publicKeys: [keys.publicKey] },
      },
      models: {
        defect: {
          package: SHIPPED,
          registry: { name: NAME, alias: 'champion' },
          rollout: { shadowSamples: 15, shadowMaxSeconds: 60, watchSamples: 15 },
        },
      },
      sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: camPort } } },
      pipelines: { inspection: { sources: ['cam'], model: 'defect', budgetMs: 200 } },
    }),
  );
  daemon = await startDaemon(config, httpPort, { timeoutMs: 60_000 });
  camera = startLineCamera(camPort, 8, 3);
}

async function stopGateway(): Promise<void> {
  await stopLineCamera(camera);
  camera = undefined;
  if (daemon) expect(await daemon.stop()).toBe(0);
  daemon = undefined;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-ota-'));
  config = path.join(dir, 'vigil.yaml');
  [broker, registry] = await Promise.all([startMosquitto(), startMlflow()]);
  keys = await generateKeys(path.join(dir, 'keys'));
  sub = await mqtt.connectAsync(broker.url);
  sub.on('message', (_topic, payload) => events.push(JSON.parse(payload.toString()) as RolloutEvent));
  await sub.subscribeAsync(`vigil/${DEVICE}/rollout/#`, { qos: 1 });
}, 120_000);

afterAll(async () => {
  camera?.stop();
  if (daemon) await daemon.stop();
  await sub?.endAsync();
  await registry?.stop();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('over-the-air rollout from a real MLflow registry (vigil run)', () => {
  it('promotes a good signed version after its shadow, while frames keep flowing', async () => {
    const v = await registerPackage(registry.url, {
      name: NAME,
      packageDir: path.join(FIXTURES, 'good'),
      alias: 'champion',
      signKey: keys.privateKey,
    });
    await startGateway();
    const promoted = await waitFor('version promoted', eventFor(v, 'promoted'), 90_000);
    expect(promoted).toMatchObject({
      schema: 'vigil.rollout.v1',
      model: 'defect',
      to: '1.1.0',
      from: '1.0.0',
    });
    for (const state of ['downloading', 'verifying', 'shadow'])
      expect(events.some((e) => e.registered?.version === v && e.state === state)).toBe(true);
    const s = await status();
    expect(s.rollout.defect!.active.version).toBe('1.1.0');
    const inspection = s.pipelines.inspection!;
    expect(inspection.processed).toBeGreaterThanOrEqual(15);
    // The swap loses no frame: nothing was dropped for want of a model or an engine.
    expect(inspection.dropped.model_unavailable ?? 0).toBe(0);
    expect(inspection.dropped.inference_error ?? 0).toBe(0);
    await waitFor('registry tagged', async () =>
      (await tags(v))[`vigil.${DEVICE}.state`] === 'promoted' ? true : undefined,
    );
  });

  it('rejects a version that outputs NaN in shadow, an unsigned one and a corrupt one, and keeps serving', async () => {
    const nan = await registerPackage(registry.url, {
      name: NAME,
      packageDir: path.join(FIXTURES, 'nan'),
      alias: 'champion',
      signKey: keys.privateKey,
    });
    expect(await waitFor('NaN version rejected', eventFor(nan, 'rejected'), 60_000)).toMatchObject({
      reason: 'nan_output',
    });

    const unsigned = await registerPackage(registry.url, {
      name: NAME,
      packageDir: path.join(FIXTURES, 'disagree'),
      alias: 'champion',
    });
    expect(await waitFor('unsigned version rejected', eventFor(unsigned, 'rejected'), 60_000)).toMatchObject({
      reason: 'signature_missing',
    });

    const corrupt = path.join(dir, 'corrupt');
    await copyPackage(path.join(FIXTURES, 'good'), corrupt);
    await corruptFile(corrupt);
    const bad = await registerPackage(registry.url, {
      name: NAME,
      packageDir: corrupt,
      alias: 'champion',
      signKey: keys.privateKey,
    });
    expect(await waitFor('corrupt version rejected', eventFor(bad, 'rejected'), 60_000)).toMatchObject({
      reason: 'sha256_mismatch',
    });

    const s = await status();
    expect(s.rollout.defect!.active.version).toBe('1.1.0');
    expect(s.pipelines.inspection!.dropped.model_unavailable ?? 0).toBe(0);
    for (const v of [nan, unsigned, bad])
      await waitFor(`registry tag on version ${v}`, async () =>
        (await tags(v))[`vigil.${DEVICE}.state`] === 'rejected' ? true : undefined,
      );
    expect((await tags(nan))[`vigil.${DEVICE}.reason`]).toMatch(/^nan_output: /);
  });

  it('serves the promoted version after a restart and does not pull the rejected one again', async () => {
    await stopGateway();
    const before = events.length;
    await startGateway();
    await waitFor('serving again', async () =>
      (await status()).rollout.defect?.active.version === '1.1.0' ? true : undefined,
    );
    // A few polls: the alias still points at the corrupt version, refused once and remembered.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(events.slice(before).filter((e) => e.state === 'downloading')).toEqual([]);
  });

  it('published every rollout event as its contract says (docs/schemas/v1/rollout.schema.json)', async () => {
    const topic = `vigil/${DEVICE}/rollout/defect`;
    await keepMessages(
      'rollout',
      events.map((payload) => ({ topic, payload })),
    );
    for (const state of ['downloading', 'verifying', 'shadow', 'promoted', 'rejected'])
      expect(events.some((e) => e.state === state)).toBe(true);
    for (const e of events) expect(contractErrors(topic, e), `${e.state} ${e.to}`).toEqual([]);
  });
});
