import { v7 as uuidv7 } from 'uuid';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import { AlertDelivery } from '../pipeline/alert-delivery.js';
import type { AlertPublisher } from '../pipeline/pipeline.js';
import type { Alert, DataQualityAlert, DataQualityAlertDetails } from '../pipeline/result.js';
import type { ExpectationRule } from '../telemetry/reading.js';
import { DATA_QUALITY_ALERT_DEFAULTS, type DataQualityAlertConfig } from './config.js';

/** Where data_quality alerts are stored before they are published (the Store). */
export interface DataQualityAlertSink {
  saveAlert(alert: Alert): void;
}

/** The pipeline and model an alert about a source names (contract: docs/DATA-QUALITY.md). */
export interface AlertOwner {
  /** The first pipeline that reads the source (config order), or the source's name when none does. */
  pipeline: string;
  /** Every pipeline that reads the source; empty when none does. */
  pipelines: string[];
  model: Alert['model'];
}

export const NO_MODEL: Alert['model'] = { name: 'none', version: 'none', backend: 'none', provider: 'none' };

export interface DataQualityMonitorOptions {
  deviceId: string;
  sink: DataQualityAlertSink;
  publisher: AlertPublisher;
  metrics: Metrics;
  log: Logger;
  /** The hysteresis of a source's alerts (sources.<name>.expectations.alert); defaults otherwise. */
  alertConfig?: ((source: string) => DataQualityAlertConfig | undefined) | undefined;
  /** The pipeline and model a source's alerts name; the source itself and no model otherwise. */
  owner?: ((source: string) => AlertOwner) | undefined;
  /** Told about every data_quality alert once it is stored. */
  onAlert?: ((alert: DataQualityAlert) => void) | undefined;
  /** Series (source, asset, tag) tracked at most; beyond, violations are still counted, not alerted on. */
  maxSeries?: number | undefined;
}

/** One broken expectation, as a checker reports it. */
export interface Violation {
  rule: ExpectationRule;
  /** In words, for a person: what the value was and what was expected. */
  message: string;
  /** The offending reading's or message's trace id, or the frame's sample id. */
  traceId?: string | undefined;
  /** Where it came from as the outside world names it; `<asset>/<tag>` (or the asset) when absent. */
  origin?: string | undefined;
  /** When the input arrived (ms since the epoch): the alert's latency is counted from it. */
  receivedAt?: number | undefined;
  /** schema_drift: the fields that changed. */
  fields?: DataQualityAlertDetails['fields'];
}

/**
 * One monitored series: a source's asset and tag (per-reading rules and stale), a source's asset
 * (payload rules), or a camera source (frame rules). Checkers keep a reference to theirs, so that
 * the good path needs no lookup: `rules.size === 0` means nothing to clear.
 */
export class DqSeries {
  readonly rules = new Map<ExpectationRule, RuleState>();
  /** Whether the monitor holds it (tracked series are bounded; a dropped one comes back on its next violation). */
  tracked = false;
  /** Rules raised and not yet cleared: a series with none may be evicted when the monitor is full. */
  raisedRules = 0;
  constructor(
    readonly key: string,
    readonly source: string,
    readonly asset: string | undefined,
    readonly tag: string | undefined,
  ) {}
}

interface RuleState {
  rule: ExpectationRule;
  /** Times of the violations within the window, oldest first (at most raiseAfter). */
  times: number[];
  lastViolationAt: number;
  last: Violation;
  /** Inputs in a row that met the rule since the last violation. */
  goodStreak: number;
  raised: { alertId: string; since: string } | undefined;
}

/** Rules that describe an event or a state, not a value: one occurrence raises at once. */
const RAISE_AT_ONCE: ReadonlySet<ExpectationRule> = new Set(['stale', 'schema_drift']);

const DEFAULT_MAX_SERIES = 20_000;

export interface ActiveDataQuality {
  rule: ExpectationRule;
  asset?: string;
  tag?: string;
  alertId: string;
  since: string;
  message: string;
}

export interface SourceDataQualityStatus {
  /** Raised and not yet cleared. */
  active: ActiveDataQuality[];
  /** Violations counted since start, by rule. */
  violations: Partial<Record<ExpectationRule, number>>;
}

