import { describe, expect, it } from 'vitest';
import { imageStats } from '../../runtime/drift/features.js';
import { ksCritical, ksStatistic } from '../../runtime/drift/ks.js';
import { PSI_EPSILON, binCounts, binOf, psi, quantileEdges } from '../../runtime/drift/psi.js';
import { classProportions, distributionOf, gaussianDistribution } from '../../runtime/drift/reference.js';
import { SampleWindow } from '../../runtime/drift/window.js';
import { ReferenceDistribution } from '../../runtime/model/manifest.js';

// Expected values computed independently, once, offline, with numpy 1.26.4 and scipy 1.17.1
// (~/.cache/vigil/venv-models/bin/python):
//   np.sum((live - ref) * np.log(live / ref)) for PSI,
//   scipy.stats.ks_2samp(a, b, method='asymp').statistic for KS,
//   scipy.stats.kstwobign.isf(alpha) for the asymptotic critical constant c(alpha).

describe('PSI', () => {
  it('matches numpy on ten equal reference bins', () => {
    const ref = Array(10).fill(0.1);
    // Counts are normalised: the same as proportions [.05 .08 .10 .12 .10 .10 .09 .11 .12 .13].
    const live = [5, 8, 10, 12, 10, 10, 9, 11, 12, 13];
    expect(psi(ref, live)).toBeCloseTo(0.056290727214685886, 12);
  });

  it('is symmetric in a swap of proportions and matches numpy', () => {
    expect(psi([0.5, 0.3, 0.2], [0.2, 0.3, 0.5])).toBeCloseTo(0.549774439124493, 12);
    expect(psi([0.2, 0.3, 0.5], [0.5, 0.3, 0.2])).toBeCloseTo(0.549774439124493, 12);
  });

  it('floors an empty bin at PSI_EPSILON rather than going infinite', () => {
    expect(PSI_EPSILON).toBe(1e-4);
    expect(psi([0.25, 0.25, 0.25, 0.25], [0, 2, 1, 1])).toBeCloseTo(2.1285158932529735, 10);
  });

  it('is zero for identical distributions and refuses mismatched bins', () => {
    expect(psi([0.2, 0.8], [20, 80])).toBe(0);
    expect(() => psi([0.5, 0.5], [1, 2, 3])).toThrow(/2 reference bins but 3 live bins/);
  });
});

describe('bins and quantiles', () => {
  it('puts a value equal to an edge in the bin below it', () => {
    const edges = [1, 2, 3];
    expect([0, 1, 1.5, 2, 2.0001, 3, 99].map((x) => binOf(edges, x))).toEqual([0, 0, 1, 1, 2, 2, 3]);
    expect(Array.from(binCounts(edges, [0, 1, 1.5, 2, 2.5, 3, 4, 5]))).toEqual([2, 2, 2, 2]);
  });

  it('cuts equal-frequency bins at values of the data', () => {
    const v = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(quantileEdges(v, 4)).toEqual([5, 10, 15]);
    expect(Array.from(binCounts(quantileEdges(v, 4), v))).toEqual([5, 5, 5, 5]);
  });

  it('merges tied quantile edges and drops an edge at the maximum', () => {
    // 70 % of the values tied at the bottom (an int8 model's scores): few, wide bins, none empty.
    const v = [...Array(70).fill(0.004), ...Array.from({ length: 30 }, (_, i) => 0.01 + i / 30)];
    const edges = quantileEdges(v, 10);
    expect(edges[0]).toBe(0.004);
    expect(edges.length).toBeLessThan(9);
    expect(Array.from(binCounts(edges, v)).every((c) => c > 0)).toBe(true);
    expect(quantileEdges(Array(50).fill(3), 10)).toEqual([]);
  });
});

describe('two-sample KS', () => {
  it('matches scipy.stats.ks_2samp', () => {
    const a = [0.1, 0.4, 0.7, 1.3, 2.2, 2.5, 3.1, 4.0];
    const b = [0.2, 0.3, 0.5, 0.6, 0.9, 1.0, 1.1, 1.2, 1.4, 5.0];
    expect(ksStatistic(a, b)).toBeCloseTo(0.42500000000000004, 12);
    expect(ksStatistic(b, a)).toBeCloseTo(0.425, 12);
  });

  it('moves tied values together, as scipy does', () => {
    const c = [1, 1, 1, 2, 2, 3, 3, 3, 3, 4];
    const d = [1, 2, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5];
    expect(ksStatistic(c, d)).toBeCloseTo(0.4, 12);
    expect(ksStatistic(c, c)).toBe(0);
  });

  it('has the asymptotic critical value of scipy.stats.kstwobign', () => {
    const c: Record<string, number> = {
      '0.1': 1.2238478702170823,
      '0.05': 1.3580986393225507,
      '0.01': 1.6276236115189504,
      '0.001': 1.9494746035043753,
    };
    for (const [alpha, value] of Object.entries(c))
      expect(ksCritical(Number(alpha), 1, 1e15)).toBeCloseTo(value, 4);
    // sqrt((n + m) / (n m)) scaling: 500 live against 3000 reference values at alpha 0.001.
    expect(ksCritical(0.001, 500, 3000)).toBeCloseTo(1.9494746035043753 * Math.sqrt(3500 / 1_500_000), 6);
    expect(() => ksCritical(0, 1, 1)).toThrow(/alpha/);
  });
});

