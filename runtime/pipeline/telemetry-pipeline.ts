import { performance } from 'node:perf_hooks';
import { v7 as uuidv7 } from 'uuid';
import type { PipelineConfig } from '../config/schema.js';
import type { Engine, TensorMap } from '../engines/engine.js';
import { shapeSize } from '../engines/tensor.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import {
  isTelemetryManifest,
  type AlertHysteresis,
  type Manifest,
  type TelemetryManifest,
} from '../model/manifest.js';
import type { Metrics } from '../ops/metrics.js';
import type { Reading } from '../telemetry/reading.js';
import { Windower, type TelemetryWindow, type WindowOutcome } from '../telemetry/window.js';
import { Hysteresis, effectiveHysteresis, type Transition } from './hysteresis.js';
import { LatencyRecorder, type LatencySummary } from './latency.js';
import type { AlertPublisher, ResultSink } from './pipeline.js';
import type { Alert, Result, Severity, StageTimings, TelemetryDetails } from './result.js';
import { scoreTelemetry, type TelemetryScore } from './telemetry-postprocess.js';
import { AlertDelivery } from './alert-delivery.js';
import { hasNonFinite, observeLive, type LiveObservation, type RolloutTap } from '../rollout/shadow.js';
import { notifyObservers, type PipelineObserver } from './observer.js';
import type { DataQualityFlag } from './result.js';
import { flagOf, withoutFlagged } from '../quality/policy.js';

export interface TelemetryPipelineContext {
  name: string;
  config: PipelineConfig;
  deviceId: string;
  /** The engine in use now, or undefined while the model is unavailable (a getter: models are swapped under running pipelines). */
  engine: () => Engine | undefined;
  sink: ResultSink;
  publisher: AlertPublisher;
  metrics: Metrics;
  log: Logger;
  /** Told about every stored result and alert (replay output, live lines, the simulate report). */
  onResult?: ((result: Result, alert: Alert | undefined) => void) | undefined;
  onAlertPublished?: ((alert: Alert, latencyMs: number) => void) | undefined;
  /**
   * The model's rollout (its ModelHost): a new version in shadow scores each window after the
   * window's own result is stored, and live outcomes are reported while a promotion is watched.
   */
  rollout?: RolloutTap | undefined;
  /** Told about every stored result with its input window (status page, drift). */
  observers?: readonly PipelineObserver[] | undefined;
  /**
   * Says what a window scored with flagged readings carries under the `flag` policy
   * (docs/DATA-QUALITY.md); without it, the flag lists the broken rules without their bounds.
   */
  dataQuality?: { flagOf(readings: readonly Reading[]): DataQualityFlag } | undefined;
}

/** Why a due window was not scored: the windower's reasons and the pipeline's own. */
export type WindowSkip =
  | 'gap'
  | 'stale'
  | 'bad_quality'
  // readings that broke a data expectation, under the `skip` policy
  | 'data_quality'
  | 'superseded'
  | 'model_unavailable'
  | 'inference_error'
  | 'store_error'
  | 'shutdown';

export interface ActiveAlert {
  alertId: string;
  kind: string;
  /** ISO time it was raised. */
  since: string;
  score: number;
}

export interface TelemetryPipelineStats {
  kind: 'telemetry';
  model: { name: string; version: string } | undefined;
  assets: number;
  windowsScored: number;
  windowsSkipped: Partial<Record<WindowSkip, number>>;
  readingsDropped: Record<string, number>;
  resets: number;
  alerts: { raised: Record<string, number>; cleared: Record<string, number> };
  /** Window ready (its last step final) to result stored. */
  latencyMs: LatencySummary | undefined;
  /** Window ready to the alert's PUBACK. */
  alertLatencyMs: LatencySummary | undefined;
  /** Raised and not cleared, by asset. */
  activeAlerts: Record<string, ActiveAlert>;
  /** Windows waiting for the model. */
  pending: number;
}

interface Pending {
  window: TelemetryWindow;
  /** Monotonic time the window became ready: the start of its latency. */
  readyAt: number;
  /** Wall-clock time it became ready. */
  readyWall: number;
  manifest: TelemetryManifest;
  superseded: boolean;
}

/** The active model's settings: rebuilt when a new model version brings new ones. */
interface ModelSetup {
  manifest: TelemetryManifest;
  windower: Windower;
  alert: AlertHysteresis;
}

