import type { Alert } from '../pipeline/result.js';

/**
 * What drift monitoring reports: the contract read by the status page (Daemon.status().drift),
 * the alerts on `<prefix>/<device>/alerts/drift` and docs/DRIFT.md. Field names are public; add
 * fields freely, never rename or remove one.
 */

/** One monitored quantity of one pipeline at its latest evaluation. */
export interface DriftMeasure {
  /** Input feature (`brightness`, `contrast`, `sharpness`; a telemetry tag) or output (`score`, `class`). */
  name: string;
  /** psi: population stability index over the reference bins; ks: two-sample Kolmogorov-Smirnov statistic D. */
  test: 'psi' | 'ks';
  value: number;
  /** The level past which this measure counts as drifted (psiThreshold, or the KS critical value at ksAlpha). */
  threshold: number;
  drifted: boolean;
  /** Live samples the value was computed over. */
  samples: number;
}

/** Drift of one pipeline, as Daemon.status().drift[pipeline] shows it. */
export interface DriftStatus {
  model: string;
  version: string;
  /** Samples (frames or scored windows) in the live window now. */
  windowSamples: number;
  input: DriftMeasure[];
  output: DriftMeasure[];
  /** A drift alert is raised and not yet cleared. */
  active: boolean;
  /** Drift alerts raised since the daemon started. */
  alerts: number;
  /** ISO time of the last raise or clear. */
  lastChange?: string;
}

/** What a drift alert carries beyond the common Alert fields. */
export interface DriftDetails {
  state: 'raised' | 'cleared';
  /** Cleared alerts: the id of the alert they clear. */
  clears?: string | undefined;
  /** Raised: the measures past their threshold; cleared: every measure, all back under their clear level. */
  features: Array<DriftMeasure & { kind: 'input' | 'output' }>;
  /** The live window the measures were computed over. */
  window: { samples: number; from: string; to: string; evaluation: number };
  model: { name: string; version: string };
  /** Where the reference came from: the manifest's distributions, a Gaussian of inputMean/inputStd, or the first live samples. */
  reference: { input: ReferenceOrigin; output: ReferenceOrigin };
}

export type ReferenceOrigin = 'manifest' | 'gaussian' | 'live' | 'none';

/** A drift alert: an ordinary Alert (kind `drift`) with its details under `drift`. */
export interface DriftAlert extends Alert {
  drift: DriftDetails;
}
