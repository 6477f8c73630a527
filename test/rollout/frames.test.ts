import { afterEach, describe, expect, it } from 'vitest';
import type { HostedEngine } from '../../runtime/model/host.js';
import { FIXTURE, frameRig, until, type FrameRig } from './harness.js';

// Rollouts of the defect model under a running frame pipeline: real engines in worker threads,
// real rendered frames. Frames keep flowing while versions are loaded, shadowed, swapped and
// rolled back. Where a test claims that no frame was dropped it feeds 10 frames per second: a
// modest rate at which only a stall of several hundred milliseconds could supersede a frame
// (decoding alone was seen to stall for tens of milliseconds on a busy 2-core machine).

let rig: FrameRig | undefined;

afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const FAST_SHADOW = { shadowSamples: 20, watchSamples: 20, minAgreement: 0.8, maxScoreShift: 0.2 };

describe('a good new version', () => {
  it('goes shadow -> promoted while frames flow, and not one frame is dropped for the swap', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { host, controller, pipeline, results, events } = rig;
    const old = host.current() as HostedEngine;
    rig.feed(100);
    await until('a few frames on 1.0.0', () => (results.length >= 5 ? true : undefined));

    const outcome = await controller.tryVersion({
      packageDir: FIXTURE('good'),
      version: '1.1.0',
      registered: { name: 'defect', alias: 'champion', version: '7' },
    });
    expect(outcome).toMatchObject({ state: 'promoted', version: '1.1.0' });
    expect(host.current()!.manifest.version).toBe('1.1.0');
    expect(host.candidate()).toBeUndefined();

    await until('the promotion to settle', () => (controller.status().watch?.settled ? true : undefined));
    await rig.stopFeeding();

    // Every frame offered was processed: none superseded, past its deadline, or failed at the swap.
    const snap = pipeline.snapshot();
    expect(snap.dropped).toEqual({});
    expect(snap.seen).toBe(rig.offered());
    expect(snap.processed).toBe(rig.offered());
    const versions = results.map((r) => r.model.version);
    const firstNew = versions.indexOf('1.1.0');
    expect(firstNew).toBeGreaterThan(0);
    // One switch, never back: results before it are the old version's, after it the new one's.
    expect(versions.slice(0, firstNew).every((v) => v === '1.0.0')).toBe(true);
    expect(versions.slice(firstNew).every((v) => v === '1.1.0')).toBe(true);
    // The replaced engine was closed once its last inference was done.
    await until('the old engine to close', () => (old.inner.closed ? true : undefined));

    expect(events.map((e) => e.state)).toEqual(['shadow', 'promoted']);
    const promoted = events[1]!;
    expect(promoted).toMatchObject({
      schema: 'vigil.rollout.v1',
      device: 'gw-rollout',
      model: 'defect',
      registered: { name: 'defect', alias: 'champion', version: '7' },
      from: '1.0.0',
      to: '1.1.0',
    });
    expect(promoted.reason).toBeUndefined();
    expect(promoted.evidence!.samples).toBe(20);
    expect(promoted.evidence!.agreement as number).toBeGreaterThanOrEqual(0.8);
    expect(promoted.evidence!.errors).toBe(0);

    const status = controller.status();
    expect(status).toMatchObject({
      state: 'promoted',
      active: { version: '1.1.0', package: FIXTURE('good') },
      previous: { version: '1.0.0' },
      watch: { version: '1.1.0', settled: true, samples: 20, errors: 0 },
      lastDecision: { state: 'promoted', to: '1.1.0' },
    });
    expect(status.candidate).toBeUndefined();
    expect(host.health()).toMatchObject({ version: '1.1.0', ready: true, package: FIXTURE('good') });
  });
});

describe('the swap itself', () => {
  it('serves a frame decoded for the old version with the new one, and lets the old one finish its own', async () => {
    // The slow fixture serves, so that one frame is surely inside the old engine at the swap
    // while a second, from another camera, has been decoded and waits for its turn.
    rig = await frameRig(FAST_SHADOW, 5_000, FIXTURE('slow'));
    const { host, results, pipeline } = rig;
    const old = host.current() as HostedEngine;
    await host.loadCandidate(FIXTURE('good'), '1.1.0');
    rig.offer('cam-a');
    rig.offer('cam-b');
    await until('a frame inside the old engine', () => (old.running > 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 10));
    await host.promoteCandidate();
    await rig.stopFeeding();
    expect(pipeline.snapshot()).toMatchObject({ seen: 2, processed: 2, dropped: {} });
    // Whichever frame reached the old engine first stays there; the other goes to the new one.
    expect(results.map((r) => r.model.version).sort()).toEqual(['1.1.0', '1.3.0']);
    expect(old.inner.closed).toBe(true);
  });
});