const DEFAULT_MAX_PENDING = 4;
const TOP_TAGS = 3;

/**
 * One telemetry pipeline: accepted readings of its sources become windows (Windower), each
 * window is scored by the model, one inference at a time, and every result is stored. Per asset,
 * alert hysteresis turns scores into one `raised` and one `cleared` alert message, stored before
 * they are published, exactly as frame alerts are. When the model falls behind, windows of an
 * asset beyond `maxPendingWindows` supersede the oldest, which is counted and never scored.
 */
export class TelemetryPipeline {
  private setup: ModelSetup | undefined;
  private readonly queue: Pending[] = [];
  private readonly pendingByAsset = new Map<string, Pending[]>();
  private readonly alertState = new Map<string, Hysteresis>();
  private readonly active = new Map<string, ActiveAlert>();
  private running = false;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  private readonly delivery: AlertDelivery;
  private readonly latency = new LatencyRecorder();
  private readonly alertLatency = new LatencyRecorder();
  private readonly stats = {
    scored: 0,
    skipped: {} as Partial<Record<WindowSkip, number>>,
    dropped: {} as Record<string, number>,
    resets: 0,
    raised: {} as Record<string, number>,
    cleared: {} as Record<string, number>,
  };
  private unavailableLogged = false;
  /** A model version whose alert settings do not work with this pipeline's overrides (logged once). */
  private rejected: TelemetryManifest | undefined;
  private readonly maxPending: number;
  private readonly removeCheck: (() => void) | undefined;

  constructor(private readonly ctx: TelemetryPipelineContext) {
    this.delivery = new AlertDelivery(ctx.publisher, ctx.metrics, ctx.log);
    this.maxPending = ctx.config.maxPendingWindows ?? DEFAULT_MAX_PENDING;
    // At start a config that cannot work with the model (alert overrides beyond each other) throws.
    this.refreshModel(true);
    // A new version whose alert settings this pipeline's overrides do not work with would score
    // nothing once swapped in: the rollout refuses it before it is tried.
    this.removeCheck = ctx.rollout?.addCandidateCheck?.((m) => this.objection(m));
  }

  /** Why this pipeline could not use a model version, or undefined when it can. */
  private objection(m: Manifest): string | undefined {
    if (!isTelemetryManifest(m)) return undefined;
    try {
      effectiveHysteresis(m.postprocessing.alert, this.ctx.config, `pipelines.${this.ctx.name}`);
      return undefined;
    } catch (err) {
      return `pipeline ${this.ctx.name} cannot use its alert settings: ${errorMessage(err)}`;
    }
  }

  get name(): string {
    return this.ctx.name;
  }

  /** What the model sees of a reading that broke a data expectation (pipelines.<name>.dataQuality). */
  private get policy(): 'skip' | 'hold' | 'flag' {
    return this.ctx.config.dataQuality?.policy ?? 'skip';
  }

  /** Takes accepted readings of this pipeline's sources (any quality). Never throws, never waits. */
  offer(input: readonly Reading[]): void {
    if (this.stopped || input.length === 0) return;
    let readings = input;
    if (this.policy === 'hold') {
      // A flagged reading never reaches the windower: its tag keeps its last good value.
      const { kept, dropped } = withoutFlagged(input);
      if (dropped > 0) {
        this.stats.dropped['data_quality'] = (this.stats.dropped['data_quality'] ?? 0) + dropped;
        this.ctx.metrics.windowReadingsDropped.inc(
          { pipeline: this.ctx.name, reason: 'data_quality' },
          dropped,
        );
        readings = kept;
        if (readings.length === 0) return;
      }
    }
    const setup = this.refreshModel();
    if (!setup) {
      if (!this.unavailableLogged) {
        this.unavailableLogged = true;
        this.ctx.log.warn(
          { pipeline: this.ctx.name },
          `pipeline ${this.ctx.name}: its model is not loaded, so readings cannot be cut into windows yet`,
        );
      }
      return;
    }
    let outcome: WindowOutcome;
    try {
      outcome = setup.windower.push(readings);
    } catch (err) {
      // A bug in windowing must not take ingest down with it.
      this.ctx.log.error({ pipeline: this.ctx.name, err: errorMessage(err) }, 'windowing failed');
      return;
    }
    this.take(outcome, setup.manifest);
  }

  /** Makes every open step final and scores the windows that ends (the end of a replay). */
  flush(): void {
    if (this.stopped || !this.setup) return;
    this.take(this.setup.windower.flush(), this.setup.manifest);
  }

