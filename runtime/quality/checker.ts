import type { ExpectationRule, Reading } from '../telemetry/reading.js';
import type { TagExpectation, TelemetryExpectations } from './config.js';
import { explainFlag } from './policy.js';
import type { DataQualityMonitor, DqSeries } from './monitor.js';

/** Assets per tag whose last value and last-seen time are kept (rate of change, staleness). */
const MAX_ASSETS_PER_TAG = 10_000;

/** One asset's tag: what the rules that look back need. */
interface SeriesState {
  /** Last non-null value and its time (source time, else receive time); NaN before the first. */
  last: number;
  lastTime: number;
  /** Wall-clock ms the last reading of any quality was accepted: staleness. */
  seenAt: number;
  traceId: string | undefined;
  stale: boolean;
  /** The monitor's handle, once this series broke something. */
  dq: DqSeries | undefined;
}

/** One configured tag, compiled: bounds as numbers so that the good path is comparisons only. */
interface TagRules {
  tag: string;
  min: number;
  max: number;
  notNull: boolean;
  /** 0: no rate rule. */
  maxRate: number;
  allowed: ReadonlySet<number> | undefined;
  /** 0: no staleness rule. */
  staleMs: number;
  expectation: TagExpectation;
  series: Map<string, SeriesState>;
}

/**
 * The data expectations of one telemetry source, applied to every accepted reading
 * (docs/DATA-QUALITY.md): range, not_null, allowed_values and rate_of_change per reading, and
 * staleness per asset and tag over time (staleCheck, from a timer). Only the tags named in the
 * config are looked at; a reading of any other tag costs one map lookup. A reading that meets
 * every expectation allocates nothing; one that breaks some gets its rule names back (the
 * caller sets them as Reading.flags) and each violation is reported to the monitor.
 */
export class ExpectationChecker {
  private readonly tags = new Map<string, TagRules>();
  private readonly only: ReadonlySet<string> | undefined;
  private readonly staleTags: TagRules[] = [];

  constructor(
    readonly source: string,
    cfg: TelemetryExpectations,
    private readonly monitor: DataQualityMonitor,
    startedAt = Date.now(),
  ) {
    this.only = cfg.assets ? new Set(cfg.assets) : undefined;
    for (const [tag, e] of Object.entries(cfg.tags)) {
      const rules: TagRules = {
        tag,
        min: e.range?.min ?? Number.NEGATIVE_INFINITY,
        max: e.range?.max ?? Number.POSITIVE_INFINITY,
        notNull: e.notNull === true,
        maxRate: e.maxRateOfChange ?? 0,
        allowed: e.allowedValues ? new Set(e.allowedValues) : undefined,
        staleMs: (e.staleAfterSeconds ?? 0) * 1000,
        expectation: e,
        series: new Map(),
      };
      this.tags.set(tag, rules);
      if (rules.staleMs > 0) {
        this.staleTags.push(rules);
        // Listed assets are expected to report at all: their clock starts now.
        for (const asset of cfg.assets ?? []) rules.series.set(asset, newSeries(startedAt));
      }
    }
  }

  /** Whether any tag has an expectation at all (a source with an empty tags map checks nothing). */
  get empty(): boolean {
    return this.tags.size === 0;
  }

  /**
   * The rules the reading breaks, or undefined when it breaks none (the common case, which
   * allocates nothing). Also keeps the series' last value and last-seen time. Never throws.
   */
  check(r: Reading, now: number): ExpectationRule[] | undefined {
    const t = this.tags.get(r.tag);
    if (t === undefined) return undefined;
    if (this.only !== undefined && !this.only.has(r.asset)) return undefined;
    let s = t.series.get(r.asset);
    if (s === undefined && t.series.size < MAX_ASSETS_PER_TAG) t.series.set(r.asset, (s = newSeries(now)));
    let flags: ExpectationRule[] | undefined;
    const v = r.value;
    let rate = 0;
    if (v === null) {
      if (t.notNull) flags = ['not_null'];
    } else {
      if (v < t.min || v > t.max) (flags ??= []).push('range');
      if (t.allowed !== undefined && !t.allowed.has(v)) (flags ??= []).push('allowed_values');
      if (s !== undefined) {
        const time = r.sourceTime ?? r.receivedAt;
        // Only forward in time: a late reading neither breaks nor moves the reference.
        if (s.last === s.last && time > s.lastTime) {
          rate = Math.abs(v - s.last) / ((time - s.lastTime) / 1000);
          if (t.maxRate > 0 && rate > t.maxRate) (flags ??= []).push('rate_of_change');
        }
        if (!(time < s.lastTime)) {
          s.last = v;
          s.lastTime = time;
        }
      }
    }
    if (s !== undefined) {
      s.seenAt = now;
      s.traceId = r.traceId;
    }
    if (flags !== undefined) this.report(t, s, r, flags, rate, now);
    if (s !== undefined) {
      // A fresh reading of a stale series: staleness is over.
      if (s.stale) {
        s.stale = false;
        if (s.dq === undefined) s.dq = this.monitor.seriesOf(this.source, r.asset, t.tag);
      }
      if (s.dq !== undefined && s.dq.rules.size > 0) this.monitor.passed(s.dq, now, flags);
    }
    return flags;
  }

