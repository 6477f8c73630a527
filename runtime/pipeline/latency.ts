/**
 * Keeps raw latency samples for exact percentiles in reports (Prometheus histograms only give
 * bucketed estimates). Bounded: past `capacity` it keeps a uniform reservoir sample.
 */
export class LatencyRecorder {
  private readonly values: number[] = [];
  private seen = 0;
  private seed = 0x9e3779b9;

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
    const sorted = [...this.values].sort((a, b) => a - b);
    const rank = (p: number) =>
      sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
    const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
    return {
      count: this.seen,
      mean: round(mean),
      p50: round(rank(50)),
      p95: round(rank(95)),
      p99: round(rank(99)),
      max: round(sorted[sorted.length - 1]!),
    };
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
