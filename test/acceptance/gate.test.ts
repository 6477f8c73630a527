import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RolloutPolicy } from '../../runtime/config/registry.js';
import { PipelineConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { ModelHost } from '../../runtime/model/host.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { Pipeline } from '../../runtime/pipeline/pipeline.js';
import { RolloutController } from '../../runtime/rollout/controller.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { metricValue } from '../helpers/daemon.js';
import { PackageWorkshop } from '../helpers/model-packages.js';
import { CURRENT, FIXTURE, OPTIONS, testFrames, until } from '../rollout/harness.js';
import { logitsPackage, variant } from './support.js';

// The rollout controller runs a new version's acceptance tests on its candidate engine before
// the version may enter shadow, beside a frame pipeline that keeps serving the current version:
// a failing version is rejected (never shadowed), a passing one enters shadow, a version without
// tests is tried with a warning unless rollout.requireAcceptance refuses it.

const workshop = new PackageWorkshop();
afterAll(() => workshop.cleanup());

interface Rig {
  host: ModelHost;
  pipeline: Pipeline;
  controller: RolloutController;
  metrics: Metrics;
  events: RolloutEvent[];
  offered: () => number;
  close(): Promise<void>;
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** The shipped int8 defect model serving a pipeline fed 10 frames a second, and its controller. */
async function gateRig(policy: Partial<RolloutPolicy> = {}): Promise<Rig> {
  const frames = await testFrames();
  const metrics = new Metrics({ processMetrics: false });
  const log = silentLogger();
  const host = new ModelHost('defect', CURRENT, OPTIONS, metrics, log);
  if (!(await host.load())) throw new Error('the shipped defect model did not load');
  const pipeline = new Pipeline({
    name: 'inspection',
    config: PipelineConfig.parse({ sources: ['cam'], model: 'defect', budgetMs: 2000 }),
    deviceId: 'gw-accept',
    engine: () => host.current(),
    sink: { saveResult: () => undefined },
    publisher: { publishAlert: async () => ({ ackMs: 0 }), publishResult() {} },
    metrics,
    inputError: () => undefined,
    log,
    rollout: host,
  });
  await pipeline.warmUp();
  const events: RolloutEvent[] = [];
  const controller = new RolloutController({
    model: 'defect',
    deviceId: 'gw-accept',
    host,
    policy: RolloutPolicy.parse({ shadowSamples: 100_000, shadowMaxSeconds: 600, ...policy }),
    budgetMs: 2000,
    log,
    metrics,
    onEvent: (e) => events.push(e),
  });
  let n = 0;
  const timer = setInterval(() => {
    n++;
    pipeline.offer({
      kind: 'frame',
      id: `f${n}`,
      source: 'cam',
      receivedAt: Date.now(),
      arrivedAt: performance.now(),
      data: frames[n % frames.length]!,
      origin: `frame-${n}.jpg`,
    });
  }, 100);
  return {
    host,
    pipeline,
    controller,
    metrics,
    events,
    offered: () => n,
    async close() {
      clearInterval(timer);
      await pipeline.idle();
      await controller.close();
      await pipeline.stop();
      await host.close();
    },
  };
}

async function counted(metrics: Metrics, outcome: string): Promise<number> {
  return metricValue(await metrics.registry.metrics(), 'vigil_model_acceptance_total', {
    model: 'defect',
    outcome,
  });
}

describe('acceptance tests before the shadow', () => {
  it('reject a version whose tests fail: never shadowed, while the current version keeps serving', async () => {
    rig = await gateRig();
    const { controller, host, events, pipeline } = rig;
    const registered = { name: 'defect', alias: 'champion', version: '9' };
    const outcome = await controller.tryVersion({ packageDir: await logitsPackage(workshop), registered });

    expect(outcome.state).toBe('rejected');
    expect(outcome.reason).toBe('acceptance_failed');
    expect(outcome.message).toMatch(
      /^acceptance tests failed: 3 of 9 checks failed on 40 holdout samples: outputs\.probabilities: 0% \(0\/40\); values .* \(expected each in \[0, 1\], sum 1 ± 0\.001 on every sample\), e\.g\. \d\d-\w+\.png: values \[/,
    );
    expect(outcome.message).toContain('minMetrics.recall: 0.7917 (expected >= 0.95), e.g. ');
    expect(events.map((e) => e.state)).toEqual(['verifying', 'rejected']);
    expect(events[0]!.message).toBe(
      'version 1.1.0 of model defect: running its acceptance tests before its shadow',
    );
    expect(events[1]).toMatchObject({
      schema: 'vigil.rollout.v1',
      state: 'rejected',
      from: '1.0.0',
      to: '1.1.0',
      reason: 'acceptance_failed',
      registered,
      evidence: {
        acceptance: 'failed',
        acceptanceChecks: 9,
        acceptanceFailedChecks: 3,
        acceptanceSamples: 40,
      },
    });
    expect(host.candidate()).toBeUndefined();
    expect(host.current()!.manifest.version).toBe('1.0.0');
    const status = controller.status();
    expect(status.state).toBe('rejected');
    expect(status.acceptance).toMatchObject({
      version: '1.1.0',
      outcome: 'failed',
      checks: 9,
      failedChecks: 3,
      samples: 40,
    });
    expect(status.lastDecision?.reason).toBe('acceptance_failed');
    expect(await counted(rig.metrics, 'failed')).toBe(1);

    // Frames kept flowing on the serving version while the tests ran.
    await until('frames after the decision', () => (pipeline.snapshot().processed >= 10 ? true : undefined));
    const snap = pipeline.snapshot();
    expect(snap.dropped.model_unavailable ?? 0).toBe(0);
    expect(snap.dropped.inference_error ?? 0).toBe(0);
  }, 90_000);

  it('let a version that passes them into shadow, saying so', async () => {
    rig = await gateRig();
    const { controller, events } = rig;
    const pkg = await variant(workshop, 'defect-fp32-onnx', (m) => {
      m.version = '1.2.0';
    });
    const trial = controller.tryVersion({ packageDir: pkg });
    const shadow = await until('the shadow', () => events.find((e) => e.state === 'shadow'), 60_000);
    expect(events.map((e) => e.state)).toEqual(['verifying', 'shadow']);
    expect(shadow.message).toMatch(
      /^version 1\.2\.0 of model defect passed its acceptance tests \(9 checks on 40 holdout samples, [\d.]+ s\) and runs in shadow: /,
    );
    expect(shadow.evidence).toMatchObject({
      acceptance: 'passed',
      acceptanceChecks: 9,
      acceptanceFailedChecks: 0,
    });
    expect(controller.status()).toMatchObject({
      state: 'shadow',
      candidate: { version: '1.2.0' },
      acceptance: { version: '1.2.0', outcome: 'passed', checks: 9, failedChecks: 0 },
    });
    expect(await counted(rig.metrics, 'passed')).toBe(1);
    expect(
      metricValue(await rig.metrics.registry.metrics(), 'vigil_model_acceptance_duration_seconds_count', {
        model: 'defect',
      }),
    ).toBe(1);
    await controller.close();
    expect(await trial).toMatchObject({ state: 'cancelled' });
  }, 90_000);

  it('try a version without tests in shadow with acceptance none; requireAcceptance refuses it', async () => {
    rig = await gateRig();
    const trial = rig.controller.tryVersion({ packageDir: FIXTURE('good') });
    await until('the shadow', () => rig!.events.find((e) => e.state === 'shadow'), 60_000);
    expect(rig.events.map((e) => e.state)).toEqual(['shadow']);
    expect(rig.controller.status().acceptance).toMatchObject({
      version: '1.1.0',
      outcome: 'none',
      summary: 'version 1.1.0 declares no acceptance tests (its vigil.json has no acceptance section)',
    });
    expect(await counted(rig.metrics, 'none')).toBe(1);
    await rig.close();
    expect(await trial).toMatchObject({ state: 'cancelled' });

    rig = await gateRig({ requireAcceptance: true });
    const refused = await rig.controller.tryVersion({ packageDir: FIXTURE('good') });
    expect(refused).toMatchObject({ state: 'rejected', reason: 'acceptance_failed' });
    expect(refused.message).toBe(
      'acceptance tests failed: version 1.1.0 declares no acceptance tests (its vigil.json has no acceptance section), ' +
        'and rollout.requireAcceptance is set for model defect. Add a holdout and checks to the package (docs/ACCEPTANCE.md) and register it again.',
    );
    expect(rig.events.map((e) => e.state)).toEqual(['rejected']);
    expect(rig.host.candidate()).toBeUndefined();
  }, 90_000);

  it('past rollout.acceptanceTimeoutSeconds reject the version (outcome error) and drop the candidate', async () => {
    rig = await gateRig({ acceptanceTimeoutSeconds: 0.5 });
    // Every frame 10 times: 400 frames, 4400 inferences with their perturbed PNGs, far past 0.5 s.
    const pkg = await variant(workshop, 'defect-fp32-onnx', async (m, dir) => {
      m.version = '1.4.0';
      const csv = path.join(dir, 'acceptance/labels.csv');
      const [header, ...rows] = (await readFile(csv, 'utf8')).trim().split('\n');
      await writeFile(csv, [header, ...Array.from({ length: 10 }, () => rows).flat()].join('\n') + '\n');
    });
    const outcome = await rig.controller.tryVersion({ packageDir: pkg });

    expect(outcome).toMatchObject({ state: 'rejected', reason: 'acceptance_failed', version: '1.4.0' });
    expect(outcome.message).toMatch(
      /^acceptance tests failed: the tests did not finish within 0\.5 s \(models\.defect\.rollout\.acceptanceTimeoutSeconds\) and were stopped after \d+ inferences; /,
    );
    expect(rig.events.map((e) => e.state)).toEqual(['verifying', 'rejected']);
    expect(rig.events[1]!.evidence).toMatchObject({ acceptance: 'error' });
    expect(rig.controller.status().acceptance).toMatchObject({ version: '1.4.0', outcome: 'error' });
    expect(await counted(rig.metrics, 'error')).toBe(1);
    expect(rig.host.candidate()).toBeUndefined();
    expect(rig.host.current()!.manifest.version).toBe('1.0.0');

    // The controller is free again at once: the next version is tried without waiting for the old run.
    const next = await variant(workshop, 'defect-fp32-onnx', (m) => {
      m.version = '1.5.0';
    });
    const trial = rig.controller.tryVersion({ packageDir: next });
    await until('the next version to be tested', () =>
      rig!.events.find((e) => e.state === 'verifying' && e.to === '1.5.0'),
    );
    await rig.controller.close();
    expect(await trial).toMatchObject({ state: 'cancelled', version: '1.5.0' });
  }, 90_000);

  it('are cancelled when the controller closes, and the candidate is dropped', async () => {
    rig = await gateRig();
    const pkg = await variant(workshop, 'defect-fp32-onnx', (m) => {
      m.version = '1.3.0';
    });
    const trial = rig.controller.tryVersion({ packageDir: pkg });
    await until('the tests to start', () => rig!.events.find((e) => e.state === 'verifying'), 60_000);
    await rig.controller.close();
    expect(await trial).toMatchObject({ state: 'cancelled', version: '1.3.0' });
    expect(rig.events.map((e) => e.state)).toEqual(['verifying']);
    expect(rig.host.candidate()).toBeUndefined();
  }, 90_000);
});
