import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TelemetryPreprocessing } from '../../runtime/model/manifest.js';
import type { Reading, ReadingQuality } from '../../runtime/telemetry/reading.js';
import { Windower, type TelemetryWindow, type WindowOutcome } from '../../runtime/telemetry/window.js';

const T0 = Date.UTC(2025, 0, 1);

function pre(over: Partial<TelemetryPreprocessing> = {}): TelemetryPreprocessing {
  return {
    type: 'telemetry',
    tags: ['a', 'b'],
    axis: { type: 'time', stepSeconds: 1 },
    window: 3,
    stride: 1,
    holdSteps: 1,
    normalize: { mean: [0, 0], std: [1, 1] },
    features: 'window',
    ...over,
  };
}

const counterAxis = { type: 'counter', tag: 'cycle', step: 1 } as const;

function r(
  tag: string,
  value: number | null,
  ms: number,
  o: { asset?: string; quality?: ReadingQuality; source?: string; sourceTime?: boolean } = {},
): Reading {
  return {
    source: o.source ?? 'src',
    asset: o.asset ?? 'm1',
    tag,
    value,
    quality: o.quality ?? 'good',
    sourceTime: o.sourceTime === false ? null : T0 + ms,
    receivedAt: T0 + ms + 5,
  };
}

/** Windows' rows as plain arrays: one [a, b] per step. */
function rows(w: TelemetryWindow): number[][] {
  const n = w.shape[2]!;
  const out: number[][] = [];
  for (let t = 0; t < w.shape[1]!; t++) out.push(Array.from(w.tensor.subarray(t * n, (t + 1) * n)));
  return out;
}

/** Pushes batches one by one and gathers everything that came out. */
function run(w: Windower, batches: Reading[][]): WindowOutcome {
  const all: WindowOutcome = { windows: [], skipped: {}, dropped: {}, resets: [] };
  for (const b of batches) {
    const o = w.push(b);
    all.windows.push(...o.windows);
    for (const [k, v] of Object.entries(o.skipped))
      all.skipped[k as 'gap'] = (all.skipped[k as 'gap'] ?? 0) + v;
    for (const [k, v] of Object.entries(o.dropped))
      all.dropped[k as 'duplicate'] = (all.dropped[k as 'duplicate'] ?? 0) + v;
    all.resets.push(...o.resets);
  }
  return all;
}

/** One batch per step: both tags at the step's start + offset, with the given values. */
function steps(
  from: number,
  to: number,
  value: (step: number, tag: string) => number,
  offset = 200,
): Reading[][] {
  const out: Reading[][] = [];
  for (let k = from; k <= to; k++)
    out.push([r('a', value(k, 'a'), k * 1000 + offset), r('b', value(k, 'b'), k * 1000 + offset)]);
  return out;
}