/**
 * The data_quality alerts (docs/DATA-QUALITY.md): checkers report violations and good inputs per
 * series; per (source, asset, tag, rule) a violation count within a sliding window raises an
 * alert (`raiseAfter` within `windowSeconds`; stale and schema_drift at once), and `clearAfterReadings`
 * good inputs in a row, or `clearAfterSeconds` without a violation, clear it. Alerts are stored
 * first, then published through the same outbox as every other alert (AlertDelivery). Memory is
 * bounded: at most `maxSeries` series, pending states forgotten once their window has passed.
 */
export class DataQualityMonitor {
  private readonly series = new Map<string, DqSeries>();
  /**
   * The tracked series with nothing raised, oldest first: the ones that may be forgotten when
   * the monitor is full. Kept beside `series` so that a full monitor whose every series is raised
   * refuses a new one at once, instead of scanning them all on every violation and stale tick.
   */
  private readonly evictable = new Set<DqSeries>();
  private readonly delivery: AlertDelivery;
  private readonly maxSeries: number;
  private readonly bySource = new Map<string, { violations: Partial<Record<ExpectationRule, number>> }>();
  private readonly activeCounts = new Map<string, number>();
  private overflowLogged = false;
  private stopped = false;

  constructor(private readonly o: DataQualityMonitorOptions) {
    this.delivery = new AlertDelivery(o.publisher, o.metrics, o.log);
    this.maxSeries = o.maxSeries ?? DEFAULT_MAX_SERIES;
  }

  private config(source: string): DataQualityAlertConfig {
    return this.o.alertConfig?.(source) ?? DATA_QUALITY_ALERT_DEFAULTS;
  }

  /** The series of a source, asset and tag (asset and tag absent where the rule has none). */
  seriesOf(source: string, asset?: string, tag?: string): DqSeries {
    const key = `${source}\u0000${asset ?? ''}\u0000${tag ?? ''}`;
    return this.series.get(key) ?? new DqSeries(key, source, asset, tag);
  }

  /**
   * Counts a violation and applies the hysteresis. `count: false` re-asserts a lasting state (a
   * series still stale) without counting it again.
   */
  violation(s: DqSeries, v: Violation, now = Date.now(), count = true): void {
    if (this.stopped) return;
    if (count) this.count(s, v.rule);
    if (!this.track(s)) return;
    const cfg = this.config(s.source);
    let st = s.rules.get(v.rule);
    if (!st) {
      st = { rule: v.rule, times: [], lastViolationAt: now, last: v, goodStreak: 0, raised: undefined };
      s.rules.set(v.rule, st);
    }
    if (count) {
      st.times.push(now);
      expire(st, now, cfg);
      if (st.times.length > cfg.raiseAfter) st.times.shift();
    }
    st.lastViolationAt = now;
    st.last = v;
    st.goodStreak = 0;
    if (!st.raised && (RAISE_AT_ONCE.has(v.rule) || st.times.length >= cfg.raiseAfter))
      this.transition(s, st, 'raised', now, v.message);
  }

  /**
   * An input of the series that met its expectations (`broken`: the rules it did break, which
   * are not counted as met). Nearly free when the series has no raised rule.
   *
   * Good inputs count only towards clearing a raised rule. A pending rule (violations not yet
   * at raiseAfter) keeps its violation times however many good inputs come between them: one
   * violation every 11 readings is still 3 within a minute. tick() forgets a pending rule once
   * its window has passed without a violation.
   */
  passed(s: DqSeries, now = Date.now(), broken?: readonly ExpectationRule[]): void {
    if (s.raisedRules === 0 || this.stopped) return;
    const cfg = this.config(s.source);
    for (const st of s.rules.values()) {
      if (!st.raised || broken?.includes(st.rule)) continue;
      st.goodStreak++;
      // A fresh reading ends staleness at once.
      const needed = st.rule === 'stale' ? 1 : cfg.clearAfterReadings;
      if (st.goodStreak < needed) continue;
      this.transition(
        s,
        st,
        'cleared',
        now,
        st.rule === 'stale'
          ? `${describeSeries(s)} reports again`
          : `${st.goodStreak} inputs in a row met the ${st.rule} expectation`,
      );
    }
    if (s.rules.size === 0) this.untrack(s);
  }

