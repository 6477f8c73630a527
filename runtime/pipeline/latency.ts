/**
 * Keeps raw latency samples for exact percentiles in reports (Prometheus histograms only give
 * bucketed estimates). Bounded: past `capacity` it keeps a uniform reservoir sample.
 */
export class LatencyRecorder {
  private readonly values: number[] = [];
  private seen = 0;
  private seed = 0x9e3779b9;
  /** The last summary and the sample count it was made at: status() is polled far more often than it changes. */
  private cached: { seen: number; summary: LatencySummary } | undefined;

  constructor(private readonly capacity = 200_000) {}

  add(ms: number): void {
    this.seen++;
    if (this.values.length < this.capacity) {
      this.values.push(ms);
      return;
    }
    // Reservoir sampling with a small deterministic PRNG (xorshift) so reports are repeatable.
    this.seed ^= this.seed << 13;
    this.seed ^= this.seed >>> 17;
    this.seed ^= this.seed << 5;
    const j = (this.seed >>> 0) % this.seen;
    if (j < this.capacity) this.values[j] = ms;
  }

  get count(): number {
    return this.seen;
  }

  /** How many samples are kept (at most the capacity). */
  get retained(): number {
    return this.values.length;
  }

  /** Percentiles by the nearest-rank method; undefined when nothing was recorded. */
  summary(): LatencySummary | undefined {
    if (this.values.length === 0) return undefined;
    if (this.cached?.seen === this.seen) return this.cached.summary;
    // Selection, not a full sort: three order statistics of up to 200k values take a few ms,
    // where sorting them took 200+ ms and blocked the event loop on every status().
    const a = Float64Array.from(this.values);
    const n = a.length;
    const rank = (p: number) => select(a, Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1)));
    let sum = 0;
    let max = -Infinity;
    for (let i = 0; i < n; i++) {
      sum += a[i]!;
      if (a[i]! > max) max = a[i]!;
    }
    // Ascending ranks: each selection leaves everything below its rank to its left, so the next
    // one only partitions what is right of it.
    const p50 = rank(50);
    const p95 = rank(95);
    const p99 = rank(99);
    const summary = {
      count: this.seen,
      mean: round(sum / n),
      p50: round(p50),
      p95: round(p95),
      p99: round(p99),
      max: round(max),
    };
    this.cached = { seen: this.seen, summary };
    return summary;
  }
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

const round = (x: number) => Math.round(x * 100) / 100;

/** The k-th smallest value (0-based) of `a`, partially reordering it in place (Hoare's quickselect). */
function select(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    // Median of three as the pivot: latencies often arrive nearly sorted.
    const mid = (lo + hi) >>> 1;
    const x = a[lo]!;
    const y = a[mid]!;
    const z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}
