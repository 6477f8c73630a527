import { v7 as uuidv7 } from 'uuid';
import { DriftConfig, driftWindow } from '../config/drift.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import { AlertDelivery } from '../pipeline/alert-delivery.js';
import type { PipelineObserver, ScoredSample } from '../pipeline/observer.js';
import type { AlertPublisher } from '../pipeline/pipeline.js';
import type { Alert } from '../pipeline/result.js';
import { DriftTracker, type Evaluation, type Measure } from './tracker.js';
import type { DriftAlert, DriftMeasure, DriftStatus } from './types.js';

const DEFAULTS = DriftConfig.parse({});

/** Where drift alerts are stored before they are published (the Store). */
export interface DriftAlertSink {
  saveAlert(alert: Alert): void;
}

export interface DriftMonitorOptions {
  deviceId: string;
  /** Drift settings per pipeline (pipelines.<name>.drift); a pipeline not listed gets the defaults. */
  configs: Record<string, DriftConfig | undefined>;
  sink: DriftAlertSink;
  publisher: AlertPublisher;
  metrics: Metrics;
  log: Logger;
  /** Runs an evaluation off the pipeline's path; setImmediate by default. */
  defer?: ((fn: () => void) => void) | undefined;
  /** Told about every drift alert once it is stored. */
  onAlert?: ((alert: DriftAlert) => void) | undefined;
}

interface PipelineState {
  name: string;
  cfg: DriftConfig;
  /** The manifest object of the latest sample: compared by identity on the pipeline's path. */
  manifest: ScoredSample['manifest'];
  tracker: DriftTracker;
  /** evaluateEverySamples, resolved for the pipeline's kind. */
  every: number;
  /** Samples since the last evaluation. */
  since: number;
  scheduled: boolean;
  evaluations: number;
  last: Evaluation | undefined;
  active: boolean;
  alertId: string | undefined;
  streak: number;
  alerts: number;
  lastChange: string | undefined;
  /** The newest sample's result: its sources and the engine that served it go into the alert. */
  lastSource: string;
  lastModel: Alert['model'] | undefined;
  /** Metric label sets written, to remove when the model changes. */
  gauges: Array<{ feature: string; test: string }>;
}

/**
 * Drift monitoring of every pipeline (docs/DRIFT.md). As a pipeline observer it records each
 * scored sample's input features and output into a sliding window (cheap, on the pipeline's
 * path); every `evaluateEverySamples` samples it computes PSI and KS against the model's
 * reference off that path, and raises or clears a `drift` alert with hysteresis: raised after
 * `consecutive` evaluations with any measure past its threshold, cleared after as many with
 * every measure back under its clear level. Alerts are stored first, then published.
 */
export class DriftMonitor implements PipelineObserver {
  private readonly states = new Map<string, PipelineState>();
  private readonly disabledLogged = new Set<string>();
  private readonly delivery: AlertDelivery;
  private readonly defer: (fn: () => void) => void;
  private stopped = false;

  constructor(private readonly opts: DriftMonitorOptions) {
    this.delivery = new AlertDelivery(opts.publisher, opts.metrics, opts.log);
    this.defer = opts.defer ?? ((fn) => void setImmediate(fn));
  }

  private configOf(pipeline: string): DriftConfig {
    return this.opts.configs[pipeline] ?? DEFAULTS;
  }

  scored(sample: ScoredSample): void {
    if (this.stopped) return;
    let st = this.states.get(sample.pipeline);
    if (!st || st.manifest !== sample.manifest) {
      st = this.track(sample, st);
      if (!st) return;
    }
    st.tracker.record(sample);
    st.lastSource = sample.result.source;
    st.lastModel = sample.result.model;
    if (++st.since >= st.every && !st.scheduled) {
      // Counted from here, not from when the evaluation runs: one every N samples, however late.
      st.since = 0;
      st.scheduled = true;
      const s = st;
      this.defer(() => {
        s.scheduled = false;
        if (!this.stopped && this.states.get(s.name) === s) this.evaluate(s.name);
      });
    }
  }