  /**
   * The engine's manifest, when it is a telemetry model; a new version with other preprocessing
   * gets a fresh windower (its windows would not fit), one with the same keeps the windows going.
   */
  private refreshModel(strict = false): ModelSetup | undefined {
    const m = this.ctx.engine()?.manifest;
    if (!m || m === this.setup?.manifest) return this.setup;
    if (!isTelemetryManifest(m)) return this.setup;
    const cfg = this.ctx.config;
    let alert: AlertHysteresis;
    try {
      alert = effectiveHysteresis(m.postprocessing.alert, cfg, `pipelines.${this.ctx.name}`);
    } catch (err) {
      if (strict) throw err;
      if (this.rejected !== m) {
        this.rejected = m;
        this.ctx.log.error(
          { pipeline: this.ctx.name, model: m.name, version: m.version },
          `pipeline ${this.ctx.name}: model ${m.name}@${m.version} is not used: ${errorMessage(err)}`,
        );
      }
      return this.setup;
    }
    const samePre =
      this.setup && JSON.stringify(this.setup.manifest.preprocessing) === JSON.stringify(m.preprocessing);
    const windower = samePre
      ? this.setup!.windower
      : new Windower({
          preprocessing: m.preprocessing,
          lateSteps: cfg.lateSteps,
          holdSteps: cfg.holdSteps,
          assets: cfg.assets,
          // skip: a flagged reading is missing; flag: a value, and the window lists it.
          flagged: this.policy === 'flag' ? 'value' : 'missing',
        });
    if (this.setup && !samePre)
      this.ctx.log.info(
        { pipeline: this.ctx.name, model: m.name, version: m.version },
        `pipeline ${this.ctx.name}: model ${m.name}@${m.version} reads other windows; windows start afresh`,
      );
    if (this.setup && JSON.stringify(this.setup.alert) !== JSON.stringify(alert)) {
      // Same asset states, new thresholds: an alert raised stays raised until the new clear.
      for (const [asset, h] of this.alertState) {
        const fresh = new Hysteresis(alert);
        fresh.restore({ active: h.active, streak: 0 });
        this.alertState.set(asset, fresh);
      }
    }
    this.setup = { manifest: m, windower, alert };
    this.unavailableLogged = false;
    return this.setup;
  }

  private take(outcome: WindowOutcome, manifest: TelemetryManifest): void {
    const { ctx } = this;
    for (const [reason, n] of Object.entries(outcome.skipped)) this.skip(reason as WindowSkip, n);
    for (const [reason, n] of Object.entries(outcome.dropped)) {
      this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + n;
      ctx.metrics.windowReadingsDropped.inc({ pipeline: ctx.name, reason }, n);
    }
    for (const r of outcome.resets) {
      this.stats.resets++;
      ctx.metrics.windowResets.inc({ pipeline: ctx.name });
      // A new machine (or a repaired one) starts afresh: windows still queued from the old run
      // are not scored into its state, and a half-built streak does not carry over. An alert
      // still raised stays raised until the new run's windows clear it the ordinary way.
      for (const p of this.pendingByAsset.get(r.asset) ?? []) p.superseded = true;
      const h = this.alertState.get(r.asset);
      if (h) h.restore({ active: h.active, streak: 0 });
      ctx.log.info(
        { pipeline: ctx.name, asset: r.asset, from: r.from, to: r.to },
        `asset ${r.asset}: counter went back from ${r.from} to ${r.to} (a replaced machine?); its windows start afresh`,
      );
    }
    if (outcome.windows.length === 0) return;
    const readyAt = performance.now();
    const readyWall = Date.now();
    for (const window of outcome.windows) {
      const p: Pending = { window, readyAt, readyWall, manifest, superseded: false };
      this.queue.push(p);
      let list = this.pendingByAsset.get(window.asset);
      if (!list) this.pendingByAsset.set(window.asset, (list = []));
      list.push(p);
      if (list.length > this.maxPending) {
        list.shift()!.superseded = true;
        this.skip('superseded', 1);
      }
    }
    if (!this.running) void this.drain();
  }

  private skip(reason: WindowSkip, n: number): void {
    if (n <= 0) return;
    this.stats.skipped[reason] = (this.stats.skipped[reason] ?? 0) + n;
    this.ctx.metrics.windowsSkipped.inc({ pipeline: this.ctx.name, reason }, n);
  }

