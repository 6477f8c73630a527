import { describe, expect, it } from 'vitest';
import type { TelemetryPreprocessing } from '../../runtime/model/manifest.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { MAX_TRACE_IDS, Windower, type TelemetryWindow } from '../../runtime/telemetry/window.js';

// TelemetryWindow.traceIds: the trace ids of the messages whose values make the window's last
// step (a held value's included, and the counter reading's), distinct, at most MAX_TRACE_IDS.

const T0 = Date.UTC(2025, 0, 1);

function pre(tags: string[], over: Partial<TelemetryPreprocessing> = {}): TelemetryPreprocessing {
  return {
    type: 'telemetry',
    tags,
    axis: { type: 'time', stepSeconds: 1 },
    window: 2,
    stride: 1,
    holdSteps: 1,
    normalize: { mean: tags.map(() => 0), std: tags.map(() => 1) },
    features: 'window',
    ...over,
  };
}

function r(tag: string, value: number, ms: number, traceId?: string): Reading {
  return {
    source: 'src',
    asset: 'm1',
    tag,
    value,
    quality: 'good',
    sourceTime: T0 + ms,
    receivedAt: T0 + ms + 5,
    ...(traceId !== undefined ? { traceId } : {}),
  };
}

function push(w: Windower, batches: Reading[][]): TelemetryWindow[] {
  return batches.flatMap((b) => w.push(b).windows);
}

describe('trace ids of a window', () => {
  it('are the ids of the messages that made the last step, one per message, in tag order', () => {
    const w = new Windower({ preprocessing: pre(['a', 'b', 'c']) });
    const windows = push(w, [
      [r('a', 1, 100, 'm0'), r('b', 1, 100, 'm0'), r('c', 1, 100, 'm0')],
      // Step 1: a and c in one message, b in another; then step 2 closes step 1.
      [r('a', 2, 1100, 'm1'), r('c', 2, 1100, 'm1')],
      [r('b', 2, 1200, 'm2')],
      [r('a', 3, 2100, 'm3'), r('b', 3, 2100, 'm3'), r('c', 3, 2100, 'm3')],
    ]);
    expect(windows.map((x) => [x.axisEnd - T0 / 1000, x.traceIds])).toEqual([[1, ['m1', 'm2']]]);
  });

  it('name the message a held value came from, and the latest reading of a tag in a step wins', () => {
    const w = new Windower({ preprocessing: pre(['a', 'b']) });
    const windows = push(w, [
      [r('a', 1, 100, 'm0'), r('b', 1, 100, 'm0')],
      // Step 1: b is not sent, so its value from m0 is held; a sent twice, the later one counts.
      [r('a', 2, 1100, 'early'), r('a', 2, 1900, 'late')],
      [r('a', 3, 2100, 'm3'), r('b', 3, 2100, 'm3')],
    ]);
    expect(windows[0]!.traceIds).toEqual(['late', 'm0']);
  });

  it('include the counter reading that placed the step on a counter axis', () => {
    const w = new Windower({
      preprocessing: pre(['a'], { axis: { type: 'counter', tag: 'cycle', step: 1 } }),
    });
    const windows = push(w, [
      [r('cycle', 1, 0, 'c1'), r('a', 1, 0, 'c1')],
      // The counter and the value in separate messages of the same moment.
      [r('cycle', 2, 1000, 'counter-2')],
      [r('a', 2, 1000, 'value-2')],
    ]);
    expect(windows.map((x) => x.traceIds)).toEqual([['counter-2', 'value-2']]);
  });

  it(`keep at most ${MAX_TRACE_IDS}, each once; readings without one give an empty list`, () => {
    const tags = Array.from({ length: 20 }, (_, i) => `t${i}`);
    const w = new Windower({ preprocessing: pre(tags) });
    const windows = push(w, [
      tags.map((t) => r(t, 0, 100, 'first')),
      tags.map((t, i) => r(t, 1, 1100, `m${i % 18}`)),
      tags.map((t) => r(t, 2, 2100)),
      tags.map((t) => r(t, 3, 3100)),
    ]);
    expect(windows[0]!.traceIds).toEqual(Array.from({ length: MAX_TRACE_IDS }, (_, i) => `m${i}`));
    // The window ending at step 2: its readings carried no trace id (a replay from a file).
    expect(windows[1]!.traceIds).toEqual([]);
  });
});
