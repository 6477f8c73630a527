import type { Manifest, ReferenceDistribution } from '../model/manifest.js';
import { binCounts, quantileEdges } from './psi.js';

/** Equal-frequency bins of a reference: ten, the usual choice for PSI. */
export const REFERENCE_BINS = 10;
/** Quantiles kept for the KS test: the reference ECDF to within 1/(2 * 200). */
export const KS_SAMPLE_SIZE = 200;

/** Standard normal deciles: the edges of ten equal-probability bins of N(0, 1). */
const NORMAL_DECILES = [
  -1.2815516, -0.8416212, -0.5244005, -0.2533471, 0, 0.2533471, 0.5244005, 0.8416212, 1.2815516,
];

/**
 * The reference distribution of a quantity from its values: quantile bin edges and the share
 * of the values in each bin (counted with the same binning as live data, so ties land where
 * they will land live), evenly spaced quantiles for KS, mean and standard deviation.
 */
export function distributionOf(
  name: string,
  values: ArrayLike<number>,
  options: { bins?: number; sampleSize?: number; keepSample?: boolean } = {},
): ReferenceDistribution {
  const finite = Float64Array.from(values).filter((v) => Number.isFinite(v));
  if (finite.length === 0) throw new RangeError(`reference of ${name}: no finite values`);
  finite.sort();
  // Edges are stored exactly: they are values of the data, and a rounded edge of a discrete
  // feature would move its tied values into the next bin.
  const edges = quantileEdges(finite, options.bins ?? REFERENCE_BINS);
  let sum = 0;
  for (const v of finite) sum += v;
  const mean = sum / finite.length;
  let sq = 0;
  for (const v of finite) sq += (v - mean) ** 2;
  const dist: ReferenceDistribution = {
    name,
    edges,
    proportions: Array.from(binCounts(edges, finite), (c) => round6(c / finite.length)),
    count: finite.length,
    mean: round6(mean),
    std: round6(Math.sqrt(sq / finite.length)),
  };
  if (options.keepSample ?? true) {
    const k = Math.min(options.sampleSize ?? KS_SAMPLE_SIZE, finite.length);
    // Exact order statistics, not rounded: outputs are often discrete (an int8 model's scores
    // step by 1/255), and a rounded copy of a tied value would sort apart from the live ones.
    dist.sample = Array.from(
      { length: k },
      (_, i) => finite[Math.min(finite.length - 1, Math.floor(((i + 0.5) / k) * finite.length))]!,
    );
  }
  return dist;
}

/**
 * A stand-in reference for a model that ships only inputMean/inputStd: ten equal-probability
 * bins of a normal distribution with that mean and deviation. Undefined for a constant input.
 */
export function gaussianDistribution(
  name: string,
  mean: number,
  std: number,
): ReferenceDistribution | undefined {
  if (!(std > 0) || !Number.isFinite(mean)) return undefined;
  return {
    name,
    edges: NORMAL_DECILES.map((z) => mean + z * std),
    proportions: NORMAL_DECILES.map(() => 0.1).concat(0.1),
    count: 1,
    mean,
    std,
  };
}

/** Shares of each label among `observed`, in `labels` order. */
export function classProportions(labels: readonly string[], observed: ArrayLike<number>): number[] {
  const counts = new Float64Array(labels.length);
  for (let i = 0; i < observed.length; i++) counts[observed[i]!]!++;
  return Array.from(counts, (c) => round6(c / Math.max(1, observed.length)));
}

/** Whether a distribution can be compared against: a constant reference has a single bin. */
export function isMonitorable(d: ReferenceDistribution): boolean {
  return d.edges.length > 0;
}

/**
 * Where the input and output references of a model come from, before any live learning: its
 * manifest's distributions when it has them and they were computed with the feature set the
 * runtime computes, else (inputs) a Gaussian of inputMean/inputStd for telemetry models.
 */
export interface InputReferencePlan {
  origin: 'manifest' | 'gaussian' | 'live' | 'none';
  /** One per extractor feature, undefined where that feature cannot be monitored. */
  features: Array<ReferenceDistribution | undefined>;
  /** Why it is not the manifest's, for the log line. */
  reason?: string;
}

export function inputReference(
  m: Manifest,
  featureSet: string,
  names: readonly string[],
  gaussianIndex: ((feature: number) => number) | undefined,
): InputReferencePlan {
  const ref = m.referenceStats;
  if (ref?.features && ref.featureSet === featureSet) {
    const byName = new Map(ref.features.map((f) => [f.name, f]));
    return { origin: 'manifest', features: names.map((n) => byName.get(n)) };
  }
  const reason =
    ref?.features && ref.featureSet !== featureSet
      ? `its reference distributions were computed as ${ref.featureSet ?? 'an unnamed feature set'}, this runtime computes ${featureSet}`
      : 'it has no reference distributions (referenceStats.features)';
  if (gaussianIndex && ref?.inputMean && ref.inputStd) {
    const mean = ref.inputMean;
    const std = ref.inputStd;
    return {
      origin: 'gaussian',
      reason,
      features: names.map((n, i) => {
        const j = gaussianIndex(i);
        return gaussianDistribution(n, mean[j]!, std[j]!);
      }),
    };
  }
  return { origin: 'none', features: names.map(() => undefined), reason };
}

/** Six significant digits: enough for a bin edge, and tiny scores (1e-7) keep their order. */
const round6 = (x: number) => Number(x.toPrecision(6));
