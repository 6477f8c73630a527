import type { HealthReport } from '../http.js';
import type { PipelineFrames } from '../frame-gallery.js';
import type { HistoryView } from '../history.js';

/**
 * The body of GET /api/v1/live: everything the status page shows, in one small document. Built
 * from the daemon's health and status (read defensively: fields appear as features land, and a
 * missing one must leave a blank, not a broken page), the recent alerts, the frame gallery and
 * the latency history.
 */
export interface LiveView {
  now: number;
  /** When the status part (store, telemetry counts, rollout, drift) was read: it is reused for a few seconds. */
  statusAt: number;
  device: string | undefined;
  version: string | undefined;
  startedAt: string | undefined;
  ready: boolean;
  /** Why not ready, in words; empty when ready. */
  reasons: string[];
  mqtt: { connected: boolean };
  upstream: LiveUpstream;
  models: LiveModel[];
  sources: LiveSource[];
  store: LiveStore | undefined;
  telemetryPipelines: LiveTelemetryPipeline[];
  alerts: LiveAlert[];
  frames: Record<string, PipelineFrames>;
  history: HistoryView | undefined;
  /** status().drift as the drift monitor reports it; absent: no model has reference statistics. */
  drift: Record<string, LiveDrift> | undefined;
}

export interface LiveUpstream {
  enabled: boolean;
  state?: string | undefined;
  drainRowsPerSecond?: number | undefined;
  lastError?: string | undefined;
  /** Per data class: rows waiting, age of the oldest in seconds, delivered since the start. */
  classes: Record<string, { rows: number; ageSeconds: number; delivered: number }>;
}

export interface LiveModel {
  name: string;
  model?: string | undefined;
  version?: string | undefined;
  backend?: string | undefined;
  provider?: string | undefined;
  /** Asked for in the config, when it differs from what is in use (a provider fell back). */
  requested?: string[] | undefined;
  ready: boolean;
  error?: string | undefined;
  rollout?:
    | {
        state: string;
        candidate?: string | undefined;
        reason?: string | undefined;
        message?: string | undefined;
      }
    | undefined;
}

export interface LiveSource {
  name: string;
  type?: string | undefined;
  state: string;
  /** Telemetry sources: accepted readings since the start (good, uncertain and bad). */
  readings?: number | undefined;
  /** Telemetry sources: refused inputs by reason. */
  rejected?: Record<string, number> | undefined;
  reconnects?: number | undefined;
  lastReadingAt?: number | null | undefined;
}

export interface LiveStore {
  error?: string | undefined;
  classes: Record<string, { rows: number; bytes?: number | undefined; quotaBytes?: number | undefined }>;
  outboxAlerts?: number | undefined;
}

export interface LiveTelemetryPipeline {
  name: string;
  model?: string | undefined;
  version?: string | undefined;
  assets: number;
  windowsScored: number;
  windowsSkipped: Record<string, number>;
  pending: number;
  activeAlerts: Record<string, { kind: string; since: string; score: number }>;
}

export interface LiveAlert {
  id: string;
  timestamp: string;
  pipeline: string;
  kind: string;
  severity: string;
  label: string;
  score: number;
  threshold: number;
  model: string;
  version: string;
  latencyMs: number;
  origin: string;
  asset?: string | undefined;
  state?: string | undefined;
  /** Acknowledged by the broker. */
  published: boolean;
}

export interface LiveDriftMeasure {
  name: string;
  test: string;
  value: number;
  threshold: number;
  drifted: boolean;
  samples: number;
}

export interface LiveDrift {
  model: string;
  version: string;
  windowSamples: number;
  input: LiveDriftMeasure[];
  output: LiveDriftMeasure[];
  active: boolean;
  alerts: number;
  lastChange?: string | undefined;
}

export interface LiveInputs {
  now: number;
  statusAt: number;
  health: HealthReport;
  /** The /readyz verdict on `health`. */
  ready: boolean;
  status: unknown;
  alerts: unknown[];
  frames?: Record<string, PipelineFrames> | undefined;
  history?: HistoryView | undefined;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const counts = (v: unknown): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(obj(v) ?? {})) if (num(n) !== undefined) out[k] = n as number;
  return out;
};

export function liveView(i: LiveInputs): LiveView {
  const status = obj(i.status) ?? {};
  const { health } = i;
  return {
    now: i.now,
    statusAt: i.statusAt,
    device: str(status.device),
    version: str(status.version),
    startedAt: str(status.startedAt),
    ready: i.ready,
    reasons: notReadyReasons(health),
    mqtt: { connected: health.mqtt.connected },
    upstream: upstreamOf(status.upstream),
    models: modelsOf(health, obj(status.rollout)),
    sources: sourcesOf(health, obj(status.telemetry) ?? {}),
    store: storeOf(status.store),
    telemetryPipelines: telemetryOf(obj(status.telemetryPipelines) ?? {}),
    alerts: i.alerts.flatMap((a) => alertOf(a) ?? []),
    frames: i.frames ?? {},
    history: i.history,
    drift: driftOf(status.drift),
  };
}

export function notReadyReasons(report: HealthReport): string[] {
  const reasons: string[] = [];
  for (const m of report.models) {
    if (m.ready) continue;
    reasons.push(m.error ? `model ${m.name}: ${m.error.message}` : `model ${m.name} is loading`);
  }
  if (report.store?.open === false) reasons.push('the store is closed');
  if (report.ready === false && reasons.length === 0) reasons.push('starting or stopping');
  return reasons;
}