describe('bad versions are rejected with their reason and the current one keeps serving', () => {
  const cases: Array<{ fixture: string; reason: string; policy?: Record<string, number> }> = [
    { fixture: 'nan', reason: 'nan_output' },
    { fixture: 'slow', reason: 'too_slow', policy: { shadowSamples: 10, maxLatencyMs: 15 } },
    { fixture: 'broken', reason: 'load_failed' },
    { fixture: 'disagree', reason: 'disagreement' },
    { fixture: 'incompatible', reason: 'incompatible' },
  ];
  for (const c of cases) {
    it(`${c.fixture}: ${c.reason}`, async () => {
      rig = await frameRig({ ...FAST_SHADOW, ...c.policy });
      const { host, controller, events, results } = rig;
      rig.feed();
      const outcome = await controller.tryVersion({ packageDir: FIXTURE(c.fixture) });
      expect(outcome).toMatchObject({ state: 'rejected', reason: c.reason });
      expect(outcome.message.length).toBeGreaterThan(20);
      const last = events[events.length - 1]!;
      expect(last).toMatchObject({ state: 'rejected', reason: c.reason, from: '1.0.0' });
      expect(controller.status()).toMatchObject({
        state: 'rejected',
        active: { version: '1.0.0' },
        lastDecision: { reason: c.reason },
      });
      expect(host.candidate()).toBeUndefined();
      expect(host.current()!.manifest.version).toBe('1.0.0');
      if (c.reason === 'too_slow') {
        expect(last.evidence!.p95Ms as number).toBeGreaterThan(15);
        expect(last.evidence!.samples).toBe(10);
      }
      if (c.reason === 'load_failed' || c.reason === 'incompatible') {
        // Decided at load: it never reached shadow.
        expect(events.map((e) => e.state)).toEqual(['rejected']);
      } else {
        expect(events.map((e) => e.state)).toEqual(['shadow', 'rejected']);
      }
      // Shadow results are never acted on: every stored result is the current version's.
      const seen = results.length;
      await until('frames after the decision', () => (results.length >= seen + 3 ? true : undefined));
      await rig.stopFeeding();
      expect(new Set(results.map((r) => r.model.version))).toEqual(new Set(['1.0.0']));
      // Nothing the candidate did reached the live path (a busy CPU may still supersede a frame).
      const { dropped } = rig.pipeline.snapshot();
      expect(dropped.inference_error ?? 0).toBe(0);
      expect(dropped.model_unavailable ?? 0).toBe(0);
    });
  }

  it('a slow version skips inputs instead of queueing them, and is still judged by its latency', async () => {
    rig = await frameRig({ ...FAST_SHADOW, shadowSamples: 10, maxLatencyMs: 15 });
    rig.feed(20);
    const outcome = await rig.controller.tryVersion({ packageDir: FIXTURE('slow') });
    await rig.stopFeeding();
    expect(outcome).toMatchObject({ state: 'rejected', reason: 'too_slow' });
    expect(outcome.evidence!.skipped as number).toBeGreaterThan(0);
  });
});