  /**
   * The series reports again after a silence: its `stale` rule clears at once, and no other rule
   * is touched (whether the input met them is for the checks of the input to say).
   */
  reported(s: DqSeries, now = Date.now()): void {
    const st = s.rules.get('stale');
    if (st === undefined || this.stopped) return;
    if (st.raised) this.transition(s, st, 'cleared', now, `${describeSeries(s)} reports again`);
    else s.rules.delete('stale');
    if (s.rules.size === 0) this.untrack(s);
  }

  /**
   * Clears a raised alert without a violation for clearAfterSeconds, and forgets pending
   * violations whose window has passed. Called every second or so by the DataQuality timer.
   */
  tick(now = Date.now()): void {
    if (this.stopped) return;
    // Deleting the entry being visited is safe while iterating a Map: no copies of 20,000 series.
    for (const s of this.series.values()) {
      const cfg = this.config(s.source);
      for (const st of s.rules.values()) {
        expire(st, now, cfg);
        if (st.raised) {
          if (now - st.lastViolationAt >= cfg.clearAfterSeconds * 1000)
            this.transition(s, st, 'cleared', now, `no ${st.rule} violation for ${cfg.clearAfterSeconds} s`);
        } else if (st.times.length === 0 && now - st.lastViolationAt >= cfg.windowSeconds * 1000) {
          s.rules.delete(st.rule);
        }
      }
      if (s.rules.size === 0) this.untrack(s);
    }
  }

  private count(s: DqSeries, rule: ExpectationRule): void {
    this.o.metrics.expectationViolations.inc({ source: s.source, rule, tag: s.tag ?? '' });
    let src = this.bySource.get(s.source);
    if (!src) this.bySource.set(s.source, (src = { violations: {} }));
    src.violations[rule] = (src.violations[rule] ?? 0) + 1;
  }

  private track(s: DqSeries): boolean {
    if (s.tracked) return true;
    const known = this.series.get(s.key);
    if (known && known !== s) {
      // Another handle of the same series (a checker's cached one after it was forgotten).
      for (const [rule, st] of known.rules) if (!s.rules.has(rule)) s.rules.set(rule, st);
      s.raisedRules = 0;
      for (const st of s.rules.values()) if (st.raised) s.raisedRules++;
      this.evictable.delete(known);
      known.tracked = false;
    } else if (this.series.size >= this.maxSeries && !this.evictOne()) {
      if (!this.overflowLogged) {
        this.overflowLogged = true;
        this.o.log.warn(
          { maxSeries: this.maxSeries },
          `data-quality alerts are tracked for ${this.maxSeries} series at most; violations of others are counted but not alerted on`,
        );
      }
      return false;
    }
    this.series.set(s.key, s);
    s.tracked = true;
    if (s.raisedRules === 0) this.evictable.add(s);
    return true;
  }

  private untrack(s: DqSeries): void {
    if (this.series.get(s.key) === s) this.series.delete(s.key);
    this.evictable.delete(s);
    s.tracked = false;
  }

  /** Drops the oldest series with nothing raised; false at once when every series has a raised alert. */
  private evictOne(): boolean {
    const oldest = this.evictable.values().next();
    if (oldest.done) return false;
    oldest.value.rules.clear();
    this.untrack(oldest.value);
    return true;
  }

