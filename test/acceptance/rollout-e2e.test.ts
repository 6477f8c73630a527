import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { ROOT, metricValue, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';
import { PackageWorkshop } from '../helpers/model-packages.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { logitsPackage, variant } from './support.js';

/**
 * Acceptance tests in the over-the-air rollout, end to end: an ML engineer registers versions
 * with the real mlflow client (models/registry/register.py) and moves the alias; `vigil run`
 * downloads each one from a real MLflow server and runs its acceptance tests before its shadow.
 * A version whose tests fail is rejected with its reason in /api/v1/status, in the retained
 * rollout event on a real Mosquitto, and in the registry's model version tags; a version whose
 * tests pass enters shadow.
 */

const SHIPPED = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const NAME = 'defect-accept';
const DEVICE = 'accept-gw';
const TOPIC = `vigil/${DEVICE}/rollout/defect`;

const workshop = new PackageWorkshop();
let broker: RunningMosquitto;
let registry: RunningMlflow;
let daemon: RunningDaemon | undefined;
let sub: MqttClient;
let dir: string;
const events: RolloutEvent[] = [];

interface Status {
  rollout: Record<
    string,
    {
      state: string;
      active: { version?: string };
      acceptance?: {
        version: string;
        outcome: string;
        summary: string;
        checks?: number;
        failedChecks?: number;
      };
      lastDecision?: RolloutEvent;
    }
  >;
}

async function status(): Promise<Status> {
  return (await (await fetch(`${daemon!.url}/api/v1/status`)).json()) as Status;
}

function eventFor(version: string, state: string): () => RolloutEvent | undefined {
  return () => events.find((e) => e.registered?.version === version && e.state === state);
}

async function tags(version: string): Promise<Record<string, string>> {
  const client = new MlflowRegistryClient(RegistryConfig.parse({ url: registry.url }));
  return (await client.getVersion(NAME, version)).tags;
}

/** The retained rollout event, as a subscriber that arrives now receives it. */
async function retained(): Promise<RolloutEvent> {
  const late = await mqtt.connectAsync(broker.url);
  try {
    const got = new Promise<RolloutEvent>((resolve) =>
      late.on('message', (_t, payload, packet) => {
        if (packet.retain) resolve(JSON.parse(payload.toString()) as RolloutEvent);
      }),
    );
    await late.subscribeAsync(TOPIC, { qos: 1 });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no retained message on ${TOPIC} within 10 s`)), 10_000);
    });
    try {
      return await Promise.race([got, timeout]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await late.endAsync();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-accept-ota-'));
  [broker, registry] = await Promise.all([startMosquitto(), startMlflow()]);
  sub = await mqtt.connectAsync(broker.url);
  sub.on('message', (_topic, payload) => events.push(JSON.parse(payload.toString()) as RolloutEvent));
  await sub.subscribeAsync(`vigil/${DEVICE}/rollout/#`, { qos: 1 });
  const config = path.join(dir, 'vigil.yaml');
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
      },
      models: {
        defect: {
          package: SHIPPED,
          registry: { name: NAME, alias: 'champion' },
          // Long enough that a version in shadow stays there for the test.
          rollout: { shadowSamples: 100_000, shadowMaxSeconds: 600 },
        },
      },
      sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: await freePort() } } },
      pipelines: { inspection: { sources: ['cam'], model: 'defect', budgetMs: 200 } },
    }),
  );
  daemon = await startDaemon(config, httpPort, { timeoutMs: 60_000 });
}, 180_000);

afterAll(async () => {
  if (daemon) await daemon.stop();
  await sub?.endAsync();
  await registry?.stop();
  await broker?.stop();
  await workshop.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('acceptance tests in the over-the-air rollout (vigil run, real MLflow and Mosquitto)', () => {
  it('rejects a version whose acceptance tests fail before its shadow: status, retained MQTT event, registry tags', async () => {
    const v = await registerPackage(registry.url, {
      name: NAME,
      packageDir: await logitsPackage(workshop, '1.1.0'),
      alias: 'champion',
    });
    const rejected = await waitFor('version rejected', eventFor(v, 'rejected'), 120_000);
    expect(rejected).toMatchObject({
      schema: 'vigil.rollout.v1',
      device: DEVICE,
      model: 'defect',
      registered: { name: NAME, alias: 'champion', version: v },
      from: '1.0.0',
      to: '1.1.0',
      reason: 'acceptance_failed',
    });
    expect(rejected.message).toMatch(
      /^acceptance tests failed: 3 of 9 checks failed on 40 holdout samples: outputs\.probabilities: /,
    );
    // Downloaded, verified, tested: never shadowed.
    expect(events.filter((e) => e.registered?.version === v).map((e) => e.state)).toEqual([
      'downloading',
      'verifying',
      'verifying',
      'rejected',
    ]);

    const s = (await status()).rollout.defect!;
    expect(s.active.version).toBe('1.0.0');
    expect(s.lastDecision).toMatchObject({ state: 'rejected', reason: 'acceptance_failed', to: '1.1.0' });
    expect(s.lastDecision!.message).toBe(rejected.message);
    expect(s.acceptance).toMatchObject({ version: '1.1.0', outcome: 'failed', checks: 9, failedChecks: 3 });

    expect(await retained()).toMatchObject({ state: 'rejected', reason: 'acceptance_failed', to: '1.1.0' });

    const t = await waitFor('registry tagged', async () => {
      const got = await tags(v);
      return got[`vigil.${DEVICE}.state`] === 'rejected' ? got : undefined;
    });
    expect(t[`vigil.${DEVICE}.reason`]).toMatch(
      /^acceptance_failed: acceptance tests failed: 3 of 9 checks failed on 40 holdout samples: outputs\.probabilities: /,
    );

    const metrics = await (await fetch(`${daemon!.url}/metrics`)).text();
    expect(metricValue(metrics, 'vigil_model_acceptance_total', { model: 'defect', outcome: 'failed' })).toBe(
      1,
    );
  }, 180_000);

  it('lets a version whose acceptance tests pass enter shadow', async () => {
    const pkg = await variant(workshop, 'defect-fp32-onnx', (m) => {
      m.version = '1.2.0';
    });
    const v = await registerPackage(registry.url, { name: NAME, packageDir: pkg, alias: 'champion' });
    const shadow = await waitFor('version in shadow', eventFor(v, 'shadow'), 120_000);
    expect(shadow.message).toMatch(
      /^version 1\.2\.0 of model defect passed its acceptance tests \(9 checks on 40 holdout samples, [\d.]+ s\) and runs in shadow/,
    );
    expect(shadow.evidence).toMatchObject({
      acceptance: 'passed',
      acceptanceChecks: 9,
      acceptanceFailedChecks: 0,
    });
    const s = (await status()).rollout.defect!;
    expect(s.state).toBe('shadow');
    expect(s.acceptance).toMatchObject({ version: '1.2.0', outcome: 'passed', failedChecks: 0 });
    await waitFor('registry tagged', async () =>
      (await tags(v))[`vigil.${DEVICE}.state`] === 'shadow' ? true : undefined,
    );
    const metrics = await (await fetch(`${daemon!.url}/metrics`)).text();
    expect(metricValue(metrics, 'vigil_model_acceptance_total', { model: 'defect', outcome: 'passed' })).toBe(
      1,
    );
  }, 180_000);
});