describe('after a promotion', () => {
  it('a version that starts failing on live input is rolled back by itself', async () => {
    rig = await frameRig({ ...FAST_SHADOW, watchSamples: 50 });
    const { host, controller, events, results } = rig;
    // Promoted by hand before it has scored anything, so that only the watch can catch it.
    const trial = controller.tryVersion({ packageDir: FIXTURE('nan') });
    await until('the shadow to start', () => (controller.status().state === 'shadow' ? true : undefined));
    expect(controller.status()).toMatchObject({
      candidate: { version: '1.2.0' },
      shadow: { samples: 0, target: 20 },
    });
    expect(host.health().candidate).toMatchObject({ version: '1.2.0' });
    const promoted = await controller.promote();
    expect(promoted).toMatchObject({ state: 'promoted', version: '1.2.0', reason: 'manual' });
    expect(await trial).toMatchObject({ state: 'promoted', version: '1.2.0' });

    rig.feed();
    await until('the rollback', () => (controller.status().state === 'rolled_back' ? true : undefined));
    expect(host.current()!.manifest.version).toBe('1.0.0');
    const last = events[events.length - 1]!;
    expect(last).toMatchObject({ state: 'rolled_back', reason: 'regression', from: '1.2.0', to: '1.0.0' });
    expect(last.evidence!.nonFinite as number).toBeGreaterThan(0);
    expect(events.map((e) => e.state)).toEqual(['shadow', 'promoted', 'rolled_back']);

    // Frames flow on the restored version.
    const before = results.length;
    await until('frames on 1.0.0 again', () => (results.length >= before + 5 ? true : undefined));
    await rig.stopFeeding();
    expect(results.slice(before).every((r) => r.model.version === '1.0.0')).toBe(true);
    expect(rig.pipeline.snapshot().dropped.inference_error ?? 0).toBeGreaterThan(0);
    expect(controller.status()).toMatchObject({ active: { version: '1.0.0' }, previous: undefined });
  });

  it('manual promote of a package and manual rollback, each with reason manual', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { host, controller, events } = rig;
    rig.feed(100);
    const p = await controller.promote({ packageDir: FIXTURE('good') });
    expect(p).toMatchObject({ state: 'promoted', version: '1.1.0', reason: 'manual' });
    expect(host.current()!.manifest.version).toBe('1.1.0');
    const r = await controller.rollback();
    expect(r).toMatchObject({ state: 'rolled_back', version: '1.0.0', reason: 'manual' });
    expect(host.current()!.manifest.version).toBe('1.0.0');
    expect(events.map((e) => [e.state, e.reason, e.from, e.to])).toEqual([
      ['promoted', 'manual', '1.0.0', '1.1.0'],
      ['rolled_back', 'manual', '1.1.0', '1.0.0'],
    ]);
    // Nothing earlier to go back to, and nothing in shadow to promote.
    expect(await controller.rollback()).toMatchObject({ state: 'refused' });
    expect(await controller.promote()).toMatchObject({ state: 'refused' });
    await rig.stopFeeding();
    expect(rig.pipeline.snapshot().dropped).toEqual({});
    expect(rig.pipeline.snapshot().processed).toBe(rig.offered());
  });
});

describe('the registry follower', () => {
  it('sets downloading and verifying, and fails a version before it is tried', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { controller, events } = rig;
    const registered = { name: 'defect', alias: 'champion', version: '8' };
    controller.setState('downloading', { version: '8', registered });
    expect(controller.status()).toMatchObject({
      state: 'downloading',
      candidate: { version: '8', registered },
    });
    controller.setState('verifying', { version: '8', registered });
    const failed = controller.fail(
      { version: '8', registered },
      'sha256_mismatch',
      'model.onnx does not match',
    );
    expect(failed).toMatchObject({ state: 'rejected', reason: 'sha256_mismatch' });
    expect(events.map((e) => [e.state, e.to, e.reason])).toEqual([
      ['downloading', '8', undefined],
      ['verifying', '8', undefined],
      ['rejected', '8', 'sha256_mismatch'],
    ]);
    expect(events.every((e) => e.registered?.version === '8')).toBe(true);
    expect(controller.status()).toMatchObject({
      state: 'rejected',
      active: { version: '1.0.0' },
      candidate: undefined,
      lastDecision: { reason: 'sha256_mismatch', message: 'model.onnx does not match' },
    });
    // The same package as the one serving is no new version.
    expect(await controller.tryVersion({ packageDir: rig.host.packageDir })).toMatchObject({
      state: 'unchanged',
      version: '1.0.0',
    });
  });
});

describe('a shadow without enough inputs', () => {
  it('is decided at shadowMaxSeconds and rejected when fewer than 10 inputs came', async () => {
    rig = await frameRig({ ...FAST_SHADOW, shadowMaxSeconds: 0.5 });
    const outcome = await rig.controller.tryVersion({ packageDir: FIXTURE('good') });
    expect(outcome).toMatchObject({ state: 'rejected', version: '1.1.0' });
    expect(outcome.message).toMatch(/only 0 inputs/);
    expect(rig.host.current()!.manifest.version).toBe('1.0.0');
  });

  it('is cancelled when a newer version comes before it is decided', async () => {
    rig = await frameRig(FAST_SHADOW);
    const first = rig.controller.tryVersion({ packageDir: FIXTURE('disagree') });
    await until('the shadow to start', () =>
      rig!.controller.status().state === 'shadow' ? true : undefined,
    );
    const second = rig.controller.tryVersion({ packageDir: FIXTURE('good') });
    expect(await first).toMatchObject({ state: 'cancelled', version: '1.5.0' });
    rig.feed();
    expect(await second).toMatchObject({ state: 'promoted', version: '1.1.0' });
  });
});