  private transition(
    s: DqSeries,
    st: RuleState,
    state: 'raised' | 'cleared',
    now: number,
    message: string,
  ): void {
    const { metrics, log } = this.o;
    const cfg = this.config(s.source);
    const owner = this.o.owner?.(s.source) ?? { pipeline: s.source, pipelines: [], model: NO_MODEL };
    const v = st.last;
    const raised = state === 'raised';
    const details: DataQualityAlertDetails = {
      state,
      ...(!raised && st.raised ? { clears: st.raised.alertId } : {}),
      rule: st.rule,
      ...(s.asset !== undefined ? { asset: s.asset } : {}),
      ...(s.tag !== undefined ? { tag: s.tag } : {}),
      message,
      ...(raised && v.fields ? { fields: v.fields } : {}),
      ...(v.traceId !== undefined ? { traceId: v.traceId } : {}),
      pipelines: owner.pipelines,
    };
    const alert: DataQualityAlert = {
      id: uuidv7(),
      timestamp: new Date(now).toISOString(),
      device: this.o.deviceId,
      pipeline: owner.pipeline,
      source: s.source,
      sampleId: v.traceId ?? `${s.key.replaceAll('\u0000', '/')}/${st.rule}`,
      origin: v.origin ?? describeSeries(s),
      kind: 'data_quality',
      severity: raised ? 'warning' : 'info',
      label: st.rule,
      score: st.times.length,
      threshold: RAISE_AT_ONCE.has(st.rule) ? 1 : cfg.raiseAfter,
      model: owner.model,
      latencyMs: raised && v.receivedAt !== undefined ? Math.max(0, now - v.receivedAt) : 0,
      ...(s.asset !== undefined ? { asset: s.asset } : {}),
      dataQuality: details,
    };
    try {
      this.o.sink.saveAlert(alert);
    } catch (err) {
      // Not stored, not decided: the next violation or good input decides again.
      log.error(
        { source: s.source, rule: st.rule, err: errorMessage(err) },
        'data_quality alert could not be stored',
      );
      return;
    }
    const activeKey = `${s.source}\u0000${st.rule}`;
    const active = (this.activeCounts.get(activeKey) ?? 0) + (raised ? 1 : -1);
    this.activeCounts.set(activeKey, active);
    metrics.dataQualityActive.set({ source: s.source, rule: st.rule }, active);
    metrics.dataQualityAlerts.inc({ source: s.source, rule: st.rule, state });
    if (raised) {
      st.raised = { alertId: alert.id, since: alert.timestamp };
      st.goodStreak = 0;
      s.raisedRules++;
      this.evictable.delete(s);
      metrics.alerts.inc({ pipeline: owner.pipeline, kind: 'data_quality' });
    } else {
      s.rules.delete(st.rule);
      s.raisedRules--;
      // Re-added at the end: a series cleared just now is the last to be forgotten.
      if (s.raisedRules === 0 && s.tracked) this.evictable.add(s);
      metrics.alertsCleared.inc({ pipeline: owner.pipeline, kind: 'data_quality' });
    }
    const where = describeSeries(s);
    log[raised ? 'warn' : 'info'](
      {
        source: s.source,
        asset: s.asset,
        tag: s.tag,
        rule: st.rule,
        state,
        alertId: alert.id,
        traceId: v.traceId,
        ...(raised && v.fields ? { fields: v.fields } : {}),
      },
      raised
        ? `data_quality raised for ${where} (${st.rule}): ${message}`
        : `data_quality cleared for ${where} (${st.rule}): ${message}`,
    );
    try {
      this.o.onAlert?.(alert);
    } catch (err) {
      log.error({ alertId: alert.id, err: errorMessage(err) }, 'a data_quality alert listener failed');
    }
    this.delivery.send(alert, () => undefined);
  }

  /** Raised data-quality alerts and violation counts, by source. */
  status(): Record<string, SourceDataQualityStatus> {
    const out: Record<string, SourceDataQualityStatus> = {};
    const entry = (source: string) =>
      (out[source] ??= { active: [], violations: { ...this.bySource.get(source)?.violations } });
    for (const source of this.bySource.keys()) entry(source);
    for (const s of this.series.values()) {
      for (const st of s.rules.values()) {
        if (!st.raised) continue;
        entry(s.source).active.push({
          rule: st.rule,
          ...(s.asset !== undefined ? { asset: s.asset } : {}),
          ...(s.tag !== undefined ? { tag: s.tag } : {}),
          alertId: st.raised.alertId,
          since: st.raised.since,
          message: st.last.message,
        });
      }
    }
    return out;
  }

  /** Series tracked now (bounded by maxSeries). */
  get trackedSeries(): number {
    return this.series.size;
  }

  /** Resolves once every alert publish started so far has settled. */
  async idle(): Promise<void> {
    await this.delivery.settled();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.delivery.settled();
  }
}

function expire(st: RuleState, now: number, cfg: DataQualityAlertConfig): void {
  const from = now - cfg.windowSeconds * 1000;
  let n = 0;
  while (n < st.times.length && st.times[n]! < from) n++;
  if (n > 0) st.times.splice(0, n);
}

function describeSeries(s: DqSeries): string {
  if (s.asset !== undefined && s.tag !== undefined) return `${s.asset}/${s.tag}`;
  return s.asset ?? s.source;
}
