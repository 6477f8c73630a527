import path from 'node:path';
import { silentLogger } from '../../runtime/log.js';
import type { FrameSample } from '../../runtime/pipeline/sample.js';
import type { IngestMark, InputRejectReason, SourceContext } from '../../runtime/pipeline/source.js';
import type { Reading } from '../../runtime/telemetry/reading.js';

/** One readingsDurable() call: what the source handed over and under which mark. */
export interface DurableCall {
  batch: readonly Reading[];
  mark: IngestMark | undefined;
  /** Whether the promise given back has resolved (the source may acknowledge by now). */
  resolved: boolean;
}

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
  /** Every readingsDurable() call, in order; its readings are in `received` too. */
  readonly durable: DurableCall[] = [];
  /**
   * While true, the promises of readingsDurable() stay pending until releaseDurable(), as they do
   * while the store has not committed: a test proves with it that the source's acknowledgement waits.
   */
  holdDurable = false;
  reconnects = 0;
  /** What the source is told about the store refusing writes (SourceContext.storeRefusing). */
  storeRefusing: (() => boolean) | undefined = undefined;
  private waiters: Array<() => void> = [];
  private held: Array<() => void> = [];

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

  readingsDurable = (batch: readonly Reading[], mark?: IngestMark): Promise<{ duplicate: boolean }> => {
    const call: DurableCall = { batch, mark, resolved: false };
    this.durable.push(call);
    this.readings(batch);
    return new Promise((resolve) => {
      const release = () => {
        call.resolved = true;
        resolve({ duplicate: false });
        this.wake();
      };
      if (this.holdDurable) this.held.push(release);
      else release();
    });
  };

  /** Resolves every readingsDurable() promise held so far (and holds no more if `stopHolding`). */
  releaseDurable(stopHolding = true): void {
    if (stopHolding) this.holdDurable = false;
    for (const release of this.held.splice(0)) release();
  }

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
