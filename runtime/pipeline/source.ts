import type { Logger } from '../log.js';
import type { Sample } from './sample.js';

/**
 * The one interface an adapter implements to bring the outside world in. The runtime defines it;
 * adapters/ implement it; the composition root wires them together.
 */
export interface Source {
  readonly name: string;
  readonly type: string;
  /**
   * Starts taking input. `signal` is the daemon's lifetime: it is aborted when the daemon stops,
   * which must end a start still in progress (a slow connect) and everything the source runs.
   */
  start(signal: AbortSignal): Promise<void>;
  /** Releases everything start() took: watchers, sockets, timers. Idempotent. */
  stop(): Promise<void>;
  /** Connection / readiness state, for /readyz and metrics. */
  state(): SourceState;
}

export type SourceState = 'starting' | 'up' | 'down' | 'stopped';

/** Why an input was refused before it became a sample; each is counted in metrics. */
export type InputRejectReason =
  'empty' | 'too_large' | 'not_an_image' | 'incomplete' | 'read_error' | 'bad_request';

export interface SourceContext {
  log: Logger;
  /** Hand a sample to the pipelines that read this source. Never throws. */
  emit(sample: Sample): void;
  /** Count and log an input that never became a sample. Never throws. */
  reject(reason: InputRejectReason, message: string, origin: string): void;
}
