import { describe, expect, it } from 'vitest';
import type { FrameSample } from '../../runtime/pipeline/sample.js';
import { FrameScheduler, type DropReason } from '../../runtime/pipeline/scheduler.js';

const frame = (source: string, arrivedAt: number, id = `${source}@${arrivedAt}`): FrameSample => ({
  kind: 'frame',
  id,
  source,
  receivedAt: 0,
  arrivedAt,
  data: Buffer.alloc(0),
  origin: id,
});

function scheduler(budgetMs = 100) {
  const drops: Array<{ id: string; reason: DropReason }> = [];
  const s = new FrameScheduler(budgetMs, (f, reason) => drops.push({ id: f.id, reason }));
  return { s, drops };
}

describe('FrameScheduler', () => {
  it('keeps only the latest pending frame of a camera', () => {
    const { s, drops } = scheduler();
    s.offer(frame('cam1', 0));
    s.offer(frame('cam1', 10));
    s.offer(frame('cam1', 20));
    expect(s.size).toBe(1);
    expect(drops).toEqual([
      { id: 'cam1@0', reason: 'superseded' },
      { id: 'cam1@10', reason: 'superseded' },
    ]);
    expect(s.next(25)?.id).toBe('cam1@20');
    expect(s.next(25)).toBeUndefined();
  });

  it('bounds what waits to one frame per source and serves the oldest first', () => {
    const { s } = scheduler();
    s.offer(frame('cam2', 5));
    s.offer(frame('cam1', 3));
    s.offer(frame('cam3', 7));
    expect(s.size).toBe(3);
    expect([s.next(10)?.source, s.next(10)?.source, s.next(10)?.source]).toEqual(['cam1', 'cam2', 'cam3']);
  });

  it('drops a frame that has already waited past its budget', () => {
    const { s, drops } = scheduler(100);
    s.offer(frame('cam1', 0));
    expect(s.next(101)).toBeUndefined();
    expect(drops).toEqual([{ id: 'cam1@0', reason: 'deadline' }]);
  });

  it('drops a frame that cannot finish in time given recent service times, and takes the next that can', () => {
    const { s, drops } = scheduler(100);
    s.observeService(30, 1000);
    s.observeService(40, 1000);
    s.offer(frame('cam1', 920)); // waited 80 ms: 80 + 30 > 100
    s.offer(frame('cam2', 950)); // waited 50 ms: 50 + 30 <= 100
    expect(s.next(1000)?.id).toBe('cam2@950');
    expect(drops).toEqual([{ id: 'cam1@920', reason: 'deadline' }]);
  });

  it('takes one or two service times over the budget for an outlier and serves the next frame to measure again', () => {
    const { s, drops } = scheduler(100);
    s.observeService(150, 0); // a cold start far over budget
    s.offer(frame('cam1', 100));
    expect(s.next(101)?.id).toBe('cam1@100');
    s.observeService(125, 230); // a second slow one: still not confirmed
    s.offer(frame('cam1', 240));
    expect(s.next(241)?.id).toBe('cam1@240');
    expect(drops).toEqual([]);
  });

  it('drops on the estimate once three recent service times all exceed the budget, and forgets them later', () => {
    const { s, drops } = scheduler(100);
    for (const [ms, at] of [
      [150, 0],
      [140, 200],
      [160, 400],
    ] as const)
      s.observeService(ms, at);
    s.offer(frame('cam1', 500));
    expect(s.next(501)).toBeUndefined(); // a model slow again and again: cannot make it
    expect(drops.map((d) => d.reason)).toEqual(['deadline']);
    s.offer(frame('cam1', 6000));
    expect(s.estimateAt(6001)).toBe(0); // the observations are older than the window
    expect(s.next(6001)?.id).toBe('cam1@6000');
  });

  it('keeps a model that is slow every time confirmed across windows: one frame per expired window, not every frame late', () => {
    const { s, drops } = scheduler(100);
    let t = 0;
    let served = 0;
    // 0.5 frames/s for 60 s against a model that always takes 150 ms.
    for (let i = 0; i < 30; i++, t += 2_000) {
      s.offer(frame('cam1', t));
      const f = s.next(t + 1);
      if (f) {
        served++;
        s.observeService(150, t + 151);
      }
    }
    // The first three are measured (unconfirmed), then one per 5 s window at most.
    expect(served).toBeLessThanOrEqual(3 + Math.ceil(60_000 / 5_000));
    expect(drops.length).toBe(30 - served);
    expect(drops.length).toBeGreaterThan(10);
  });

  it('forgets a confirmed slow model once a frame makes its budget', () => {
    const { s } = scheduler(100);
    for (const at of [0, 200, 400]) s.observeService(150, at);
    expect(s.estimateAt(500)).toBe(150);
    s.observeService(20, 600);
    expect(s.estimateAt(700)).toBe(20);
  });

  it('estimates optimistically with the fastest recent service time', () => {
    const { s } = scheduler();
    for (const ms of [12, 8, 30, 9]) s.observeService(ms, 100);
    expect(s.estimateAt(100)).toBe(8);
  });

  it('hands back everything pending on drain', () => {
    const { s } = scheduler();
    s.offer(frame('a', 1));
    s.offer(frame('b', 2));
    expect(s.drain().map((f) => f.id)).toEqual(['a@1', 'b@2']);
    expect(s.size).toBe(0);
  });
});