  /** Scores queued windows one at a time until none is left. */
  private async drain(): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        const p = this.queue.shift();
        if (!p) break;
        if (p.superseded) continue;
        const list = this.pendingByAsset.get(p.window.asset)!;
        list.splice(list.indexOf(p), 1);
        if (list.length === 0) this.pendingByAsset.delete(p.window.asset);
        try {
          await this.process(p);
        } catch (err) {
          this.skip('inference_error', 1);
          this.ctx.log.error({ pipeline: this.ctx.name, err: errorMessage(err) }, 'window not scored');
        }
      }
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async process(p: Pending): Promise<void> {
    const { ctx } = this;
    const { window } = p;
    const engine = ctx.engine();
    const setup = this.refreshModel();
    const m = engine?.manifest;
    // The model in use must be the one whose settings this pipeline runs, and read windows cut
    // the way this one was (a new version may read other tags).
    if (!engine) this.live('unavailable', undefined, false);
    // A version this pipeline refused to use (its alert settings) scores nothing: a promotion
    // being watched must hear of it, or it would settle while every window is skipped.
    else if (engine.manifest === this.rejected) this.live('unavailable', engine.manifest.version, false);
    if (
      !engine ||
      !setup ||
      m !== setup.manifest ||
      (p.manifest !== m && JSON.stringify(p.manifest.preprocessing) !== JSON.stringify(m.preprocessing)) ||
      shapeSize(m.inputs[0]!.shape) !== window.tensor.length
    ) {
      this.skip('model_unavailable', 1);
      return;
    }
    const tm = setup.manifest;
    const input = tm.inputs[0]!;
    const start = performance.now();
    const stages: StageTimings = {
      queue: start - p.readyAt,
      decode: 0,
      preprocess: 0,
      inference: 0,
      postprocess: 0,
      store: 0,
    };
    let outputs: TensorMap | undefined;
    let scored: TelemetryScore;
    try {
      outputs = await engine.run({
        [input.name]: { dtype: 'float32', shape: input.shape, data: window.tensor },
      });
      stages.inference = performance.now() - start;
      scored = scoreTelemetry(outputs, tm.postprocessing);
    } catch (err) {
      this.skip('inference_error', 1);
      this.live(outputs && hasNonFinite(outputs) ? 'nan' : 'error', tm.version, false);
      const code = err instanceof VigilError ? err.code : 'VIGIL_ERR_INFERENCE';
      ctx.log.error(
        {
          pipeline: ctx.name,
          asset: window.asset,
          model: tm.name,
          version: tm.version,
          code,
          err: errorMessage(err),
        },
        `inference failed for a window of ${window.asset}: ${errorMessage(err)}`,
      );
      return;
    }
    const alertCfg = setup.alert;
    const post = tm.postprocessing;
    const details: TelemetryDetails = {
      axisStart: window.axisStart,
      axisEnd: window.axisEnd,
      endTime: window.endTime,
      topTags: topTags(tm.preprocessing.tags, window.lastValues),
      // The messages the last step came from (docs/OBSERVABILITY.md, trace ids); left out when
      // the readings carried none, as in a replay from a file.
      ...(window.traceIds.length > 0 ? { traceIds: window.traceIds } : {}),
    };
    if (post.type === 'rul') {
      details.rul = round4(scored.score);
      details.unit = post.unit;
      details.leadTime = details.rul;
    } else if (post.type === 'failure_probability') {
      details.probability = round4(scored.score);
      details.unit = post.unit;
      details.horizon = post.horizon;
    } else details.anomaly = round4(scored.score);

    let h = this.alertState.get(window.asset);
    if (!h) this.alertState.set(window.asset, (h = new Hysteresis(alertCfg)));
    const before = h.state();
    const transition = h.observe(scored.score);

    const model = { name: tm.name, version: tm.version, backend: engine.backend, provider: engine.provider };
    const producedAt = Date.now();
    const t = performance.now();
    stages.postprocess = t - start - stages.inference;
    const result: Result = {
      id: uuidv7(),
      sampleId: `${ctx.name}/${window.asset}/${window.axisEnd}`,
      pipeline: ctx.name,
      source: window.sources.join(','),
      origin: window.asset,
      receivedAt: p.readyWall,
      producedAt,
      model,
      label: scored.label,
      confidence: scored.score,
      score: scored.score,
      threshold: alertCfg.raise,
      scores: { [scored.label]: scored.score, ...scored.outputs },
      latencyMs: 0,
      stages,
      asset: window.asset,
      details,
    };
    if (window.flagged) result.dataQuality = this.flagOf(window.flagged);
    const alert = transition
      ? this.alertFor(transition, result, details, post.alertKind, producedAt)
      : undefined;
    if (alert) result.alertId = alert.id;
    if (alert && result.dataQuality) alert.dataQuality = result.dataQuality;
    result.latencyMs = round2(performance.now() - p.readyAt);
    if (alert) alert.latencyMs = result.latencyMs;
    try {
      ctx.sink.saveResult(result, alert);
    } catch (err) {
      // Not stored, not decided: the next window makes the same decision again.
      h.restore(before);
      this.skip('store_error', 1);
      ctx.log.error(
        { pipeline: ctx.name, asset: window.asset, err: errorMessage(err) },
        'result could not be stored',
      );
      return;
    }
    const now = performance.now();
    stages.store = now - t;
    const total = now - p.readyAt;
    this.live('ok', tm.version, total > ctx.config.budgetMs);
    this.shadow(tm, window.tensor, outputs, scored, alertCfg, stages.inference);
    this.stats.scored++;
    ctx.metrics.windowsScored.inc({ pipeline: ctx.name });
    if (ctx.log.isLevelEnabled('debug'))
      ctx.log.debug(
        {
          sampleId: result.sampleId,
          resultId: result.id,
          alertId: alert?.id,
          asset: window.asset,
          traceIds: details.traceIds,
          score: result.score,
          latencyMs: result.latencyMs,
          version: tm.version,
        },
        'result stored',
      );
    this.latency.add(total);
    ctx.metrics.windowSeconds.observe({ pipeline: ctx.name }, total / 1000);
    if (ctx.config.publishResults) ctx.publisher.publishResult(ctx.name, result);
    if (alert) this.afterAlert(alert, transition!);
    ctx.onResult?.(result, alert);
    notifyObservers(
      ctx.observers,
      { pipeline: ctx.name, kind: 'window', manifest: tm, input: window.tensor, result, alert },
      ctx.log,
    );
    if (alert) this.publish(alert, p.readyAt, result.id);
  }

  /** What a result scored from flagged readings says (the `flag` policy). */
  private flagOf(readings: readonly Reading[]): DataQualityFlag {
    // Without the daemon's DataQuality (a tool, a test), the flag names the rules without their bounds.
    return this.ctx.dataQuality ? this.ctx.dataQuality.flagOf(readings) : flagOf(readings);
  }

  private live(outcome: LiveObservation['outcome'], version: string | undefined, overBudget: boolean): void {
    observeLive(this.ctx.rollout, { pipeline: this.ctx.name, version, outcome, overBudget }, this.ctx.log);
  }

  /**
   * Hands the window to the version in shadow, if any, once the window's own result is stored:
   * the candidate runs beside the next windows and never delays them. Agreement for telemetry is
   * the same alert decision on this window alone (past alert.raise or not).
   */
  private shadow(
    tm: TelemetryManifest,
    tensor: Float32Array,
    outputs: TensorMap,
    scored: TelemetryScore,
    alertCfg: AlertHysteresis,
    inferenceMs: number,
  ): void {
    const runner = this.ctx.rollout?.shadow();
    if (!runner) return;
    const cfg = this.ctx.config;
    const where = `pipelines.${this.ctx.name}`;
    runner.offer({
      pipeline: this.ctx.name,
      kind: 'telemetry',
      manifest: tm,
      data: tensor,
      current: {
        label: scored.label,
        score: scored.score,
        alert: past(scored.score, alertCfg),
        outputs,
        inferenceMs,
      },
      interpret(out, cm) {
        if (!isTelemetryManifest(cm)) throw new Error(`version ${cm.version} is not a telemetry model`);
        const s = scoreTelemetry(out, cm.postprocessing);
        // Throws (an error the trial counts) for alert settings this pipeline could not use.
        const alert = effectiveHysteresis(cm.postprocessing.alert, cfg, where);
        return { label: s.label, score: s.score, alert: past(s.score, alert) };
      },
    });
  }

  private alertFor(
    transition: Transition,
    result: Result,
    details: TelemetryDetails,
    kind: string,
    producedAt: number,
  ): Alert {
    const raised = transition === 'raised';
    const previous = this.active.get(result.origin);
    const severity: Severity = raised ? (this.ctx.config.severity[result.label] ?? 'warning') : 'info';
    return {
      id: uuidv7(),
      timestamp: new Date(producedAt).toISOString(),
      device: this.ctx.deviceId,
      pipeline: this.ctx.name,
      source: result.source,
      sampleId: result.sampleId,
      origin: result.origin,
      kind,
      severity,
      label: result.label,
      score: round4(result.score),
      threshold: result.threshold,
      model: result.model,
      latencyMs: 0,
      asset: result.origin,
      details: {
        ...details,
        state: transition,
        ...(!raised && previous ? { clears: previous.alertId } : {}),
      },
    };
  }

  private afterAlert(alert: Alert, transition: Transition): void {
    const { ctx } = this;
    const asset = alert.origin;
    if (transition === 'raised') {
      this.stats.raised[alert.kind] = (this.stats.raised[alert.kind] ?? 0) + 1;
      ctx.metrics.alerts.inc({ pipeline: ctx.name, kind: alert.kind });
      this.active.set(asset, {
        alertId: alert.id,
        kind: alert.kind,
        since: alert.timestamp,
        score: alert.score,
      });
    } else {
      this.stats.cleared[alert.kind] = (this.stats.cleared[alert.kind] ?? 0) + 1;
      ctx.metrics.alertsCleared.inc({ pipeline: ctx.name, kind: alert.kind });
      this.active.delete(asset);
    }
    ctx.metrics.activeAlerts.set({ pipeline: ctx.name }, this.active.size);
    ctx.log.info(
      {
        pipeline: ctx.name,
        asset,
        kind: alert.kind,
        state: transition,
        score: alert.score,
        alertId: alert.id,
      },
      `${alert.kind} ${transition} for ${asset} (score ${alert.score}, threshold ${alert.threshold})`,
    );
  }

  /** Publishes without holding up the next window; the store already has the alert. */
  private publish(alert: Alert, readyAt: number, resultId: string): void {
    const { ctx } = this;
    this.delivery.send(
      alert,
      (acked) => {
        const total = acked - readyAt;
        this.alertLatency.add(total);
        ctx.metrics.alertSeconds.observe({ pipeline: ctx.name }, total / 1000);
        ctx.onAlertPublished?.(alert, total);
      },
      resultId,
    );
  }

  snapshot(): TelemetryPipelineStats {
    const m = this.setup?.manifest;
    return {
      kind: 'telemetry',
      model: m ? { name: m.name, version: m.version } : undefined,
      assets: this.setup?.windower.assets().length ?? 0,
      windowsScored: this.stats.scored,
      windowsSkipped: { ...this.stats.skipped },
      readingsDropped: { ...this.stats.dropped },
      resets: this.stats.resets,
      alerts: { raised: { ...this.stats.raised }, cleared: { ...this.stats.cleared } },
      latencyMs: this.latency.summary(),
      alertLatencyMs: this.alertLatency.summary(),
      activeAlerts: Object.fromEntries(this.active),
      pending: this.queue.filter((p) => !p.superseded).length,
    };
  }

  /** Resolves once no window is waiting or being scored and every started publish has settled. */
  async idle(): Promise<void> {
    if (this.running) await new Promise<void>((r) => this.idleWaiters.push(r));
    await this.delivery.settled();
  }

  /** Stops taking readings, counts waiting windows as shutdown, finishes the one being scored. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.removeCheck?.();
    const waiting = this.queue.splice(0).filter((p) => !p.superseded).length;
    this.pendingByAsset.clear();
    this.skip('shutdown', waiting);
    await this.idle();
  }
}

/** Whether a score alone is past the alert's raise level. */
function past(score: number, alert: AlertHysteresis): boolean {
  return alert.direction === 'above' ? score >= alert.raise : score <= alert.raise;
}

/** The tags deviating most from the training data at the window's last step, largest |z| first. */
export function topTags(
  tags: readonly string[],
  z: Float32Array,
  n = TOP_TAGS,
): Array<{ tag: string; z: number }> {
  return tags
    .map((tag, i) => ({ tag, z: round4(z[i]!) }))
    .sort((a, b) => Math.abs(b.z) - Math.abs(a.z))
    .slice(0, n);
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const round4 = (x: number) => Math.round(x * 10000) / 10000;