  private report(
    t: TagRules,
    s: SeriesState | undefined,
    r: Reading,
    flags: readonly ExpectationRule[],
    rate: number,
    now: number,
  ): void {
    const dq = s?.dq ?? this.monitor.seriesOf(this.source, r.asset, t.tag);
    if (s !== undefined) s.dq = dq;
    for (const rule of flags)
      this.monitor.violation(
        dq,
        {
          rule,
          message: explainRule(r, rule, t.expectation, rate),
          traceId: r.traceId,
          origin: `${r.asset}/${r.tag}`,
          receivedAt: r.receivedAt,
        },
        now,
      );
  }

  /** A sentence saying why the reading broke the rule (for results flagged under the flag policy). */
  explain(r: Reading, rule: ExpectationRule): string {
    const e = this.tags.get(r.tag)?.expectation;
    return e ? explainRule(r, rule, e, undefined) : explainFlag(r, rule);
  }

  /**
   * Raises `stale` for every asset and tag with staleAfterSeconds that has not reported for that
   * long, and keeps it raised while the silence lasts. Called from a timer.
   */
  staleCheck(now: number): void {
    for (const t of this.staleTags) {
      for (const [asset, s] of t.series) {
        if (now - s.seenAt <= t.staleMs) continue;
        const first = !s.stale;
        s.stale = true;
        s.dq ??= this.monitor.seriesOf(this.source, asset, t.tag);
        const silent = Math.round((now - s.seenAt) / 1000);
        this.monitor.violation(
          s.dq,
          {
            rule: 'stale',
            message: `${asset}/${t.tag} has sent no reading for ${silent} s (staleAfterSeconds ${t.staleMs / 1000})`,
            traceId: s.traceId,
            origin: `${asset}/${t.tag}`,
          },
          now,
          // Counted once per silence; re-asserted while it lasts, so that it does not clear by time.
          first,
        );
      }
    }
  }

  /** Whether any tag has a staleness rule (the timer is needed). */
  get watchesStaleness(): boolean {
    return this.staleTags.length > 0;
  }

  /**
   * Staleness counts from here (DataQuality.start(): once every source has had its chance to
   * connect), not from when the checker was built: a slow start is not a silent asset. Series
   * that reported before are counted from here too, which only delays their staleness by the
   * start-up time.
   */
  startClocks(now: number): void {
    for (const t of this.staleTags) for (const s of t.series.values()) if (s.seenAt < now) s.seenAt = now;
  }
}

function newSeries(now: number): SeriesState {
  return {
    last: Number.NaN,
    lastTime: Number.NEGATIVE_INFINITY,
    seenAt: now,
    traceId: undefined,
    stale: false,
    dq: undefined,
  };
}

function explainRule(r: Reading, rule: ExpectationRule, e: TagExpectation, rate: number | undefined): string {
  const where = `${r.asset}/${r.tag}`;
  switch (rule) {
    case 'not_null':
      return `${where} has no value${r.status ? ` (${r.status})` : ''}, and notNull is set`;
    case 'range':
      return `${where} = ${r.value} is outside the expected range [${e.range?.min ?? '-∞'}, ${e.range?.max ?? '∞'}]`;
    case 'allowed_values':
      return `${where} = ${r.value} is not one of the allowed values ${listed(e.allowedValues ?? [])}`;
    case 'rate_of_change':
      return rate !== undefined
        ? `${where} = ${r.value} changed at ${round(rate)}/s, faster than maxRateOfChange ${e.maxRateOfChange}/s`
        : `${where} = ${r.value} changed faster than maxRateOfChange ${e.maxRateOfChange}/s`;
    default:
      return explainFlag(r, rule);
  }
}

/** Allowed values shown in a message at most; a list of up to 1000 would drown the sentence. */
const SHOWN_VALUES = 10;

/** `[0, 1, 2]`, or the first SHOWN_VALUES then `… N more]`. */
export function listed(values: readonly number[]): string {
  if (values.length <= SHOWN_VALUES) return JSON.stringify(values);
  return `[${values.slice(0, SHOWN_VALUES).join(', ')}, … ${values.length - SHOWN_VALUES} more]`;
}

const round = (x: number) => Math.round(x * 1000) / 1000;
