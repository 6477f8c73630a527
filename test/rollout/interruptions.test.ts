import { afterEach, describe, expect, it } from 'vitest';
import type { HostedEngine } from '../../runtime/model/host.js';
import { FIXTURE, frameRig, until, type FrameRig } from './harness.js';

// A trial interrupted by something else: the serving engine crashing, a newer version whose load
// was queued behind it, the host shutting down. Real engines and frames, as in frames.test.ts.

let rig: FrameRig | undefined;

afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const FAST_SHADOW = { shadowSamples: 20, watchSamples: 20, minAgreement: 0.8, maxScoreShift: 0.2 };

/** Kills the worker thread of an engine the way a crash in native code would end it. */
async function crash(engine: HostedEngine): Promise<void> {
  const inner = engine.inner as unknown as { worker: { worker: { terminate(): Promise<number> } } };
  await inner.worker.worker.terminate();
}

describe('a new version offered while the serving engine reloads after a crash', () => {
  it('waits for the reload and goes through the shadow, never promoted unchecked', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { host, controller, events } = rig;
    await crash(host.current() as HostedEngine);
    await until('the failure to show', () => (host.current() === undefined ? true : undefined));
    host.supervise();
    expect(host.current()).toBeUndefined();
    rig.feed();
    const outcome = await controller.tryVersion({ packageDir: FIXTURE('good') });
    expect(outcome).toMatchObject({ state: 'promoted', version: '1.1.0' });
    expect(outcome.evidence).toMatchObject({ samples: 20 });
    expect(events.map((e) => [e.state, e.from, e.to])).toEqual([
      ['shadow', undefined, '1.1.0'],
      ['promoted', '1.0.0', '1.1.0'],
    ]);
    expect(host.health().restarts).toBe(1);
    expect(controller.status()).toMatchObject({ previous: { version: '1.0.0' } });
  });
});

describe('a trial superseded before its shadow started', () => {
  it('is cancelled when the newer one starts, and its timer does not cut the newer shadow short', async () => {
    // A long shadowMaxSeconds: before the fix the older trial ended only at its timer.
    rig = await frameRig({ ...FAST_SHADOW, shadowMaxSeconds: 60 });
    const { controller, host } = rig;
    const order: string[] = [];
    // Both asked at once: the second one's load is queued behind the first's.
    const first = controller.tryVersion({ packageDir: FIXTURE('disagree') }).then((o) => {
      order.push('first');
      return o;
    });
    const second = controller.tryVersion({ packageDir: FIXTURE('good') }).then((o) => {
      order.push('second');
      return o;
    });
    await until('the newer shadow', () =>
      controller.status().candidate?.version === '1.1.0' ? true : undefined,
    );
    expect(await first).toMatchObject({ state: 'cancelled', version: '1.5.0' });
    expect(host.shadow()?.version).toBe('1.1.0');
    rig.feed();
    expect(await second).toMatchObject({ state: 'promoted', version: '1.1.0' });
    expect(order).toEqual(['first', 'second']);
    expect(rig.events.map((e) => [e.state, e.to])).toEqual([
      ['shadow', '1.5.0'],
      ['shadow', '1.1.0'],
      ['promoted', '1.1.0'],
    ]);
  });
});

describe('a host shutting down', () => {
  it('cancels a trial, a promotion and a rollback without rejecting or rolling back anything', async () => {
    rig = await frameRig(FAST_SHADOW);
    const { host, controller, events } = rig;
    await controller.promote({ packageDir: FIXTURE('good') });
    events.length = 0;
    await host.close();
    expect(await controller.tryVersion({ packageDir: FIXTURE('disagree') })).toMatchObject({
      state: 'cancelled',
    });
    expect(await controller.promote({ packageDir: FIXTURE('disagree') })).toMatchObject({
      state: 'cancelled',
    });
    expect(await controller.rollback()).toMatchObject({ state: 'cancelled' });
    expect(events).toEqual([]);
    expect(controller.status()).toMatchObject({ state: 'promoted', previous: { version: '1.0.0' } });
  });
});
