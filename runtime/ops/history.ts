import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { PipelineObserver, ScoredSample } from '../pipeline/observer.js';
import { LatencyRecorder } from '../pipeline/latency.js';
import type { Metrics } from './metrics.js';

/** Per pipeline, what it dropped since the start by reason (cumulative counters). */
export type DropCounts = Record<string, { kind: 'frame' | 'window'; reasons: Record<string, number> }>;

/**
 * One interval of one pipeline: [end time (ms since the epoch), results per second, p50, p95,
 * p99 (ms, null when nothing was scored), dropped, over budget]. Arrays rather than objects: the
 * page fetches ten minutes of them at once, possibly over a slow link.
 */
export type HistoryPoint = [number, number, number | null, number | null, number | null, number, number];
export const HISTORY_FIELDS = ['t', 'rate', 'p50', 'p95', 'p99', 'dropped', 'overBudget'] as const;

export interface PipelineSeries {
  /** 'frame' or 'window'; undefined until the pipeline scored or dropped something. */
  kind: 'frame' | 'window' | undefined;
  budgetMs: number;
  points: HistoryPoint[];
  /** Dropped (frames) or skipped (windows) by reason over the whole kept window. */
  droppedByReason: Record<string, number>;
}

export interface HistoryView {
  intervalMs: number;
  windowMs: number;
  fields: typeof HISTORY_FIELDS;
  pipelines: Record<string, PipelineSeries>;
}

export interface PipelineHistoryOptions {
  /** Every pipeline to chart, with its latency budget (pipelines.<name>.budgetMs). */
  budgets: Record<string, number>;
  /** Cumulative drop counters, read once per interval. */
  drops: () => DropCounts | Promise<DropCounts>;
  log: Logger;
  /** Length of one point (default 2 s). */
  intervalMs?: number | undefined;
  /** How far back points are kept (default 10 minutes). */
  windowMs?: number | undefined;
  /** Wall clock, ms since the epoch (tests). */
  clock?: (() => number) | undefined;
}

interface Track {
  kind: 'frame' | 'window' | undefined;
  budgetMs: number;
  /** Latencies of the interval in progress; a fresh recorder per interval. */
  latency: LatencyRecorder;
  over: number;
  points: HistoryPoint[];
  /** Drops by reason of each kept point, aligned with `points` (empty when none). */
  dropReasons: Array<Record<string, number>>;
  lastDrops: Record<string, number>;
}

/** Latencies kept per interval and pipeline before reservoir sampling takes over. */
const INTERVAL_CAPACITY = 4096;

/**
 * Latency, throughput and drops of every pipeline over the last minutes, for the status page's
 * charts. It watches scored samples (each result's own arrival-to-stored latency, so that a
 * point's percentiles are those of its interval, not of the whole run as in the pipelines'
 * snapshots) and, once per interval, closes the interval into a bounded ring of points.
 */
export class PipelineHistory implements PipelineObserver {
  readonly intervalMs: number;
  readonly windowMs: number;
  private readonly tracks = new Map<string, Track>();
  private readonly capacity: number;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  private lastTick: number;
  private ticking = false;
  private failureLogged = false;

  constructor(private readonly options: PipelineHistoryOptions) {
    this.intervalMs = Math.max(100, options.intervalMs ?? 2_000);
    this.windowMs = Math.max(this.intervalMs, options.windowMs ?? 600_000);
    this.capacity = Math.ceil(this.windowMs / this.intervalMs);
    this.clock = options.clock ?? Date.now;
    this.lastTick = this.clock();
    for (const [name, budgetMs] of Object.entries(options.budgets)) this.track(name, budgetMs);
  }

  scored(sample: ScoredSample): void {
    const t = this.track(sample.pipeline);
    t.kind = sample.kind;
    const ms = sample.result.latencyMs;
    t.latency.add(ms);
    if (ms > t.budgetMs) t.over++;
  }

