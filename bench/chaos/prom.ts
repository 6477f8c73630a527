/**
 * Reading a daemon's /metrics (Prometheus text format) from outside: counters summed over the
 * labels given, and histograms windowed by subtracting two scrapes, with quantiles estimated the
 * way Prometheus's histogram_quantile() does (linear within the bucket). The drills treat the
 * daemon as a black box, so this is all they know of its insides.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class MetricsScrape {
  readonly samples: Sample[];
  readonly at = Date.now();

  constructor(text: string) {
    this.samples = [];
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
      if (!m) continue;
      const labels: Record<string, string> = {};
      for (const l of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      const value = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
      this.samples.push({ name: m[1]!, labels, value });
    }
  }

  static async fetch(opsUrl: string, timeoutMs = 5_000): Promise<MetricsScrape> {
    const r = await fetch(`${opsUrl}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!r.ok) throw new Error(`GET ${opsUrl}/metrics answered ${r.status}`);
    return new MetricsScrape(await r.text());
  }

  /** Sum of every sample of `name` whose labels include `labels`. */
  sum(name: string, labels: Record<string, string> = {}): number {
    let total = 0;
    for (const s of this.samples) if (s.name === name && matches(s.labels, labels)) total += s.value;
    return total;
  }

  /** Per value of `label`, the sum of the samples of `name` matching `labels` (zeros left out). */
  by(name: string, label: string, labels: Record<string, string> = {}): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.samples) {
      if (s.name !== name || !matches(s.labels, labels)) continue;
      const key = s.labels[label] ?? '';
      out[key] = (out[key] ?? 0) + s.value;
    }
    for (const k of Object.keys(out)) if (out[k] === 0) delete out[k];
    return out;
  }

  /** The cumulative buckets of histogram `name` with these labels, summed, upper bound ascending. */
  buckets(name: string, labels: Record<string, string> = {}): Array<{ le: number; count: number }> {
    const byLe = new Map<number, number>();
    for (const s of this.samples) {
      if (s.name !== `${name}_bucket` || !matches(s.labels, labels)) continue;
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      byLe.set(le, (byLe.get(le) ?? 0) + s.value);
    }
    return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
  }
}

function matches(have: Record<string, string>, want: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) return false;
  return true;
}

/** A histogram between two scrapes: counts per bucket of what was observed in between. */
export interface HistogramWindow {
  count: number;
  sum: number;
  buckets: Array<{ le: number; count: number }>;
}

export function histogramWindow(
  before: MetricsScrape | undefined,
  after: MetricsScrape,
  name: string,
  labels: Record<string, string> = {},
): HistogramWindow {
  const b = before?.buckets(name, labels) ?? [];
  const a = after.buckets(name, labels);
  const prev = new Map(b.map((x) => [x.le, x.count]));
  return {
    count: after.sum(`${name}_count`, labels) - (before?.sum(`${name}_count`, labels) ?? 0),
    sum: after.sum(`${name}_sum`, labels) - (before?.sum(`${name}_sum`, labels) ?? 0),
    buckets: a.map((x) => ({ le: x.le, count: x.count - (prev.get(x.le) ?? 0) })),
  };
}

/**
 * The q-quantile (0..1) of a windowed histogram, linear within its bucket as Prometheus does; the
 * highest finite bound when it falls in +Inf. undefined when the window saw nothing. Same unit as
 * the buckets (seconds for Vigil's latencies).
 */
export function histogramQuantile(w: HistogramWindow, q: number): number | undefined {
  const total = w.buckets.at(-1)?.count ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const { le, count } of w.buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      const inBucket = count - below;
      return inBucket <= 0 ? le : lower + ((le - lower) * (rank - below)) / inBucket;
    }
    lower = le === Infinity ? lower : le;
    below = count;
  }
  return lower;
}

/** Share of a window's observations at or under `bound` (e.g. the 0.1 s budget); undefined when empty. */
export function histogramShareWithin(w: HistogramWindow, bound: number): number | undefined {
  const total = w.buckets.at(-1)?.count ?? 0;
  if (total <= 0) return undefined;
  const b = w.buckets.find((x) => x.le >= bound);
  return b ? b.count / total : 1;
}

/** Exact percentile (nearest rank) of raw values; undefined for none. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