  /** A pipeline's first sample, or its first of another manifest: a fresh tracker, the alert state kept. */
  private track(sample: ScoredSample, previous: PipelineState | undefined): PipelineState | undefined {
    const cfg = this.configOf(sample.pipeline);
    if (!cfg.enabled) {
      if (!this.disabledLogged.has(sample.pipeline)) {
        this.disabledLogged.add(sample.pipeline);
        this.opts.log.info(
          { pipeline: sample.pipeline },
          `pipeline ${sample.pipeline}: drift monitoring is off (pipelines.${sample.pipeline}.drift.enabled: false)`,
        );
      }
      return undefined;
    }
    if (
      previous &&
      previous.tracker.model.name === sample.manifest.name &&
      previous.tracker.model.version === sample.manifest.version
    ) {
      // The same version under a new manifest object (a reload): keep the window going.
      previous.manifest = sample.manifest;
      return previous;
    }
    const window = driftWindow(cfg, sample.kind);
    const tracker = new DriftTracker(sample.manifest, sample.kind, cfg, window);
    const { name, version } = tracker.model;
    this.opts.log.info(
      { pipeline: sample.pipeline, model: name, version, reference: tracker.origins },
      `pipeline ${sample.pipeline}: drift of ${name}@${version} is measured against its ${describe(tracker.origins)}` +
        (tracker.notes.length > 0 ? `; ${tracker.notes.join('; ')}` : ''),
    );
    if (previous) this.clearGauges(previous);
    const st: PipelineState = {
      name: sample.pipeline,
      cfg,
      manifest: sample.manifest,
      tracker,
      every: window.evaluateEverySamples,
      since: 0,
      scheduled: false,
      evaluations: previous?.evaluations ?? 0,
      last: undefined,
      // A raised alert stays raised until the new version's windows clear it.
      active: previous?.active ?? false,
      alertId: previous?.alertId,
      streak: 0,
      alerts: previous?.alerts ?? 0,
      lastChange: previous?.lastChange,
      lastSource: sample.result.source,
      lastModel: sample.result.model,
      gauges: [],
    };
    this.states.set(sample.pipeline, st);
    return st;
  }

  /**
   * Evaluates a pipeline's window now and applies the hysteresis; returns the evaluation
   * (undefined while the window is short). Called off the pipeline's path; tests call it directly.
   */
  evaluate(pipeline: string): Evaluation | undefined {
    const st = this.states.get(pipeline);
    if (!st) return undefined;
    let ev: Evaluation | undefined;
    try {
      ev = st.tracker.evaluate();
    } catch (err) {
      this.opts.log.error({ pipeline, err: errorMessage(err) }, 'drift evaluation failed');
      return undefined;
    }
    if (!ev) return undefined;
    st.evaluations++;
    st.last = ev;
    this.setGauges(st, ev);
    const measures = [...ev.input, ...ev.output];
    if (measures.length === 0) return ev;
    const past = st.active ? measures.every((m) => m.value < m.clear) : measures.some((m) => m.drifted);
    if (!past) {
      st.streak = 0;
      return ev;
    }
    if (++st.streak < st.cfg.consecutive) return ev;
    st.streak = 0;
    this.transition(st, ev, st.active ? 'cleared' : 'raised');
    return ev;
  }

