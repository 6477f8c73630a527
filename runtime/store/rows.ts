import type { DataQualityFlag, Result, StageTimings, TelemetryDetails } from '../pipeline/result.js';

/** A row of the results table as SQLite returns it. */
export interface ResultRow {
  seq: number;
  id: string;
  sample_id: string;
  pipeline: string;
  source: string;
  origin: string;
  received_at: number;
  produced_at: number;
  model_name: string;
  model_version: string;
  backend: string;
  provider: string;
  label: string;
  confidence: number;
  score: number;
  threshold: number;
  scores: string;
  latency_ms: number;
  stages: string;
  alert_id: string | null;
  asset: string | null;
  details: string | null;
  /** Frames: sha256 (hex) of the image as it arrived; NULL for telemetry and rows before schema 5. */
  payload_sha256: string | null;
  /** JSON DataQualityFlag; NULL unless scored under the 'flag' policy with a broken expectation. */
  data_quality: string | null;
}

export function rowToResult(row: ResultRow): Result {
  return {
    id: row.id,
    sampleId: row.sample_id,
    pipeline: row.pipeline,
    source: row.source,
    origin: row.origin,
    receivedAt: row.received_at,
    producedAt: row.produced_at,
    model: { name: row.model_name, version: row.model_version, backend: row.backend, provider: row.provider },
    label: row.label,
    confidence: row.confidence,
    score: row.score,
    threshold: row.threshold,
    scores: JSON.parse(row.scores) as Record<string, number>,
    latencyMs: row.latency_ms,
    stages: JSON.parse(row.stages) as StageTimings,
    alertId: row.alert_id ?? undefined,
    ...(row.asset !== null ? { asset: row.asset } : {}),
    ...(row.details !== null ? { details: JSON.parse(row.details) as TelemetryDetails } : {}),
    ...(row.payload_sha256 !== null ? { payloadSha256: row.payload_sha256 } : {}),
    ...(row.data_quality !== null ? { dataQuality: JSON.parse(row.data_quality) as DataQualityFlag } : {}),
  };
}
