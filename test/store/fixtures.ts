import type { Alert, Result } from '../../runtime/pipeline/result.js';
import type BetterSqlite3 from 'better-sqlite3';
import { readings } from './helpers.js';

/** A plausible result (and, with `alert: true`, its alert) for store and publisher tests. */
export function makeResult(
  n: number,
  opts: { producedAt?: number; alert?: boolean; pipeline?: string } = {},
): {
  result: Result;
  alert: Alert | undefined;
} {
  const producedAt = opts.producedAt ?? 1_700_000_000_000 + n;
  const pipeline = opts.pipeline ?? 'line1';
  const model = { name: 'defect', version: '1.2.0', backend: 'onnx', provider: 'cpu' };
  const alertId = opts.alert ? `alert-${n}` : undefined;
  const result: Result = {
    id: `result-${n}`,
    sampleId: `sample-${n}`,
    pipeline,
    source: 'cam1',
    origin: `frame-${n}.jpg`,
    receivedAt: producedAt - 12,
    producedAt,
    model,
    label: opts.alert ? 'scratch' : 'ok',
    confidence: 0.91,
    score: opts.alert ? 0.91 : 0.09,
    threshold: 0.5,
    scores: opts.alert ? { ok: 0.09, scratch: 0.91 } : { ok: 0.91, scratch: 0.09 },
    latencyMs: 12.5,
    stages: { queue: 0.1, decode: 2, preprocess: 3, inference: 6, postprocess: 0.2, store: 0.3 },
    alertId,
  };
  const alert: Alert | undefined = opts.alert
    ? {
        id: alertId!,
        timestamp: new Date(producedAt).toISOString(),
        device: 'gw-7',
        pipeline,
        source: 'cam1',
        sampleId: result.sampleId,
        origin: result.origin,
        kind: 'defect',
        severity: 'critical',
        label: 'scratch',
        score: 0.91,
        threshold: 0.5,
        model,
        latencyMs: 12.5,
      }
    : undefined;
  return { result, alert };
}

/**
 * Writes `count` readings into a database at an old schema version, through the readings
 * columns every version has had (a migration test's starting rows).
 */
export function insertOldReadings(db: BetterSqlite3.Database, count: number): void {
  const insert = db.prepare(
    'INSERT INTO readings (source, asset, tag, value, quality, status, source_time, server_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  for (const r of readings(count))
    insert.run(r.source, r.asset, r.tag, r.value, r.quality, null, r.sourceTime, null, r.receivedAt);
}
