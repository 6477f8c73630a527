import type { StoreConfig } from './config/schema.js';
import { errorMessage } from './errors.js';
import type { Logger } from './log.js';
import type { Store } from './store/store.js';

/**
 * The store's periodic housekeeping, off the hot path: retention of delivered rows, quotas and
 * the free-disk floor, and WAL checkpoints. A pass that has more work than it should do in one
 * go (a large deletion) continues on the next turn of the event loop, so that frames keep their
 * budget.
 */
export class StoreUpkeep {
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly cfg: StoreConfig,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.every(60_000, () => this.retentionPass());
    this.every(this.cfg.quotaCheckSeconds * 1000, () => this.quotaPass());
    this.every(this.cfg.checkpointIntervalSeconds * 1000, () => this.checkpoint());
    // Quotas are checked once at start too: a gateway that rebooted with a full disk must make
    // room before its sources fill it further.
    this.quotaPass();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  private retentionPass(): void {
    if (this.stopped) return;
    try {
      const outcome = this.store.applyRetention(Date.now());
      if (outcome.readingsMore) setImmediate(() => this.retentionPass());
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'retention pass failed');
    }
  }

  private quotaPass(): void {
    if (this.stopped) return;
    try {
      const outcome = this.store.enforceQuota(Date.now());
      if (outcome.more) setImmediate(() => this.quotaPass());
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'quota check failed');
    }
  }

  private checkpoint(): void {
    if (this.stopped) return;
    try {
      this.store.checkpoint('PASSIVE');
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'WAL checkpoint failed');
    }
  }
}
