import path from 'node:path';
import { silentLogger } from '../../runtime/log.js';
import type { FrameSample } from '../../runtime/pipeline/sample.js';
import type { InputRejectReason, SourceContext } from '../../runtime/pipeline/source.js';
import type { Reading } from '../../runtime/telemetry/reading.js';

export interface Rejection {
  reason: InputRejectReason;
  message: string;
  origin: string;
}

/** A SourceContext that records what a source emits and refuses, and lets a test wait for it. */
export class Recorder implements SourceContext {
  readonly log = silentLogger();
  resolvePath = (p: string): string => path.resolve(p);
  readonly samples: FrameSample[] = [];
  readonly rejections: Rejection[] = [];
  /** Readings exactly as the source handed them over (the runtime's checks are not applied here). */
  readonly received: Reading[] = [];
  reconnects = 0;
  private waiters: Array<() => void> = [];

  emit = (sample: FrameSample): void => {
    this.samples.push(sample);
    this.wake();
  };

  reject = (reason: InputRejectReason, message: string, origin: string): void => {
    this.rejections.push({ reason, message, origin });
    this.wake();
  };

  readings = (batch: readonly Reading[]): void => {
    this.received.push(...batch);
    this.wake();
  };

  reconnected = (): void => {
    this.reconnects += 1;
    this.wake();
  };

  /** Readings of one asset and tag, in arrival order. */
  series(asset: string, tag: string): Reading[] {
    return this.received.filter((r) => r.asset === asset && r.tag === tag);
  }

  /** Resolves once `done()` holds; fails the test with what was seen if it does not in time. */
  async until(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out waiting for ${what}; samples: [${this.samples.map((s) => s.origin).join(', ')}], ` +
            `rejections: [${this.rejections.map((r) => `${r.origin}:${r.reason}`).join(', ')}], ` +
            `readings: ${this.received.length}, reconnects: ${this.reconnects}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
