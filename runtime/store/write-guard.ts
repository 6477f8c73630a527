import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/** How often a store that refused a write is probed again, and the Retry-After a camera is given. */
export const STORE_PROBE_INTERVAL_MS = 2_000;

/**
 * Whether the store takes writes, as the frame sources need to know it: once a result could not
 * be stored (a full disk), sources that can tell their sender to come back later (the HTTP
 * camera answers 503, the folder camera leaves its files in place) refuse new frames, instead of
 * taking frames that could only be dropped. A small write of the store's own is tried every
 * STORE_PROBE_INTERVAL_MS; the first that succeeds lets frames in again, so no real frame is
 * sacrificed to find out. Frames already being processed when the disk filled are lost and
 * counted (`store_error`).
 */
export class StoreWriteGuard {
  private timer: NodeJS.Timeout | undefined;
  private since: number | undefined;

  constructor(
    private readonly probe: () => void,
    private readonly log: Logger,
    private readonly intervalMs = STORE_PROBE_INTERVAL_MS,
  ) {}

  /** True from a failed write until a probe write succeeds. */
  get refusing(): boolean {
    return this.since !== undefined;
  }

  /** A write failed: refuse frames and start probing. */
  failed(): void {
    if (this.since !== undefined) return;
    this.since = Date.now();
    this.log.warn(
      `the store refuses writes: frame sources refuse new frames (HTTP 503) and the store is tried again every ${this.intervalMs / 1000} s`,
    );
    this.timer = setInterval(() => this.tryProbe(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tryProbe(): void {
    try {
      this.probe();
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'the store still refuses writes');
      return;
    }
    const seconds = Math.round((Date.now() - this.since!) / 100) / 10;
    this.since = undefined;
    this.stop();
    this.log.info({ seconds }, `the store takes writes again after ${seconds} s: frames are taken again`);
  }
}
