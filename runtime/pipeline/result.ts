/** Per-stage timings of one sample, in milliseconds. */
export interface StageTimings {
  /** Waiting in the scheduler's slot before processing began. */
  queue: number;
  decode: number;
  preprocess: number;
  inference: number;
  postprocess: number;
  store: number;
  /** Only for samples that raised an alert: publish call until the broker's PUBACK. */
  publish?: number;
}

/** The outcome of one processed sample; every one is stored. */
export interface Result {
  /** Stable id (UUIDv7, time-ordered); receivers de-duplicate on it. */
  id: string;
  sampleId: string;
  pipeline: string;
  source: string;
  origin: string;
  receivedAt: number;
  /** Wall-clock time the result was produced, ms since the epoch. */
  producedAt: number;
  model: { name: string; version: string; backend: string; provider: string };
  /** Top label and its probability. */
  label: string;
  confidence: number;
  /** 1 - p(ok): the score compared against the threshold. */
  score: number;
  threshold: number;
  /** Probability per label. */
  scores: Record<string, number>;
  /** Arrival to stored, ms. */
  latencyMs: number;
  stages: StageTimings;
  alertId?: string | undefined;
}

export type Severity = 'info' | 'warning' | 'critical';

/**
 * An alert as published on `<prefix>/<device>/alerts/<kind>`. The field names are a public
 * contract (docs/MQTT.md); add fields freely, never rename or remove one.
 */
export interface Alert {
  id: string;
  /** ISO 8601 time the alert was raised. */
  timestamp: string;
  device: string;
  pipeline: string;
  source: string;
  sampleId: string;
  origin: string;
  kind: string;
  severity: Severity;
  label: string;
  score: number;
  threshold: number;
  model: { name: string; version: string; backend: string; provider: string };
  /**
   * Frame arrival until the alert was decided and written to the store, ms: the same figure in
   * the live message and in one re-sent after an outage. The broker round trip (to PUBACK) is
   * in the vigil_alert_latency_seconds histogram.
   */
  latencyMs: number;
}
