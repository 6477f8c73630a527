import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RolloutPolicy } from '../../runtime/config/registry.js';
import { PipelineConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { ModelHost } from '../../runtime/model/host.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import type { Result } from '../../runtime/pipeline/result.js';
import { TelemetryPipeline } from '../../runtime/pipeline/telemetry-pipeline.js';
import { RolloutController } from '../../runtime/rollout/controller.js';
import type { LiveObservation, ShadowObservation } from '../../runtime/rollout/shadow.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { OPTIONS, ROOT, until } from './harness.js';

// Rollout of a telemetry model under a running telemetry pipeline: the mean-rul fixture (RUL =
// mean of the normalised 4-cycle window of tags a, b, c) in its engine's worker, and new versions
// of it made by rewriting its vigil.json (the model file and its sha256 stay the same).

const MEAN_RUL = path.join(ROOT, 'test/fixtures/telemetry-models/mean-rul');
const T0 = Date.UTC(2025, 0, 1);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-rollout-telemetry-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A copy of mean-rul with another version and, optionally, other normalisation or alert settings. */
async function version(
  v: string,
  normalize?: { mean: number[]; std: number[] },
  alert?: { raise: number; clear: number },
): Promise<string> {
  const dest = path.join(dir, `mean-rul-${v}`);
  await cp(MEAN_RUL, dest, { recursive: true });
  const m = JSON.parse(await readFile(path.join(dest, 'vigil.json'), 'utf8'));
  m.version = v;
  if (normalize) m.preprocessing.normalize = normalize;
  if (alert) Object.assign(m.postprocessing.alert, alert);
  await writeFile(path.join(dest, 'vigil.json'), JSON.stringify(m, null, 2));
  return dest;
}

function cycleBatch(cycle: number, value: number): Reading[] {
  const t = T0 + cycle * 60_000;
  const base = { source: 'plant', asset: 'unit1', quality: 'good' as const, sourceTime: t, receivedAt: t };
  return [
    { ...base, tag: 'a', value },
    { ...base, tag: 'b', value },
    { ...base, tag: 'c', value },
    { ...base, tag: 'cycle', value: cycle },
  ];
}

interface Rig {
  host: ModelHost;
  pipeline: TelemetryPipeline;
  controller: RolloutController;
  results: Result[];
  events: RolloutEvent[];
  feed(): void;
  stopFeeding(): Promise<void>;
  close(): Promise<void>;
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

async function telemetryRig(
  policy: Partial<RolloutPolicy>,
  pipelineConfig: Record<string, unknown> = {},
  /** Runs once the model serves, before the pipeline exists. */
  beforePipeline?: (host: ModelHost) => Promise<void>,
): Promise<Rig> {
  const metrics = new Metrics({ processMetrics: false });
  const log = silentLogger();
  const host = new ModelHost('rul', MEAN_RUL, OPTIONS, metrics, log);
  if (!(await host.load())) throw new Error('mean-rul did not load');
  await beforePipeline?.(host);
  const results: Result[] = [];
  const events: RolloutEvent[] = [];
  const pipeline = new TelemetryPipeline({
    name: 'engines',
    config: PipelineConfig.parse({ sources: ['plant'], model: 'rul', budgetMs: 1000, ...pipelineConfig }),
    deviceId: 'gw-t',
    engine: () => host.current(),
    sink: { saveResult: (r) => void results.push(r) },
    publisher: { publishAlert: async () => ({ ackMs: 0 }), publishResult() {} },
    metrics,
    log,
    rollout: host,
  });
  const controller = new RolloutController({
    model: 'rul',
    deviceId: 'gw-t',
    host,
    policy: RolloutPolicy.parse(policy),
    budgetMs: 1000,
    log,
    onEvent: (e) => events.push(e),
  });
  let cycle = 0;
  let timer: NodeJS.Timeout | undefined;
  const r: Rig = {
    host,
    pipeline,
    controller,
    results,
    events,
    feed() {
      timer ??= setInterval(() => pipeline.offer(cycleBatch(++cycle, 80)), 15);
    },
    async stopFeeding() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await pipeline.idle();
    },
    async close() {
      await r.stopFeeding();
      await controller.close();
      await pipeline.stop();
      await host.close();
    },
  };
  return r;
}

describe('a new version of a telemetry model', () => {
  it('is scored in shadow on the same windows, promoted, and takes over without a window lost', async () => {
    rig = await telemetryRig({ shadowSamples: 10, watchSamples: 10 });
    const { controller, pipeline, results, events } = rig;
    rig.feed();
    const outcome = await controller.tryVersion({ packageDir: await version('2') });
    expect(outcome).toMatchObject({ state: 'promoted', version: '2' });
    expect(outcome.evidence).toMatchObject({ samples: 10, agreement: 1, scoreShift: 0, errors: 0 });
    await until('the promotion to settle', () => (controller.status().watch?.settled ? true : undefined));
    await rig.stopFeeding();

    const snap = pipeline.snapshot();
    // Same preprocessing: the windows go on across the swap, none failed or found no model.
    expect(snap.windowsSkipped.inference_error ?? 0).toBe(0);
    expect(snap.windowsSkipped.model_unavailable ?? 0).toBe(0);
    expect(snap.windowsScored).toBe(results.length);
    expect(snap.model).toEqual({ name: 'mean-rul', version: '2' });
    const versions = results.map((r) => r.model.version);
    const firstNew = versions.indexOf('2');
    expect(firstNew).toBeGreaterThan(0);
    expect(versions.slice(firstNew).every((v) => v === '2')).toBe(true);
    expect(results.every((r) => r.score === 80)).toBe(true);
    expect(events.map((e) => e.state)).toEqual(['shadow', 'promoted']);
  });

  it('with other normalisation statistics gets the same window re-normalised, and is judged on its scores', async () => {
    rig = await telemetryRig({ shadowSamples: 10 });
    const { host, controller } = rig;
    // Raw 80 normalised with mean 10, std 2 is 35: the candidate reads the window as 35.
    const renormalised = await version('3', { mean: [10, 10, 10], std: [2, 2, 2] });
    await host.loadCandidate(renormalised, '3');
    const seen: ShadowObservation[] = [];
    host.startShadow({ observe: (o) => void seen.push(o), skipped: () => undefined });
    rig.feed();
    await until('shadow results', () => (seen.length >= 3 ? true : undefined));
    await rig.stopFeeding();
    await host.shadow()?.settled();
    host.stopShadow();
    for (const o of seen) {
      expect(o).toMatchObject({
        kind: 'telemetry',
        pipeline: 'engines',
        current: { version: '1', label: 'rul', score: 80, alert: false },
        candidate: { version: '3', nonFinite: false, verdict: { label: 'rul', alert: false } },
        scoreScale: 100,
      });
      expect(o.candidate.verdict!.score).toBeCloseTo(35, 4);
    }
    await host.dropCandidate();

    // Through the controller: same alert decisions, but the mean RUL moves by 45 % of the cap.
    rig.feed();
    const outcome = await controller.tryVersion({ packageDir: renormalised });
    expect(outcome).toMatchObject({ state: 'rejected', reason: 'disagreement', version: '3' });
    expect(outcome.evidence).toMatchObject({ agreement: 1, scoreShift: -0.45 });
    expect(host.current()!.manifest.version).toBe('1');
  });

  describe('whose alert settings the pipeline overrides cannot work with', () => {
    // mean-rul alerts below raise 30, clearing at 40; the pipeline moves clear to 45. A version
    // raising at 50 would keep clear 45 below its raise: the pipeline could not use it.
    const OVERRIDE = { alert: { clear: 45 } };

    it('is refused as incompatible before it is tried', async () => {
      rig = await telemetryRig({ shadowSamples: 10 }, OVERRIDE);
      const { controller, host, events, pipeline } = rig;
      rig.feed();
      const outcome = await controller.tryVersion({
        packageDir: await version('4', undefined, { raise: 50, clear: 60 }),
      });
      expect(outcome).toMatchObject({ state: 'rejected', reason: 'incompatible', version: '4' });
      expect(outcome.message).toMatch(/pipeline engines cannot use its alert settings/);
      expect(outcome.message).toMatch(/pipelines\.engines: alert clear 45 is below raise 50/);
      expect(events.map((e) => [e.state, e.reason])).toEqual([['rejected', 'incompatible']]);
      expect(host.current()!.manifest.version).toBe('1');
      expect(host.candidate()).toBeUndefined();
      await rig.stopFeeding();
      expect(pipeline.snapshot().windowsSkipped.model_unavailable ?? 0).toBe(0);
    });

    it('once serving anyway, reports every skipped window to the watch as unavailable', async () => {
      const conflicting = await version('5', undefined, { raise: 50, clear: 60 });
      // Loaded before the pipeline registered its check, as no rollout would, to reach the
      // pipeline's own guard.
      rig = await telemetryRig({}, OVERRIDE, async (host) => {
        await host.loadCandidate(conflicting, '5');
      });
      const { host, pipeline, results } = rig;
      const seen: LiveObservation[] = [];
      host.watch({ observe: (o) => void seen.push(o) });
      await host.promoteCandidate();
      rig.feed();
      await until('skipped windows reported', () => (seen.length >= 5 ? true : undefined));
      await rig.stopFeeding();
      expect(results).toEqual([]);
      expect(seen.every((o) => o.outcome === 'unavailable' && o.version === '5')).toBe(true);
      expect(pipeline.snapshot().windowsSkipped.model_unavailable).toBe(seen.length);
    });
  });
});