function upstreamOf(raw: unknown): LiveUpstream {
  const u = obj(raw);
  if (!u || u.enabled !== true) return { enabled: false, classes: {} };
  const classes: LiveUpstream['classes'] = {};
  for (const [cls, c] of Object.entries(obj(u.classes) ?? {})) {
    const o = obj(c) ?? {};
    classes[cls] = {
      rows: num(o.rows) ?? 0,
      ageSeconds: num(o.ageSeconds) ?? 0,
      delivered: num(o.deliveredThisRun) ?? 0,
    };
  }
  return {
    enabled: true,
    state: str(u.state),
    drainRowsPerSecond: num(u.drainRowsPerSecond),
    lastError: str(u.lastError),
    classes,
  };
}

function modelsOf(health: HealthReport, rollout: Obj | undefined): LiveModel[] {
  return health.models.map((m) => {
    const r = obj(rollout?.[m.name]);
    const last = obj(r?.lastDecision);
    return {
      name: m.name,
      model: m.model,
      version: m.version,
      backend: m.backend,
      provider: m.provider,
      ...(m.fallbacks?.length ? { requested: m.requested } : {}),
      ready: m.ready,
      ...(m.error ? { error: m.error.message } : {}),
      ...(r
        ? {
            rollout: {
              state: str(r.state) ?? 'unknown',
              candidate: str(obj(r.candidate)?.version),
              reason: str(last?.reason),
              message: str(last?.message),
            },
          }
        : {}),
    };
  });
}

function sourcesOf(health: HealthReport, telemetry: Obj): LiveSource[] {
  return health.sources.map((s) => {
    const t = obj(telemetry[s.name]);
    if (!t) return { name: s.name, type: s.type, state: s.state };
    const readings = counts(t.readings);
    return {
      name: s.name,
      type: s.type,
      state: s.state,
      readings: Object.values(readings).reduce((a, b) => a + b, 0),
      rejected: counts(t.rejected),
      reconnects: num(t.reconnects),
      lastReadingAt: num(t.lastReadingAt) ?? null,
    };
  });
}

function storeOf(raw: unknown): LiveStore | undefined {
  const s = obj(raw);
  if (!s) return undefined;
  const classes: LiveStore['classes'] = {};
  for (const [cls, c] of Object.entries(obj(s.classes) ?? {})) {
    const o = obj(c) ?? {};
    classes[cls] = { rows: num(o.rows) ?? 0, bytes: num(o.bytes), quotaBytes: num(o.quotaBytes) };
  }
  return { error: str(s.error), classes, outboxAlerts: num(obj(s.outbox)?.alerts) };
}

function telemetryOf(raw: Obj): LiveTelemetryPipeline[] {
  return Object.entries(raw).map(([name, v]) => {
    const p = obj(v) ?? {};
    const model = obj(p.model);
    const activeAlerts: LiveTelemetryPipeline['activeAlerts'] = {};
    for (const [asset, a] of Object.entries(obj(p.activeAlerts) ?? {})) {
      const o = obj(a) ?? {};
      activeAlerts[asset] = { kind: str(o.kind) ?? '', since: str(o.since) ?? '', score: num(o.score) ?? 0 };
    }
    return {
      name,
      model: str(model?.name),
      version: str(model?.version),
      assets: num(p.assets) ?? 0,
      windowsScored: num(p.windowsScored) ?? 0,
      windowsSkipped: counts(p.windowsSkipped),
      pending: num(p.pending) ?? 0,
      activeAlerts,
    };
  });
}

function alertOf(raw: unknown): LiveAlert | undefined {
  const a = obj(raw);
  const id = str(a?.id);
  if (!a || !id) return undefined;
  const model = obj(a.model) ?? {};
  return {
    id,
    timestamp: str(a.timestamp) ?? '',
    pipeline: str(a.pipeline) ?? '',
    kind: str(a.kind) ?? '',
    severity: str(a.severity) ?? '',
    label: str(a.label) ?? '',
    score: num(a.score) ?? 0,
    threshold: num(a.threshold) ?? 0,
    model: str(model.name) ?? '',
    version: str(model.version) ?? '',
    latencyMs: num(a.latencyMs) ?? 0,
    origin: str(a.origin) ?? '',
    asset: str(a.asset),
    state: str(obj(a.details)?.state),
    published: a.publishedAt !== null && a.publishedAt !== undefined,
  };
}

function measuresOf(raw: unknown): LiveDriftMeasure[] {
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((m) => {
    const o = obj(m);
    const name = str(o?.name);
    if (!o || !name) return [];
    return [
      {
        name,
        test: str(o.test) ?? '',
        value: num(o.value) ?? 0,
        threshold: num(o.threshold) ?? 0,
        drifted: o.drifted === true,
        samples: num(o.samples) ?? 0,
      },
    ];
  });
}

function driftOf(raw: unknown): Record<string, LiveDrift> | undefined {
  const d = obj(raw);
  if (!d) return undefined;
  const out: Record<string, LiveDrift> = {};
  for (const [pipeline, v] of Object.entries(d)) {
    const o = obj(v);
    if (!o) continue;
    out[pipeline] = {
      model: str(o.model) ?? '',
      version: str(o.version) ?? '',
      windowSamples: num(o.windowSamples) ?? 0,
      input: measuresOf(o.input),
      output: measuresOf(o.output),
      active: o.active === true,
      alerts: num(o.alerts) ?? 0,
      lastChange: str(o.lastChange),
    };
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
