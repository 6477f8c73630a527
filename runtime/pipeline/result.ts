import type { ExpectationRule } from '../telemetry/reading.js';

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
  /** Telemetry results: the asset whose window was scored (also in `origin`). */
  asset?: string | undefined;
  /** Telemetry results: what the window was and what the model said, beyond the score. */
  details?: TelemetryDetails | undefined;
  /**
   * Frames: sha256 (hex) of the encoded image as it arrived. The frame itself is not stored, so
   * this is what ties a result to the bytes a camera sent (docs/OBSERVABILITY.md, trace ids).
   */
  payloadSha256?: string | undefined;
  /**
   * Present when the pipeline's data-quality policy is `flag` and the input broke an
   * expectation: the model scored it anyway, and says so (docs/DATA-QUALITY.md).
   */
  dataQuality?: DataQualityFlag | undefined;
}

/** Why a scored input was flagged: the broken expectations, at most 16, newest first. */
export interface DataQualityFlag {
  flagged: true;
  violations: Array<{
    source: string;
    /** Telemetry: the asset and tag; frames: absent. */
    asset?: string | undefined;
    tag?: string | undefined;
    rule: ExpectationRule;
    message: string;
  }>;
}

/**
 * What a telemetry result or alert says beyond its score. `topTags` are the tags whose latest
 * normalised value (z-score against the model's training statistics) deviates most: an
 * attribution by input deviation, not by the model's own reasoning.
 */
export interface TelemetryDetails {
  /** Where the window starts and ends on the axis: a step index (time axis) or a counter value (cycles, hours). */
  axisStart: number;
  axisEnd: number;
  /** Time of the window's last readings (ms since the epoch, source time where the device gave one). */
  endTime: number;
  /** Predicted remaining useful life (rul models), in `unit`. */
  rul?: number | undefined;
  /** Probability of failure within `horizon` (failure_probability models). */
  probability?: number | undefined;
  /** Anomaly score, higher is more unusual (anomaly models). */
  anomaly?: number | undefined;
  unit?: 'cycles' | 'hours' | undefined;
  horizon?: number | undefined;
  /** How long before the predicted failure, in `unit`: the predicted RUL (rul models). */
  leadTime?: number | undefined;
  /** The (up to) 3 tags with the largest |z| at the window's last step. */
  topTags: Array<{ tag: string; z: number }>;
  /** Alerts only: raised when the score crossed alert.raise, cleared when it came back past alert.clear. */
  state?: 'raised' | 'cleared' | undefined;
  /** Cleared alerts: the id of the alert they clear. */
  clears?: string | undefined;
  /**
   * The trace ids (Reading.traceId) of the messages whose readings made the window's last step,
   * at most 16: the way from a result back to the messages a device sent.
   */
  traceIds?: string[] | undefined;
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
   * in the vigil_alert_latency_seconds histogram. Telemetry alerts: from the window being
   * ready (its last step final) until stored.
   */
  latencyMs: number;
  /** Telemetry alerts: the asset (also in `origin`). */
  asset?: string | undefined;
  /** Telemetry alerts: state (raised/cleared), RUL or probability, lead time, top tags. */
  details?: TelemetryDetails | undefined;
  /** Frame alerts: sha256 (hex) of the frame as it arrived (the result's payloadSha256). */
  payloadSha256?: string | undefined;
  /**
   * A result's alert: as the result's, the input broke an expectation and was scored under the
   * `flag` policy. A `data_quality` alert: what broke, raised or cleared (DataQualityAlert).
   */
  dataQuality?: DataQualityFlag | DataQualityAlertDetails | undefined;
}

/**
 * What a `data_quality` alert carries beyond the common Alert fields (docs/DATA-QUALITY.md): one
 * rule of one series (source, asset, tag) raised after repeated violations, or cleared.
 */
export interface DataQualityAlertDetails {
  state: 'raised' | 'cleared';
  /** Cleared alerts: the id of the alert they clear. */
  clears?: string | undefined;
  rule: ExpectationRule;
  /** Telemetry and payload rules: the asset; frames: absent. */
  asset?: string | undefined;
  /** Per-tag rules: the tag as the source names it. */
  tag?: string | undefined;
  /** The latest violation, in words (raised), or why it cleared. */
  message: string;
  /** schema_drift only: the payload fields that appeared, disappeared or changed their JSON type. */
  fields?: { added: string[]; removed: string[]; changed: string[] } | undefined;
  /** The trace id of the latest offending reading or message, where it had one. */
  traceId?: string | undefined;
  /**
   * Every pipeline that reads the source, in config order (the alert's `pipeline` is the first);
   * empty when none does.
   */
  pipelines: string[];
}

/** A data-quality alert: an ordinary Alert of kind `data_quality` with its details under `dataQuality`. */
export interface DataQualityAlert extends Alert {
  kind: 'data_quality';
  dataQuality: DataQualityAlertDetails;
}
