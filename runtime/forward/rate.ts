import { performance } from 'node:perf_hooks';

/**
 * A token bucket of rows: it refills at `ratePerSecond` up to `burst`, so that a link coming
 * back after hours offline receives the backlog at a steady pace instead of all at once.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Rows that may be sent now (fractional). */
  available(): number {
    this.refill();
    return this.tokens;
  }

  take(rows: number): void {
    this.refill();
    this.tokens -= rows;
  }

  /** Milliseconds until `rows` tokens are available (0 when they are). */
  msUntil(rows: number): number {
    this.refill();
    const missing = Math.min(rows, this.burst) - this.tokens;
    return missing <= 0 ? 0 : Math.ceil((missing / this.ratePerSecond) * 1000);
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond);
    this.last = t;
  }
}

/** Rows per second over a sliding window (acknowledged rows, for the status and a gauge). */
export class RateMeter {
  private readonly events: { at: number; rows: number }[] = [];
  private total = 0;

  constructor(
    private readonly windowMs = 10_000,
    private readonly now: () => number = () => performance.now(),
    private readonly since = now(),
  ) {}

  add(rows: number): void {
    this.events.push({ at: this.now(), rows });
    this.total += rows;
    this.prune();
  }

  perSecond(): number {
    this.prune();
    const t = this.now();
    // Measured over the time since the meter started while that is shorter than the window, so
    // that the first seconds of a drain do not read low; never over less than one second.
    const span = Math.max(1_000, Math.min(this.windowMs, t - this.since));
    return (this.total * 1000) / span;
  }

  private prune(): void {
    const oldest = this.now() - this.windowMs;
    let drop = 0;
    while (drop < this.events.length && this.events[drop]!.at < oldest) {
      this.total -= this.events[drop]!.rows;
      drop++;
    }
    if (drop > 0) this.events.splice(0, drop);
  }
}
