import { describe, expect, it } from 'vitest';
import type { ClassificationPostprocessing } from '../../runtime/model/manifest.js';
import { classify } from '../../runtime/pipeline/postprocess.js';
import { LatencyRecorder } from '../../runtime/pipeline/latency.js';

const pp: ClassificationPostprocessing = {
  type: 'classification',
  output: 'probs',
  labels: ['ok', 'scratch', 'crack', 'inclusion'],
  activation: 'none',
  okLabel: 'ok',
  threshold: 0.5,
  alertKind: 'defect',
};
const out = (values: number[]) => ({
  probs: { dtype: 'float32' as const, shape: [1, values.length], data: Float32Array.from(values) },
});

describe('classify', () => {
  it('takes the top label and scores the frame as 1 - p(ok)', () => {
    const c = classify(out([0.1, 0.2, 0.6, 0.1]), pp);
    expect(c.label).toBe('crack');
    expect(c.confidence).toBeCloseTo(0.6);
    expect(c.score).toBeCloseTo(0.9);
    expect(c.scores).toEqual({
      ok: expect.closeTo(0.1),
      scratch: expect.closeTo(0.2),
      crack: expect.closeTo(0.6),
      inclusion: expect.closeTo(0.1),
    });
  });

  it('applies a softmax to logits when the manifest says so', () => {
    const c = classify(out([0, 0, Math.log(2), 0]), { ...pp, activation: 'softmax' });
    expect(c.scores.crack).toBeCloseTo(0.4);
    expect(c.score).toBeCloseTo(0.8);
  });

  it('refuses NaN, missing outputs and too few values with the reason', () => {
    expect(() => classify(out([Number.NaN, 0, 0, 1]), pp)).toThrow(/NaN/);
    expect(() => classify({}, pp)).toThrow(/no output named 'probs'/);
    expect(() => classify(out([1, 0]), pp)).toThrow(/2 values, expected 4 labels/);
  });
});

describe('LatencyRecorder', () => {
  it('gives nearest-rank percentiles', () => {
    const r = new LatencyRecorder();
    for (let i = 1; i <= 100; i++) r.add(i);
    expect(r.summary()).toMatchObject({ count: 100, p50: 50, p95: 95, p99: 99, max: 100, mean: 50.5 });
  });

  it('stays bounded and keeps counting past its capacity', () => {
    const r = new LatencyRecorder(10);
    for (let i = 0; i < 1000; i++) r.add(i);
    expect(r.retained).toBe(10);
    expect(r.summary()!.count).toBe(1000);
  });

  it('has no summary before the first sample', () => {
    expect(new LatencyRecorder().summary()).toBeUndefined();
  });
});
