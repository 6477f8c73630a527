/**
 * Population stability index over fixed bins, and the bin helpers the reference builder and the
 * live monitor share (so that a value falls in the same bin on both sides).
 *
 * Bins are given by ascending interior edges e[0..k-1]: bin 0 is (-inf, e0], bin i is
 * (e[i-1], e[i]], bin k is (e[k-1], +inf). A value equal to an edge belongs to the bin below it.
 */

/** Proportions below this are raised to it, so that an empty bin gives a large but finite PSI. */
export const PSI_EPSILON = 1e-4;

/** The bin of `x`: the number of edges strictly below it (binary search). NaN goes to bin 0. */
export function binOf(edges: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (edges[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Counts of `values` per bin (edges.length + 1 bins). */
export function binCounts(
  edges: ArrayLike<number>,
  values: ArrayLike<number>,
  n = values.length,
): Float64Array {
  const counts = new Float64Array(edges.length + 1);
  for (let i = 0; i < n; i++) counts[binOf(edges, values[i]!)]!++;
  return counts;
}

/**
 * PSI = sum over bins of (a - r) * ln(a / r), a the live and r the reference proportion, both
 * floored at PSI_EPSILON. `live` may be counts or proportions (it is normalised here).
 */
export function psi(reference: ArrayLike<number>, live: ArrayLike<number>): number {
  if (reference.length !== live.length)
    throw new RangeError(`psi: ${reference.length} reference bins but ${live.length} live bins`);
  let total = 0;
  let refTotal = 0;
  for (let i = 0; i < live.length; i++) {
    total += live[i]!;
    refTotal += reference[i]!;
  }
  if (total <= 0 || refTotal <= 0) return 0;
  let sum = 0;
  for (let i = 0; i < live.length; i++) {
    const a = Math.max(live[i]! / total, PSI_EPSILON);
    const r = Math.max(reference[i]! / refTotal, PSI_EPSILON);
    sum += (a - r) * Math.log(a / r);
  }
  return sum;
}

/**
 * Interior edges of `bins` equal-frequency bins of sorted values. Each edge is a value of the
 * data (the order statistic where the share below reaches b / bins), never an interpolation, so
 * that every bin holds at least one reference value; duplicates are merged, so a feature with
 * ties (a capped RUL, an int8 model's discrete scores) gets fewer, wider bins rather than empty ones.
 */
export function quantileEdges(sorted: ArrayLike<number>, bins: number): number[] {
  const n = sorted.length;
  const edges: number[] = [];
  for (let b = 1; b < bins; b++) {
    const e = sorted[Math.max(0, Math.ceil((b * n) / bins) - 1)]!;
    if (edges.length === 0 || e > edges[edges.length - 1]!) edges.push(e);
  }
  // An edge at the maximum leaves the top bin empty; drop it.
  while (edges.length > 0 && n > 0 && edges[edges.length - 1]! >= sorted[n - 1]!) edges.pop();
  return edges;
}
