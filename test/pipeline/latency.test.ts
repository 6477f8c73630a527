import { describe, expect, it } from 'vitest';
import { LatencyRecorder } from '../../runtime/pipeline/latency.js';

/** Nearest-rank percentile of a sorted copy: the definition the recorder must match exactly. */
function reference(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const round = (x: number) => Math.round(x * 100) / 100;

describe('LatencyRecorder', () => {
  const shapes: Record<string, (i: number) => number> = {
    random: () => Math.random() * 120,
    'many ties': () => Math.floor(Math.random() * 4),
    ascending: (i) => i / 7,
    descending: (i) => 1e4 - i / 3,
  };
  for (const [shape, gen] of Object.entries(shapes))
    for (const n of [1, 2, 3, 17, 1000, 50_000])
      it(`gives the exact nearest-rank percentiles (${shape}, ${n} values)`, () => {
        const r = new LatencyRecorder();
        const values = Array.from({ length: n }, (_, i) => gen(i));
        for (const v of values) r.add(v);
        const s = r.summary()!;
        expect(s.count).toBe(n);
        expect(s.p50).toBe(round(reference(values, 50)));
        expect(s.p95).toBe(round(reference(values, 95)));
        expect(s.p99).toBe(round(reference(values, 99)));
        expect(s.max).toBe(round(Math.max(...values)));
      });

  it('recomputes after a new value and reuses the summary when nothing changed', () => {
    const r = new LatencyRecorder();
    for (let i = 1; i <= 100; i++) r.add(i);
    const first = r.summary();
    expect(r.summary()).toBe(first);
    r.add(1000);
    expect(r.summary()!.max).toBe(1000);
    expect(r.summary()!.count).toBe(101);
  });

  it('is undefined before the first value', () => {
    expect(new LatencyRecorder().summary()).toBeUndefined();
  });
});