describe('Windower on a time axis', () => {
  it('aligns tags arriving at different rates: the last reading of a step is its value', () => {
    const w = new Windower({ preprocessing: pre() });
    const batches: Reading[][] = [];
    for (let k = 0; k < 5; k++) {
      // a at 10 Hz (value = ms since T0), b once a second in the middle of the step.
      const batch: Reading[] = [];
      for (let i = 0; i < 10; i++) batch.push(r('a', k * 1000 + i * 100, k * 1000 + i * 100));
      batch.push(r('b', 100 + k, k * 1000 + 500));
      batches.push(batch);
    }
    const out = run(w, batches);
    // Step 4 is still open (nothing newer arrived): windows end at steps 2 and 3.
    expect(out.windows.map((x) => [x.axisStart, x.axisEnd])).toEqual([
      [T0 / 1000, T0 / 1000 + 2],
      [T0 / 1000 + 1, T0 / 1000 + 3],
    ]);
    expect(rows(out.windows[0]!)).toEqual([
      [900, 100],
      [1900, 101],
      [2900, 102],
    ]);
    expect(out.windows[0]!.shape).toEqual([1, 3, 2]);
    expect(out.windows[0]!.endTime).toBe(T0 + 2900);
    expect(Array.from(out.windows[1]!.lastValues)).toEqual([3900, 103]);
    expect(out.skipped).toEqual({});
    // flush() makes the open step final: the window ending at step 4.
    const last = w.flush();
    expect(last.windows.map((x) => x.axisEnd)).toEqual([T0 / 1000 + 4]);
    expect(w.stats()).toMatchObject({ windows: 3, resets: 0 });
  });

  it('uses the receive time when a reading has no source time', () => {
    const w = new Windower({ preprocessing: pre({ window: 1 }) });
    const out = run(w, [
      [r('a', 1, 0, { sourceTime: false }), r('b', 2, 100, { sourceTime: false })],
      [r('a', 3, 1000, { sourceTime: false }), r('b', 4, 1000, { sourceTime: false })],
    ]);
    expect(out.windows.map(rows)).toEqual([[[1, 2]]]);
    expect(out.windows[0]!.endTime).toBe(T0 + 105);
  });

  it('normalises per tag and orders a batch by time', () => {
    const w = new Windower({
      preprocessing: pre({ window: 2, normalize: { mean: [10, 100], std: [2, 50] } }),
    });
    // One batch, readings shuffled: they are placed in time order.
    const out = run(w, [
      [
        r('b', 200, 1500),
        r('a', 14, 1200),
        r('b', 150, 500),
        r('a', 12, 100),
        r('a', 0, 2100),
        r('b', 0, 2100),
      ],
    ]);
    expect(out.windows.map(rows)).toEqual([
      [
        [1, 1],
        [2, 2],
      ],
    ]);
    expect(out.dropped).toEqual({});
  });

  it('holds a missing tag for holdSteps, then skips the windows as stale, never zero-filling', () => {
    // b reports every other step only.
    const batches: Reading[][] = [];
    for (let k = 0; k < 8; k++) {
      const batch = [r('a', k, k * 1000)];
      if (k % 2 === 0) batch.push(r('b', 10 * k, k * 1000));
      batches.push(batch);
    }
    const held = run(new Windower({ preprocessing: pre({ holdSteps: 1 }) }), batches);
    expect(held.windows.map(rows)[0]).toEqual([
      [0, 0],
      [1, 0],
      [2, 20],
    ]);
    expect(held.windows).toHaveLength(5);
    expect(held.skipped).toEqual({});

    const strict = run(new Windower({ preprocessing: pre({ holdSteps: 0 }) }), batches);
    expect(strict.windows).toHaveLength(0);
    expect(strict.skipped).toEqual({ stale: 5 });

    // A tag that never reported makes every window stale.
    const never = run(
      new Windower({ preprocessing: pre() }),
      steps(0, 5, (k) => k).map((b) => b.slice(0, 1)),
    );
    expect(never.windows).toHaveLength(0);
    expect(never.skipped).toEqual({ stale: 3 });
  });

  it('a pipeline override of holdSteps keeps unchanged values of report-by-exception sources', () => {
    const batches = [...steps(0, 1, (k) => k), [r('a', 5, 5000)], [r('a', 6, 6000)]];
    // Steps 2-4 are empty: 2 holds the values of 1, 3 and 4 are beyond the hold.
    expect(run(new Windower({ preprocessing: pre() }), batches).skipped).toEqual({ gap: 3 });
    const patient = run(new Windower({ preprocessing: pre(), holdSteps: 10 }), batches);
    expect(patient.skipped).toEqual({});
    expect(patient.windows.map((x) => rows(x).map((row) => row[1]))).toEqual([
      [0, 1, 1],
      [1, 1, 1],
      [1, 1, 1],
      [1, 1, 1],
    ]);
  });

  it('counts windows across a silence as gaps, the same whether short or day-long', () => {
    const short = run(new Windower({ preprocessing: pre() }), [
      ...steps(0, 4, (k) => k),
      ...steps(9, 14, (k) => k),
    ]);
    // Steps 0-4 reported; 5 is held; 6-8 are empty; 9-13 final. Windows end at 2..13: those
    // ending at 6..10 contain an empty step.
    expect(short.skipped).toEqual({ gap: 5 });
    expect(short.windows.map((x) => x.axisEnd - T0 / 1000)).toEqual([2, 3, 4, 5, 11, 12, 13]);

    // A day of silence at one-second steps, with a stride: counted without visiting every step.
    const w = new Windower({ preprocessing: pre({ stride: 7 }) });
    const long = run(w, [...steps(0, 4, (k) => k), ...steps(86_400, 86_420, (k) => k)]);
    let gaps = 0;
    const scored: number[] = [];
    for (let e = 2; e <= 86_419; e += 7) {
      if (e >= 6 && e - 2 <= 86_399) gaps++;
      else scored.push(e);
    }
    expect(long.skipped).toEqual({ gap: gaps });
    expect(long.windows.map((x) => x.axisEnd - T0 / 1000)).toEqual(scored);
    expect(scored.length).toBeGreaterThan(2);
  });

  it('drops readings older than the current step, and keeps the latest reading of a step', () => {
    const w = new Windower({ preprocessing: pre({ window: 1 }) });
    const out = run(w, [
      [r('a', 1, 100), r('b', 1, 100)],
      // same step: the later reading wins, whatever the arrival order
      [r('a', 2, 700), r('b', 2, 300)],
      [r('b', 9, 200)],
      [r('a', 3, 1100), r('b', 3, 1100)],
      // step 0 is final now: late readings are dropped and counted
      [r('a', 99, 900), r('b', 99, 950)],
      [r('a', 4, 2000), r('b', 4, 2000)],
    ]);
    expect(out.windows.map(rows)).toEqual([[[2, 2]], [[3, 3]]]);
    expect(out.dropped).toEqual({ out_of_order: 2 });
  });

  it('accepts readings up to lateSteps late', () => {
    const batches = [
      [r('a', 0, 0), r('b', 0, 0)],
      [r('a', 1, 1000)],
      // b of step 1 arrives after a of step 2 (another source, a slower path)
      [r('a', 2, 2000)],
      [r('b', 1, 1500)],
      [r('b', 2, 2500), r('a', 3, 3000), r('b', 3, 3000)],
      [r('a', 4, 4000), r('b', 4, 4000), r('a', 5, 5000), r('b', 5, 5000)],
    ];
    const strict = run(new Windower({ preprocessing: pre({ window: 1, holdSteps: 0 }) }), batches);
    expect(strict.dropped).toEqual({ out_of_order: 1 });
    expect(strict.skipped).toEqual({ stale: 1 });
    const lenient = run(
      new Windower({ preprocessing: pre({ window: 1, holdSteps: 0 }), lateSteps: 1 }),
      batches,
    );
    expect(lenient.dropped).toEqual({});
    expect(lenient.windows.map(rows)).toEqual([[[0, 0]], [[1, 1]], [[2, 2]], [[3, 3]]]);
  });

  it('never uses a bad or uncertain value, and does not hold the value from before it', () => {
    const w = new Windower({ preprocessing: pre({ holdSteps: 5 }) });
    const out = run(w, [
      ...steps(0, 2, () => 1),
      [r('a', 1, 3000), r('b', 999, 3000, { quality: 'uncertain' })],
      [r('a', 1, 4000), r('b', null, 4000, { quality: 'bad' })],
      [r('a', 1, 5000)],
      ...steps(6, 9, () => 2),
    ]);
    // Windows ending at 3..7 contain a step where b was bad or not back yet.
    expect(out.skipped).toEqual({ bad_quality: 5 });
    for (const x of out.windows) expect(Array.from(x.tensor).every((v) => v === 1 || v === 2)).toBe(true);
    expect(out.windows.map((x) => x.axisEnd - T0 / 1000)).toEqual([2, 8]);
  });

  it('emits every stride steps, aligned to the first step of the asset', () => {
    const w = new Windower({ preprocessing: pre({ window: 3, stride: 2 }) });
    const out = run(
      w,
      steps(10, 20, (k) => k),
    );
    expect(out.windows.map((x) => [x.axisStart - T0 / 1000, x.axisEnd - T0 / 1000])).toEqual([
      [10, 12],
      [12, 14],
      [14, 16],
      [16, 18],
    ]);
  });

  it('keeps assets apart, reads only the assets asked for, and ignores tags the model does not read', () => {
    const w = new Windower({ preprocessing: pre({ window: 1 }), assets: ['m1', 'm2'] });
    const batch = (k: number): Reading[] =>
      ['m1', 'm2', 'm3'].flatMap((asset, i) => [
        r('a', k + i * 10, k * 1000, { asset }),
        r('b', k, k * 1000, { asset, source: `src-${asset}` }),
        r('other', 5, k * 1000, { asset }),
      ]);
    const out = run(w, [batch(0), batch(1), batch(2)]);
    expect(out.windows.map((x) => [x.asset, rows(x)[0]![0]])).toEqual([
      ['m1', 0],
      ['m2', 10],
      ['m1', 1],
      ['m2', 11],
    ]);
    expect(out.windows[0]!.sources).toEqual(['src', 'src-m1']);
    expect(w.assets().sort()).toEqual(['m1', 'm2']);
    expect(out.dropped).toEqual({});
  });
});

