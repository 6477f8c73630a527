import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import type { Manifest } from '../model/manifest.js';
import type { Alert, Result } from './result.js';

/**
 * One sample after its result is stored: what the status page shows and what drift monitoring
 * compares against the model's reference statistics. `input` is the preprocessed tensor exactly
 * as the engine received it (frames: the normalised image in the manifest's layout; telemetry:
 * the window or summary features); it is shared, so an observer that keeps it must copy it.
 */
export interface ScoredSample {
  pipeline: string;
  kind: 'frame' | 'window';
  /** The manifest of the version that scored this sample. */
  manifest: Manifest;
  input: Float32Array;
  result: Result;
  alert?: Alert | undefined;
  /** Frames only: the encoded image as it arrived (JPEG or PNG); never copied by the pipeline. */
  frame?: { data: Buffer; contentType?: string | undefined } | undefined;
}

/**
 * Told about every scored sample, synchronously on the pipeline's path after the store write:
 * an observer must be cheap (record, not compute) and must not throw.
 */
export interface PipelineObserver {
  scored(sample: ScoredSample): void;
}

/** Calls every observer; one that throws is logged once and never breaks the pipeline. */
export function notifyObservers(
  observers: readonly PipelineObserver[] | undefined,
  sample: ScoredSample,
  log: Logger,
): void {
  if (!observers) return;
  for (const o of observers) {
    try {
      o.scored(sample);
    } catch (err) {
      log.error({ pipeline: sample.pipeline, err: errorMessage(err) }, 'pipeline observer failed');
    }
  }
}