  start(): void {
    if (this.timer) return;
    this.lastTick = this.clock();
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Closes the interval in progress into a point per pipeline. Called by the timer; tests call it. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      let drops: DropCounts = {};
      try {
        drops = await this.options.drops();
      } catch (err) {
        if (!this.failureLogged)
          this.options.log.warn({ err: errorMessage(err) }, 'status page history: drop counters unreadable');
        this.failureLogged = true;
      }
      const now = this.clock();
      const seconds = Math.max(0.001, (now - this.lastTick) / 1000);
      this.lastTick = now;
      for (const [name, d] of Object.entries(drops)) this.track(name).kind ??= d.kind;
      for (const [name, t] of this.tracks) {
        const reasons = drops[name]?.reasons ?? t.lastDrops;
        const delta: Record<string, number> = {};
        let dropped = 0;
        for (const [reason, n] of Object.entries(reasons)) {
          const d = n - (t.lastDrops[reason] ?? 0);
          if (d > 0) {
            delta[reason] = d;
            dropped += d;
          }
        }
        t.lastDrops = { ...reasons };
        const s = t.latency.summary();
        t.points.push([
          now,
          Math.round((t.latency.count / seconds) * 100) / 100,
          s?.p50 ?? null,
          s?.p95 ?? null,
          s?.p99 ?? null,
          dropped,
          t.over,
        ]);
        t.dropReasons.push(delta);
        if (t.points.length > this.capacity) {
          t.points.shift();
          t.dropReasons.shift();
        }
        t.latency = new LatencyRecorder(INTERVAL_CAPACITY);
        t.over = 0;
      }
    } finally {
      this.ticking = false;
    }
  }

  /** The kept points, only those after `since` (ms since the epoch) when given. */
  view(since?: number): HistoryView {
    const pipelines: Record<string, PipelineSeries> = {};
    for (const [name, t] of this.tracks) {
      const droppedByReason: Record<string, number> = {};
      for (const d of t.dropReasons)
        for (const [reason, n] of Object.entries(d))
          droppedByReason[reason] = (droppedByReason[reason] ?? 0) + n;
      pipelines[name] = {
        kind: t.kind,
        budgetMs: t.budgetMs,
        points: since === undefined ? [...t.points] : t.points.filter((p) => p[0] > since),
        droppedByReason,
      };
    }
    return { intervalMs: this.intervalMs, windowMs: this.windowMs, fields: HISTORY_FIELDS, pipelines };
  }

  private track(name: string, budgetMs?: number): Track {
    let t = this.tracks.get(name);
    if (!t) {
      t = {
        kind: undefined,
        budgetMs: budgetMs ?? 100,
        latency: new LatencyRecorder(INTERVAL_CAPACITY),
        over: 0,
        points: [],
        dropReasons: [],
        lastDrops: {},
      };
      this.tracks.set(name, t);
    }
    return t;
  }
}

/**
 * Drop counters from the Prometheus metrics the pipelines already keep (frames dropped, windows
 * skipped): reading them costs a walk over a few label sets, where a pipeline snapshot sorts
 * every latency it holds.
 */
export function metricDrops(metrics: Metrics): () => Promise<DropCounts> {
  return async () => {
    const out: DropCounts = {};
    const add = async (counter: Metrics['dropped'] | Metrics['windowsSkipped'], kind: 'frame' | 'window') => {
      for (const v of (await counter.get()).values) {
        const pipeline = v.labels.pipeline;
        const reason = v.labels.reason;
        if (typeof pipeline !== 'string' || typeof reason !== 'string') continue;
        const entry = (out[pipeline] ??= { kind, reasons: {} });
        entry.reasons[reason] = (entry.reasons[reason] ?? 0) + v.value;
      }
    };
    await add(metrics.dropped, 'frame');
    await add(metrics.windowsSkipped, 'window');
    return out;
  };
}