describe('Windower on a counter axis', () => {
  const cyclePre = (over: Partial<TelemetryPreprocessing> = {}) => pre({ axis: counterAxis, ...over });
  /** One C-MAPSS-like batch: every tag and the cycle with one timestamp, cycle last. */
  const cycle = (c: number, value: number, ms = c * 3_600_000, asset = 'unit1'): Reading[] => [
    r('a', value, ms, { asset }),
    r('b', -value, ms, { asset }),
    r('cycle', c, ms, { asset }),
  ];

  it('scores a complete cycle at once, whatever the order of its readings in the batch', () => {
    const w = new Windower({ preprocessing: cyclePre() });
    const produced: number[][] = [];
    for (let c = 1; c <= 5; c++) produced.push(w.push(cycle(c, c * 10)).windows.map((x) => x.axisEnd));
    expect(produced).toEqual([[], [], [3], [4], [5]]);
    const out = w.flush();
    expect(out.windows).toHaveLength(0);
    // a window in the middle
    const w2 = new Windower({ preprocessing: cyclePre() });
    const all = run(
      w2,
      [1, 2, 3].map((c) => cycle(c, c)),
    );
    expect(all.windows[0]).toMatchObject({ asset: 'unit1', axisStart: 1, axisEnd: 3 });
    expect(rows(all.windows[0]!)).toEqual([
      [1, -1],
      [2, -2],
      [3, -3],
    ]);
    expect(all.windows[0]!.endTime).toBe(T0 + 3 * 3_600_000);
  });

  it('counts a repeated cycle as duplicates, not as new windows', () => {
    const w = new Windower({ preprocessing: cyclePre() });
    const out = run(w, [
      cycle(1, 1),
      cycle(1, 1, 3_600_500),
      cycle(2, 2),
      cycle(3, 3),
      cycle(3, 3, 3 * 3_600_000 + 500),
    ]);
    expect(out.windows.map((x) => x.axisEnd)).toEqual([3]);
    expect(out.dropped).toEqual({ duplicate: 4 });
  });

  it('places other readings by the counter reading with their timestamp, else in the current step', () => {
    const w = new Windower({ preprocessing: cyclePre({ window: 1, holdSteps: 0 }), lateSteps: 1 });
    const out = run(w, [
      [r('cycle', 5, 5000)],
      [r('cycle', 6, 6000)],
      // sensors of cycle 5 arrive after cycle 6 began: their timestamp says cycle 5
      [r('a', 50, 5000), r('b', 51, 5000)],
      // no counter reading at 6100: the current cycle (6)
      [r('a', 60, 6100), r('b', 61, 6100)],
      [r('cycle', 8, 8000)],
    ]);
    expect(out.windows.map((x) => [x.axisEnd, ...rows(x)[0]!])).toEqual([
      [5, 50, 51],
      [6, 60, 61],
    ]);
    expect(out.skipped).toEqual({});
    // Cycle 7 had no readings at all; cycle 8 only its counter value.
    expect(w.flush().skipped).toEqual({ gap: 1, stale: 1 });
  });

  it('needs a counter value before it can place anything', () => {
    const w = new Windower({ preprocessing: cyclePre() });
    const out = run(w, [[r('a', 1, 0), r('b', 1, 0)], [r('cycle', null, 10, { quality: 'bad' })]]);
    expect(out.dropped).toEqual({ no_axis: 3 });
    expect(w.assets()).toEqual([]);
  });

  it('starts afresh when the counter restarts (engine replaced), after scoring the old run', () => {
    const w = new Windower({ preprocessing: cyclePre(), lateSteps: 2 });
    const batches = [1, 2, 3, 4, 5].map((c) => cycle(c, c));
    // replacement: cycle 1 again, with a newer timestamp
    batches.push(...[1, 2, 3, 4].map((c) => cycle(c, 100 + c, (10 + c) * 3_600_000)));
    const out = run(w, batches);
    expect(out.resets).toEqual([{ asset: 'unit1', from: 5, to: 1 }]);
    expect(w.stats().resets).toBe(1);
    // The old run's windows all come out (3, 4, 5); the new run's never mix with them.
    expect(out.windows.map((x) => [x.axisStart, x.axisEnd])).toEqual([
      [1, 3],
      [2, 4],
      [3, 5],
      [1, 3],
      [2, 4],
    ]);
    expect(rows(out.windows[3]!).map((x) => x[0])).toEqual([101, 102, 103]);
    expect(out.skipped).toEqual({});
  });

  it('takes a counter going back with an older timestamp as a late reading, not a restart', () => {
    const w = new Windower({ preprocessing: cyclePre() });
    const out = run(w, [
      cycle(1, 1),
      cycle(2, 2),
      cycle(3, 3),
      [r('cycle', 1, 3_600_000, { asset: 'unit1' })],
      cycle(4, 4),
    ]);
    expect(out.resets).toEqual([]);
    expect(out.dropped).toEqual({ out_of_order: 1 });
    expect(out.windows.map((x) => x.axisEnd)).toEqual([3, 4]);
  });

  it('holds across a skipped cycle, and counts the windows beyond the hold as gaps', () => {
    const w = new Windower({ preprocessing: cyclePre({ holdSteps: 1 }) });
    const out = run(
      w,
      [1, 2, 3, 6, 7, 8, 9].map((c) => cycle(c, c)),
    );
    // 4 holds 3's values; 5 is beyond the hold: windows ending 5, 6 and 7 contain it.
    expect(out.windows.map((x) => [x.axisEnd, rows(x).map((row) => row[0])])).toEqual([
      [3, [1, 2, 3]],
      [4, [2, 3, 3]],
      [8, [6, 7, 8]],
      [9, [7, 8, 9]],
    ]);
    expect(out.skipped).toEqual({ gap: 3 });
  });

  it('maps counter values to steps of `step` units', () => {
    const w = new Windower({
      preprocessing: cyclePre({ axis: { type: 'counter', tag: 'cycle', step: 10 }, window: 2 }),
    });
    const out = run(w, [cycle(3, 1, 1000), cycle(7, 2, 2000), cycle(12, 3, 3000), cycle(25, 4, 4000)]);
    // 3 and 7 share step 0, which was complete (final) with the readings at 3: those at 7 are
    // duplicates. 12 is step 1; 25 is step 2.
    expect(out.windows.map((x) => [x.axisStart, x.axisEnd, rows(x).map((row) => row[0])])).toEqual([
      [0, 10, [1, 3]],
      [10, 20, [3, 4]],
    ]);
    expect(out.dropped).toEqual({ duplicate: 2 });
  });
});

