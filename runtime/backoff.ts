/**
 * Exponential back-off with full jitter, for reconnect loops: a fleet of gateways that lost the
 * same server must not all come back in the same millisecond.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; grows with each call until reset(). */
  next(): number {
    const ceiling = Math.min(this.options.maxMs, this.options.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    // Half fixed, half random: never zero, never the same across a fleet.
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** Call once connected again, so that the next outage starts from the initial delay. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Resolves after `ms`, or at once (without rejecting) when `signal` is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
