import type { SimClock } from '../machines/clock.js';
import type { Protocol } from './schema.js';

/**
 * The protocol faults of a scenario as an ordered list of link-down and link-up events, and a
 * small runner that calls back at each one. The simulator's composition root turns the callbacks
 * into stopping and restarting the OPC-UA server, closing and reopening a pty, or dropping the
 * MQTT publisher's connection.
 */

export interface ProtocolFaultEvent {
  /** Wall-clock seconds since the scenario started. */
  atSeconds: number;
  action: 'down' | 'up';
  kind: 'server-restart' | 'cable-pull' | 'broker-disconnect';
  protocol: Protocol;
  /** The machines whose link this is. */
  assets: string[];
  /** Index of the fault in the scenario's `faults` list: pairs a `down` with its `up`. */
  fault: number;
}

export type TimelineHandler = (event: ProtocolFaultEvent) => void | Promise<void>;

export interface TimelineRun {
  /** Settles once every event has been handled, or the run was stopped. */
  done: Promise<void>;
  stop(): void;
}

/**
 * Calls `handler` for each event when the clock's wall time reaches it (events already due fire at
 * once, in order). Handlers run one at a time, so a slow restart cannot reorder events. A handler
 * that throws is reported to `onError` and the timeline goes on.
 */
export function runTimeline(
  events: readonly ProtocolFaultEvent[],
  clock: SimClock,
  handler: TimelineHandler,
  opts: { signal?: AbortSignal; onError?: (err: unknown, event: ProtocolFaultEvent) => void } = {},
): TimelineRun {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const stop = (): void => {
    stopped = true;
    if (timer) clearTimeout(timer);
    wake?.();
  };
  opts.signal?.addEventListener('abort', stop, { once: true });
  const sorted = [...events].sort((a, b) => a.atSeconds - b.atSeconds);
  const done = (async () => {
    try {
      for (const event of sorted) {
        const wait = clock.startWallMs + event.atSeconds * 1000 - clock.now();
        if (wait > 0 && !stopped)
          await new Promise<void>((resolve) => {
            wake = resolve;
            timer = setTimeout(resolve, wait);
          });
        if (stopped) return;
        try {
          await handler(event);
        } catch (err) {
          opts.onError?.(err, event);
        }
      }
    } finally {
      opts.signal?.removeEventListener('abort', stop);
    }
  })();
  if (opts.signal?.aborted) stop();
  return { done, stop };
}