describe('reference distributions', () => {
  it('bins a reference into ten equal shares and keeps evenly spaced order statistics', () => {
    const values = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 1000);
    const d = ReferenceDistribution.parse(distributionOf('x', values));
    expect(d.edges).toHaveLength(9);
    expect(d.proportions).toEqual(Array(10).fill(0.1));
    expect(d.count).toBe(1000);
    expect(d.mean).toBeCloseTo(499.5, 6);
    expect(d.sample).toHaveLength(200);
    expect(d.sample![0]).toBe(2);
    expect(d.sample!.every((v, i) => i === 0 || v >= d.sample![i - 1]!)).toBe(true);
    // The reference against itself: no drift.
    expect(psi(d.proportions, binCounts(d.edges, values))).toBeCloseTo(0, 12);
  });

  it('keeps tied reference values exact, so a live copy of them compares equal', () => {
    const score = 1 - Math.fround(0.99607849); // an int8 model's lowest defect score
    const d = distributionOf('score', [...Array(700).fill(score), ...Array(300).fill(1)]);
    expect(ksStatistic([...Array(70).fill(score), ...Array(30).fill(1)], d.sample!)).toBeCloseTo(0, 2);
  });

  it('builds a Gaussian stand-in with ten equal-probability bins, none for a constant input', () => {
    const g = ReferenceDistribution.parse(gaussianDistribution('t', 2, 0.5));
    expect(g.edges[4]).toBe(2);
    expect(g.edges[8]).toBeCloseTo(2 + 1.2815516 * 0.5, 6);
    expect(gaussianDistribution('t', 2, 0)).toBeUndefined();
  });

  it('rejects a distribution whose proportions do not fit its edges', () => {
    const bad = { name: 'x', edges: [1, 2], proportions: [0.5, 0.5], count: 2, mean: 1, std: 1 };
    expect(ReferenceDistribution.safeParse(bad).success).toBe(false);
  });

  it('counts class shares in label order', () => {
    expect(classProportions(['ok', 'a', 'b'], [0, 0, 0, 2])).toEqual([0.75, 0, 0.25]);
  });
});

describe('image statistics', () => {
  it('computes mean, standard deviation and mean |horizontal difference| in one pass, either layout', () => {
    const w = 5;
    const h = 3;
    const gray = Float32Array.from({ length: w * h }, (_, i) => ((i * 37) % 11) / 10);
    const naive = (x: Float32Array) => {
      const mean = x.reduce((a, b) => a + b, 0) / x.length;
      const std = Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length);
      let g = 0;
      for (let y = 0; y < h; y++)
        for (let i = 1; i < w; i++) g += Math.abs(x[y * w + i]! - x[y * w + i - 1]!);
      return [mean, std, g / ((w - 1) * h)];
    };
    const out = new Float64Array(3);
    imageStats(gray, w, h, 1, 'NHWC', out);
    Array.from(out).forEach((v, i) => expect(v).toBeCloseTo(naive(gray)[i]!, 6));
    const nchw = new Float64Array(3);
    imageStats(gray, w, h, 1, 'NCHW', nchw);
    expect(Array.from(nchw)).toEqual(Array.from(out));
    // Three channels interleaved (NHWC) give the same figures as the planes (NCHW).
    const planes = Float32Array.from({ length: 3 * w * h }, (_, i) => ((i * 13) % 7) / 7);
    const interleaved = new Float32Array(planes.length);
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < w * h; p++) interleaved[p * 3 + c] = planes[c * w * h + p]!;
    const a = new Float64Array(3);
    const b = new Float64Array(3);
    imageStats(planes, w, h, 3, 'NCHW', a);
    imageStats(interleaved, w, h, 3, 'NHWC', b);
    Array.from(a).forEach((v, i) => expect(b[i]).toBeCloseTo(v, 6));
  });
});

describe('sample window', () => {
  it('keeps the newest samples in order once it wraps', () => {
    const win = new SampleWindow(4, 2);
    for (let i = 1; i <= 6; i++) {
      win.featureRow().set([i, -i]);
      win.commit(i / 10, i % 2, 1000 + i);
    }
    expect(win.size).toBe(4);
    expect(win.recorded).toBe(6);
    expect(Array.from(win.feature(0))).toEqual([3, 4, 5, 6]);
    expect(Array.from(win.feature(1, 2))).toEqual([-5, -6]);
    expect(Array.from(win.score())).toEqual([0.3, 0.4, 0.5, 0.6]);
    expect(Array.from(win.classIndex())).toEqual([1, 0, 1, 0]);
    expect(win.span()).toEqual({ from: 1003, to: 1006 });
  });
});