  private transition(st: PipelineState, ev: Evaluation, state: 'raised' | 'cleared'): void {
    const { log, metrics } = this.opts;
    const all = [...ev.input, ...ev.output];
    const features = state === 'raised' ? all.filter((m) => m.drifted) : all;
    const worst = [...(state === 'raised' ? features : all)].sort(
      (a, b) => b.value / b.threshold - a.value / a.threshold,
    )[0]!;
    const now = Date.now();
    const { model } = st.tracker;
    const alert: DriftAlert = {
      id: uuidv7(),
      timestamp: new Date(now).toISOString(),
      device: this.opts.deviceId,
      pipeline: st.name,
      source: st.lastSource,
      sampleId: `${st.name}/drift/${st.evaluations}`,
      origin: st.name,
      kind: 'drift',
      severity: state === 'raised' ? 'warning' : 'info',
      label: `${worst.kind}.${worst.name}`,
      score: worst.value,
      threshold: worst.threshold,
      model: st.lastModel ?? { ...model, backend: 'unknown', provider: 'unknown' },
      // From the newest sample of the window to the alert being decided.
      latencyMs: Math.max(0, Math.round(now - ev.to)),
      drift: {
        state,
        ...(state === 'cleared' && st.alertId ? { clears: st.alertId } : {}),
        features: features.map(publicMeasure),
        window: {
          samples: ev.samples,
          from: new Date(ev.from).toISOString(),
          to: new Date(ev.to).toISOString(),
          evaluation: st.evaluations,
        },
        model: { ...model },
        reference: { ...st.tracker.origins },
      },
    };
    try {
      this.opts.sink.saveAlert(alert);
    } catch (err) {
      // Not stored, not decided: the next evaluations decide again.
      log.error({ pipeline: st.name, err: errorMessage(err) }, 'drift alert could not be stored');
      return;
    }
    st.active = state === 'raised';
    st.alertId = st.active ? alert.id : undefined;
    st.lastChange = alert.timestamp;
    if (st.active) st.alerts++;
    metrics.driftAlerts.inc({ pipeline: st.name, state });
    if (st.active) metrics.alerts.inc({ pipeline: st.name, kind: 'drift' });
    else metrics.alertsCleared.inc({ pipeline: st.name, kind: 'drift' });
    metrics.driftActive.set({ pipeline: st.name }, st.active ? 1 : 0);
    const summary = features.map(
      (f) => `${f.kind}.${f.name} ${f.test} ${f.value} (threshold ${f.threshold})`,
    );
    log.warn(
      {
        pipeline: st.name,
        alertId: alert.id,
        state,
        model: `${model.name}@${model.version}`,
        features: summary,
      },
      state === 'raised'
        ? `drift raised on pipeline ${st.name} (${model.name}@${model.version}): ${summary.join(', ')} over the last ${ev.samples} samples`
        : `drift cleared on pipeline ${st.name}: every measure is back under its clear level`,
    );
    this.opts.onAlert?.(alert);
    this.delivery.send(alert, () => undefined);
  }

  private setGauges(st: PipelineState, ev: Evaluation): void {
    const { metrics } = this.opts;
    for (const m of [...ev.input, ...ev.output]) {
      const labels = { pipeline: st.name, feature: `${m.kind}.${m.name}`, test: m.test };
      metrics.driftScore.set(labels, m.value);
      if (!st.gauges.some((g) => g.feature === labels.feature && g.test === labels.test))
        st.gauges.push({ feature: labels.feature, test: labels.test });
    }
    metrics.driftActive.set({ pipeline: st.name }, st.active ? 1 : 0);
  }

  /** A new model version may monitor other features: the old ones' gauges would go stale. */
  private clearGauges(st: PipelineState): void {
    for (const g of st.gauges) this.opts.metrics.driftScore.remove({ pipeline: st.name, ...g });
  }

  /** Drift of every pipeline that has scored a sample, by pipeline name. */
  status(): Record<string, DriftStatus> {
    const out: Record<string, DriftStatus> = {};
    for (const [name, st] of this.states) {
      out[name] = {
        model: st.tracker.model.name,
        version: st.tracker.model.version,
        windowSamples: st.tracker.windowSize,
        input: st.last?.input.map(statusMeasure) ?? [],
        output: st.last?.output.map(statusMeasure) ?? [],
        active: st.active,
        alerts: st.alerts,
        ...(st.lastChange ? { lastChange: st.lastChange } : {}),
      };
    }
    return out;
  }

  /** Resolves once every drift alert publish started so far has settled. */
  async idle(): Promise<void> {
    await this.delivery.settled();
  }

  /** Stops recording and evaluating; waits for publishes in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.delivery.settled();
  }
}

function publicMeasure(m: Measure): DriftMeasure & { kind: 'input' | 'output' } {
  return {
    kind: m.kind,
    name: m.name,
    test: m.test,
    value: m.value,
    threshold: m.threshold,
    drifted: m.drifted,
    samples: m.samples,
  };
}

function statusMeasure(m: Measure): DriftMeasure {
  const { kind: _kind, ...rest } = publicMeasure(m);
  return rest;
}

function describe(o: DriftTracker['origins']): string {
  const word = {
    manifest: 'manifest reference',
    gaussian: 'Gaussian stand-in',
    live: 'first live samples',
    none: 'nothing (off)',
  };
  return `inputs: ${word[o.input]}, outputs: ${word[o.output]}`;
}
