import type { FrameSample } from './sample.js';

export type DropReason = 'superseded' | 'deadline';

/**
 * The admission policy of one pipeline: a bounded set of pending frames, one slot per source
 * (a camera keeps only its latest pending frame), served oldest-first, and a deadline check at
 * the moment a frame would start processing. Pure logic, no timers: the pipeline drives it.
 */
export class FrameScheduler {
  private readonly pending = new Map<string, FrameSample>();
  /** Exponentially weighted mean of recent service times (dequeue to stored), ms. */
  private serviceEstimateMs = 0;
  private observed = 0;

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
    while (this.pending.size > 0) {
      let oldest: FrameSample | undefined;
      for (const s of this.pending.values()) if (!oldest || s.arrivedAt < oldest.arrivedAt) oldest = s;
      this.pending.delete(oldest!.source);
      if (now - oldest!.arrivedAt + this.serviceEstimateMs > this.budgetMs) {
        this.onDrop(oldest!, 'deadline');
        continue;
      }
      return oldest;
    }
    return undefined;
  }

  /** Feeds back how long a frame took from dequeue to stored. */
  observeService(ms: number): void {
    this.observed++;
    // Warm-up: a plain mean of the first few, then an EWMA that follows load changes.
    const alpha = this.observed < 10 ? 1 / this.observed : 0.1;
    this.serviceEstimateMs += alpha * (ms - this.serviceEstimateMs);
  }

  get estimateMs(): number {
    return this.serviceEstimateMs;
  }

  /** Drops everything pending (on stop). */
  drain(): FrameSample[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    return all;
  }
}