describe('summary features', () => {
  it('are mean, population std, min, max, last and least-squares slope per tag, of normalised values', () => {
    const w = new Windower({
      preprocessing: pre({ features: 'summary', normalize: { mean: [1, 0], std: [2, 1] } }),
    });
    const out = run(w, [
      [r('a', 1, 0), r('b', 5, 0)],
      [r('a', 2, 1000), r('b', 5, 1000)],
      [r('a', 4, 2000), r('b', 5, 2000)],
    ]);
    const x = w.flush().windows[0] ?? out.windows[0]!;
    expect(x.shape).toEqual([1, 12]);
    // a: z = [0, 0.5, 1.5]
    const mean = 2 / 3;
    const std = Math.sqrt(((0 - mean) ** 2 + (0.5 - mean) ** 2 + (1.5 - mean) ** 2) / 3);
    const expected = [mean, std, 0, 1.5, 1.5, 0.75, 5, 0, 5, 5, 5, 0];
    Array.from(x.tensor).forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
    expect(Array.from(x.lastValues)).toEqual([1.5, 5]);
  });

  it('match the Python reference of the anomaly fixture', () => {
    const cases = JSON.parse(
      readFileSync(
        path.resolve(import.meta.dirname, '../fixtures/telemetry-models/cases/iforest-cases.json'),
        'utf8',
      ),
    ) as { tags: string[]; raw: number[][]; windows: Array<{ end: number; features: number[] }> };
    const manifest = JSON.parse(
      readFileSync(
        path.resolve(import.meta.dirname, '../fixtures/telemetry-models/iforest-anomaly/vigil.json'),
        'utf8',
      ),
    ) as { preprocessing: TelemetryPreprocessing };
    const w = new Windower({ preprocessing: manifest.preprocessing });
    const batches = cases.raw.map((row, k) => cases.tags.map((tag, j) => r(tag, row[j]!, k * 1000 + 100)));
    const out = run(w, batches);
    out.windows.push(...w.flush().windows);
    expect(out.windows).toHaveLength(cases.windows.length);
    out.windows.forEach((x, i) => {
      const ref = cases.windows[i]!;
      expect(x.axisEnd - T0 / 1000).toBe(ref.end);
      Array.from(x.tensor).forEach((v, j) => expect(v).toBeCloseTo(ref.features[j]!, 4));
    });
  });
});
