/**
 * The two-sample Kolmogorov-Smirnov test: D = sup |F_live(x) - F_ref(x)|, and its critical value
 * at a significance level from the asymptotic distribution (c(alpha) * sqrt((n + m) / (n m)),
 * c(alpha) = sqrt(-ln(alpha / 2) / 2)), the textbook large-sample rule. It assumes independent
 * samples: right for camera frames, wrong for overlapping telemetry windows (which is why those
 * are tested with PSI only).
 */

/** D of two ascending-sorted samples. */
export function ksStatistic(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return 0;
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const x = Math.min(a[i]!, b[j]!);
    // Step past every value equal to x on both sides before comparing: ties move together.
    while (i < n && a[i]! <= x) i++;
    while (j < m && b[j]! <= x) j++;
    const diff = Math.abs(i / n - j / m);
    if (diff > d) d = diff;
  }
  return d;
}

/** The critical D at level alpha for sample sizes n and m (reject equality when D exceeds it). */
export function ksCritical(alpha: number, n: number, m: number): number {
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`ksCritical: alpha must be in (0, 1), got ${alpha}`);
  if (n <= 0 || m <= 0) return Infinity;
  return Math.sqrt(-Math.log(alpha / 2) / 2) * Math.sqrt((n + m) / (n * m));
}
