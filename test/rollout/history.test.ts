import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CURRENT, FIXTURE, frameRig, until, type FrameRig } from './harness.js';

// Rollback history: which version a rollback returns to, what its event names, and what it
// does when it races a shadow or another rollback. Real engines, as in frames.test.ts; nothing
// is fed unless a test needs inputs, since a promotion and a rollback need none.

let rig: FrameRig | undefined;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-rollout-history-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const FAST_SHADOW = { shadowSamples: 20, watchSamples: 20, minAgreement: 0.8, maxScoreShift: 0.2 };
const reg = (version: string) => ({ name: 'defect', alias: 'champion', version });

describe('a rollback event', () => {
  it('names in registered the version rolled back from, each time, down the history', async () => {
    rig = await frameRig(FAST_SHADOW, 1000, CURRENT, {
      active: { packageDir: CURRENT, registered: reg('6') },
    });
    const { controller, events } = rig;
    expect(controller.status().active).toEqual({ version: '1.0.0', package: CURRENT, registered: reg('6') });
    await controller.promote({ packageDir: FIXTURE('good'), registered: reg('7') });
    await controller.promote({ packageDir: FIXTURE('disagree'), registered: reg('8') });
    expect(await controller.rollback()).toMatchObject({ state: 'rolled_back', version: '1.1.0' });
    expect(await controller.rollback()).toMatchObject({ state: 'rolled_back', version: '1.0.0' });
    expect(events.map((e) => [e.state, e.from, e.to, e.registered?.version])).toEqual([
      ['promoted', '1.0.0', '1.1.0', '7'],
      ['promoted', '1.1.0', '1.5.0', '8'],
      ['rolled_back', '1.5.0', '1.1.0', '8'],
      ['rolled_back', '1.1.0', '1.0.0', '7'],
    ]);
    // Back on the version named at start, with its registry ref.
    expect(controller.status().active).toEqual({ version: '1.0.0', package: CURRENT, registered: reg('6') });
  });
});

describe('history given at start (after a restart)', () => {
  it('is rolled back to, capped at historySize, skipping a version whose folder was pruned', async () => {
    const pruned = path.join(dir, 'defect-1.0.5-pruned');
    rig = await frameRig(FAST_SHADOW, 1000, FIXTURE('good'), {
      history: [
        { packageDir: CURRENT, registered: reg('5') },
        { packageDir: FIXTURE('disagree'), registered: reg('6') },
        { packageDir: pruned, version: '1.0.5', registered: reg('6.5') },
      ],
      historySize: 2,
      active: { packageDir: FIXTURE('good'), version: '1.1.0', registered: reg('7') },
    });
    const { controller, events, host } = rig;
    // The pruned folder is not offered as what a rollback would return to.
    expect(controller.status().previous).toEqual({ version: '1.5.0', package: FIXTURE('disagree') });
    const back = await controller.rollback();
    expect(back).toMatchObject({ state: 'rolled_back', version: '1.5.0', reason: 'manual' });
    expect(host.current()!.manifest.version).toBe('1.5.0');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      state: 'rolled_back',
      from: '1.1.0',
      to: '1.5.0',
      registered: reg('7'),
    });
    // The oldest (1.0.0) was beyond historySize: nothing left, and the refusal says what to do.
    const none = await controller.rollback();
    expect(none).toMatchObject({ state: 'refused', version: '1.5.0' });
    expect(none.message).toMatch(/no earlier version on this gateway/);
    expect(none.message).toMatch(/point the registry alias/);
    expect(none.message).toMatch(/keepVersions/);
    expect(host.current()!.manifest.version).toBe('1.5.0');
    expect(events).toHaveLength(1);
  });
});

describe('a manual rollback', () => {
  it('during a shadow only rejects the version in shadow; the serving version stays', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { controller, events, host } = rig;
    await controller.promote({ packageDir: FIXTURE('good') });
    const trial = controller.tryVersion({ packageDir: FIXTURE('disagree') });
    await until('the shadow to start', () => (controller.status().state === 'shadow' ? true : undefined));
    const r = await controller.rollback();
    expect(r).toMatchObject({ state: 'rejected', reason: 'manual', version: '1.5.0' });
    expect(r.message).toMatch(/version 1\.1\.0 keeps serving/);
    expect(await trial).toMatchObject({ state: 'rejected', reason: 'manual' });
    expect(host.current()!.manifest.version).toBe('1.1.0');
    expect(host.candidate()).toBeUndefined();
    expect(events.map((e) => [e.state, e.reason, e.to])).toEqual([
      ['promoted', 'manual', '1.1.0'],
      ['shadow', undefined, '1.5.0'],
      ['rejected', 'manual', '1.5.0'],
    ]);
    expect(controller.status()).toMatchObject({ previous: { version: '1.0.0' } });
  });

  it('racing the automatic rollback of the same regression rolls back one version, not two', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { controller, events, host } = rig;
    await controller.promote({ packageDir: FIXTURE('good'), registered: reg('7') });
    await controller.promote({ packageDir: FIXTURE('disagree'), registered: reg('8') });
    // A NaN on live input is a regression at once: its rollback is queued, then a person asks too.
    host.live()!.observe({ pipeline: 'inspection', version: '1.5.0', outcome: 'nan', overBudget: false });
    const manual = await controller.rollback();
    expect(manual).toMatchObject({ state: 'unchanged', version: '1.1.0' });
    expect(host.current()!.manifest.version).toBe('1.1.0');
    expect(events.filter((e) => e.state === 'rolled_back')).toEqual([
      expect.objectContaining({ reason: 'regression', from: '1.5.0', to: '1.1.0', registered: reg('8') }),
    ]);
    // Two requests made against the same version: the second finds it already replaced.
    const [a, b] = await Promise.all([controller.rollback(), controller.rollback()]);
    expect(a).toMatchObject({ state: 'rolled_back', version: '1.0.0', reason: 'manual' });
    expect(b).toMatchObject({ state: 'unchanged', version: '1.0.0' });
    expect(host.current()!.manifest.version).toBe('1.0.0');
  });
});
