import type { FrameSample } from './sample.js';

export type DropReason = 'superseded' | 'deadline';

const RECENT_SAMPLES = 16;
const ESTIMATE_WINDOW_MS = 5_000;
/** Service times over the budget in a row that must be seen before they alone drop frames. */
const CONFIRMING_SAMPLES = 3;

/**
 * The admission policy of one pipeline: a bounded set of pending frames, one slot per source
 * (a camera keeps only its latest pending frame), served oldest-first, and a deadline check at
 * the moment a frame would start processing. Pure logic, no timers: the pipeline drives it.
 */
export class FrameScheduler {
  private readonly pending = new Map<string, FrameSample>();
  /** Recent service times (dequeue to stored) with when they were observed. */
  private readonly recent: Array<{ at: number; ms: number }> = [];
  /**
   * Service times over the budget in a row, whenever they were seen: only a frame that makes
   * its budget resets it, so a model that is slow every time stays confirmed across windows.
   */
  private overBudgetInARow = 0;

  constructor(
    private readonly budgetMs: number,
    private readonly onDrop: (sample: FrameSample, reason: DropReason) => void,
  ) {}

  /** Queues a frame; an older pending frame of the same source is dropped as superseded. */
  offer(sample: FrameSample): void {
    const previous = this.pending.get(sample.source);
    if (previous) this.onDrop(previous, 'superseded');
    this.pending.delete(sample.source);
    this.pending.set(sample.source, sample);
  }

  get size(): number {
    return this.pending.size;
  }

  /**
   * The next frame that can still make its deadline, or undefined. Frames that cannot (time
   * already waited plus the expected service time exceeds the budget) are dropped on the way.
   */
  next(now: number): FrameSample | undefined {
    const estimate = this.estimateAt(now);
    while (this.pending.size > 0) {
      let oldest: FrameSample | undefined;
      for (const s of this.pending.values()) if (!oldest || s.arrivedAt < oldest.arrivedAt) oldest = s;
      this.pending.delete(oldest!.source);
      if (now - oldest!.arrivedAt + estimate > this.budgetMs) {
        this.onDrop(oldest!, 'deadline');
        continue;
      }
      return oldest;
    }
    return undefined;
  }

  /** Feeds back how long a frame took from dequeue to stored, observed at `now`. */
  observeService(ms: number, now: number): void {
    this.overBudgetInARow = ms >= this.budgetMs ? this.overBudgetInARow + 1 : 0;
    this.recent.push({ at: now, ms });
    if (this.recent.length > RECENT_SAMPLES) this.recent.shift();
  }

  /**
   * The least service time seen in the last few seconds: optimistic on purpose, so that only
   * frames that surely cannot make it are dropped. Old observations expire, so one slow frame
   * (a cold cache, a burst of load) cannot make the pipeline drop everything that follows
   * forever: with no recent observation the next frame is tried. Until CONFIRMING_SAMPLES
   * service times in a row exceed the budget, an estimate over it is taken for an outlier (the
   * first inference after start, a stall) and frames are served to measure again, instead of
   * every frame being dropped until the outlier expires (seen in the load drills: one 125 ms
   * frame at start, then 51 frames dropped). A model that is slow every time stays confirmed,
   * so that it is tried once per expired window, as before, not served late frame after frame.
   */
  estimateAt(now: number): number {
    let best = Infinity;
    for (const r of this.recent) if (now - r.at <= ESTIMATE_WINDOW_MS && r.ms < best) best = r.ms;
    if (best === Infinity) return 0;
    return best >= this.budgetMs && this.overBudgetInARow < CONFIRMING_SAMPLES ? 0 : best;
  }

  /** Drops everything pending (on stop). */
  drain(): FrameSample[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    return all;
  }
}
