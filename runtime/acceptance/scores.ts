/**
 * Holdout metrics, as docs/ACCEPTANCE.md defines them. Binary metrics compare the model's alert
 * decision with the truth: a defect (any label but the ok label), a failure within the horizon,
 * an anomaly, or a remaining useful life at or below the alert's raise level.
 */

export interface BinaryCounts {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export function binaryCounts(truth: readonly boolean[], decided: readonly boolean[]): BinaryCounts {
  const c = { tp: 0, fp: 0, tn: 0, fn: 0 };
  truth.forEach((t, i) => {
    const d = decided[i]!;
    if (t && d) c.tp++;
    else if (t) c.fn++;
    else if (d) c.fp++;
    else c.tn++;
  });
  return c;
}

/** NaN when undefined (no positives, no decisions): the report says why rather than inventing 0 or 1. */
export function precision(c: BinaryCounts): number {
  return c.tp + c.fp === 0 ? NaN : c.tp / (c.tp + c.fp);
}

export function recall(c: BinaryCounts): number {
  return c.tp + c.fn === 0 ? NaN : c.tp / (c.tp + c.fn);
}

export function f1(c: BinaryCounts): number {
  const p = precision(c);
  const r = recall(c);
  return p + r === 0 ? 0 : (2 * p * r) / (p + r);
}

/**
 * Area under the ROC curve of `score` (higher = more positive): the probability that a random
 * positive scores above a random negative, ties counting one half (Mann-Whitney U). NaN when
 * either class is missing.
 */
export function auc(truth: readonly boolean[], score: readonly number[]): number {
  const idx = score.map((s, i) => ({ s, t: truth[i]! })).sort((a, b) => a.s - b.s);
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j < idx.length && idx[j]!.s === idx[i]!.s) j++;
    // Ranks i+1..j share their mean.
    const rank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++)
      if (idx[k]!.t) {
        pos++;
        rankSum += rank;
      }
    i = j;
  }
  const neg = idx.length - pos;
  if (pos === 0 || neg === 0) return NaN;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

export function mae(predicted: readonly number[], truth: readonly number[]): number {
  return predicted.reduce((a, p, i) => a + Math.abs(p - truth[i]!), 0) / predicted.length;
}

export function rmse(predicted: readonly number[], truth: readonly number[]): number {
  return Math.sqrt(predicted.reduce((a, p, i) => a + (p - truth[i]!) ** 2, 0) / predicted.length);
}
