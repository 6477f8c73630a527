import { SUMMARY_STATS, type TelemetryPreprocessing } from '../model/manifest.js';
import type { Reading } from './reading.js';

/**
 * Turns a stream of readings into the windows a telemetry model scores, as its manifest says:
 * per asset, readings are placed on a common axis of steps, each step keeps the last reading of
 * every tag, a tag without a reading in a step keeps its previous value for at most `holdSteps`
 * steps, and every `stride` steps the last `window` steps become one feature tensor. Pure and
 * synchronous: no clock, no I/O, so that live data and a replay give the same windows.
 *
 * The rules (docs/TELEMETRY.md, "Windows and models"):
 *
 * - Axis. `time`: step = floor(t / stepSeconds), t = the reading's source time, else its receive
 *   time. `counter`: a reading of the counter tag opens step floor(value / step); a reading of
 *   another tag belongs to the step of a counter reading of the same asset with the same
 *   timestamp when there is one, else to the asset's current step (the last counter value).
 *   Readings of one batch are taken in time order; within one timestamp a single counter reading
 *   goes first, so that a C-MAPSS cycle sent as one batch (cycle, 3 settings, 21 sensors, one
 *   timestamp) lands in its own step whatever the order of its metrics. Several counter readings
 *   sharing one timestamp keep their order: each opens the step of the readings after it.
 * - Only good readings are values. A bad or uncertain reading marks its tag missing in that step
 *   and ends the hold of the previous value: a failing sensor is never papered over.
 * - Duplicates: in a step still open, the latest reading of a tag wins (by time, then arrival).
 * - A step is final once a reading of a step more than `lateSteps` newer arrives; on a counter
 *   axis also as soon as every tag has a reading in it (a complete cycle is scored at once).
 *   Readings for a final step are dropped and counted: `duplicate` for the current counter step
 *   (a device repeating an unchanged cycle), `out_of_order` otherwise.
 * - Missing values are never filled with zeros: a window with a step where a tag has no value is
 *   not scored but counted: `gap` when the asset sent nothing in that step, `bad_quality` when
 *   the tag's last reading was bad or uncertain, `stale` when the tag has not reported for more
 *   than `holdSteps` steps (or never).
 * - A reading that broke a data expectation (Reading.flags, docs/DATA-QUALITY.md) is, as
 *   `flagged` says: `missing` (the default) like a bad reading, but counted as `data_quality`;
 *   or `value`, used as any good one, and the windows its value reaches list it in `flagged`.
 * - A counter going backwards with a newer timestamp (an engine replaced, cycles restarting at 1)
 *   scores what is still open of the old run, then starts the asset afresh (`resets`). One going
 *   backwards with an older timestamp is a late reading (`out_of_order`).
 */

export type WindowSkipReason = 'gap' | 'stale' | 'bad_quality' | 'data_quality';
export type ReadingDropReason = 'out_of_order' | 'duplicate' | 'no_axis';

export interface TelemetryWindow {
  asset: string;
  /** First and last step: the step index on a time axis, the counter value on a counter axis. */
  axisStart: number;
  axisEnd: number;
  /** The model input, as `features` says: [1, window, tags] or [1, tags * 6]. */
  tensor: Float32Array;
  shape: number[];
  /** Normalised value (z-score) of every tag at the last step, in `tags` order. */
  lastValues: Float32Array;
  /** Latest timestamp (ms since the epoch) among the readings of the last step with readings. */
  endTime: number;
  /** Sources whose readings reached this asset since it (re)started. */
  sources: string[];
  /**
   * `flagged: 'value'` only: the readings that broke a data expectation whose values are in the
   * window (held values included), at most MAX_FLAGGED; absent when there are none.
   */
  flagged?: Reading[] | undefined;
  /**
   * Distinct trace ids (Reading.traceId) of the readings whose values make the window's last
   * step, a held value's included, and of the counter reading that placed it; at most
   * MAX_TRACE_IDS, in tag order. Empty when the readings carried none (a replay from a file).
   */
  traceIds: string[];
}

/** Trace ids kept per window: a step is normally one message or a few, never hundreds. */
export const MAX_TRACE_IDS = 16;

export interface WindowOutcome {
  windows: TelemetryWindow[];
  /** Windows due (by stride) that were not scored, by reason. */
  skipped: Partial<Record<WindowSkipReason, number>>;
  /** Readings of the model's tags that could not be placed, by reason. */
  dropped: Partial<Record<ReadingDropReason, number>>;
  /** Assets whose counter went backwards and that started afresh. */
  resets: Array<{ asset: string; from: number; to: number }>;
}

export interface WindowerStats {
  windows: number;
  skipped: Record<WindowSkipReason, number>;
  dropped: Record<ReadingDropReason, number>;
  resets: number;
}

export interface WindowerOptions {
  preprocessing: TelemetryPreprocessing;
  /** Steps a reading may arrive late and still count (0: a newer step closes the previous one). */
  lateSteps?: number | undefined;
  /** Overrides the manifest's holdSteps (a deployment whose sources only report changes). */
  holdSteps?: number | undefined;
  /**
   * What a reading with flags (a broken data expectation) is: `missing` (default): not a value,
   * windows with it are skipped as `data_quality`; `value`: a value like any, listed in the
   * window's `flagged`.
   */
  flagged?: 'missing' | 'value' | undefined;
  /** Only these assets; every asset when absent. */
  assets?: readonly string[] | undefined;
}

const OK = 0;
const STALE = 1;
const BAD = 2;
const GAP = 3;
const DATA_QUALITY = 4;
const REASON: Record<number, WindowSkipReason> = {
  [STALE]: 'stale',
  [BAD]: 'bad_quality',
  [GAP]: 'gap',
  [DATA_QUALITY]: 'data_quality',
};
/** Flagged readings a window lists at most. */
export const MAX_FLAGGED = 64;

/** Counter timestamps remembered per asset to place other tags' readings that share one. */
const REMEMBERED_COUNTER_TIMES = 64;

interface Cell {
  value: number | null;
  good: boolean;
  time: number;
  /** The reading's trace id: carried on the cell the reading already allocates, nothing more. */
  trace: string | undefined;
  /** The reading, when it broke a data expectation. */
  flagged: Reading | undefined;
}

interface OpenStep {
  cells: Array<Cell | undefined>;
  filled: number;
  /** Latest timestamp of any reading placed in the step, counter readings included. */
  time: number;
  /** Trace id of the latest counter reading that placed the step (counter axis). */
  counterTrace: string | undefined;
}

interface AssetState {
  asset: string;
  /** Newest step seen (time axis) or the counter's current step. */
  cur: number;
  /** First step since the asset (re)started: windows are aligned to it. */
  origin: number;
  /** Last final step. */
  closed: number;
  open: Map<number, OpenStep>;
  /** Counter axis: timestamp -> step (NaN where several counter steps share the timestamp). */
  stepAt: Map<number, number>;
  lastCounterTime: number;
  /** Per tag: the step of its last good value (undefined: none to hold), the value, and whether its last reading was bad. */
  lastGoodStep: Array<number | undefined>;
  lastZ: Float64Array;
  /** Per tag: the trace id of the reading its held value came from. */
  lastTrace: Array<string | undefined>;
  lastBad: boolean[];
  /** Per tag: whether its last bad reading was a flagged one (`missing`), and the flagged reading its held value came from (`value`). */
  lastDq: boolean[];
  lastFlagged: Array<Reading | undefined>;
  /** `value`: per ring slot, the flagged readings whose values the step holds. */
  flags: Array<Reading[] | undefined>;
  /** The last `window` final steps, indexed by step mod window. */
  ring: Float64Array;
  codes: Uint8Array;
  times: Float64Array;
  lastTime: number;
  sources: Set<string>;
}

export class Windower {
  private readonly tags: readonly string[];
  private readonly index = new Map<string, number>();
  private readonly counterTag: string | undefined;
  private readonly stepSize: number;
  private readonly stepMs: number;
  private readonly W: number;
  private readonly stride: number;
  private readonly hold: number;
  private readonly late: number;
  private readonly mean: readonly number[];
  private readonly std: readonly number[];
  private readonly features: 'window' | 'summary';
  private readonly only: Set<string> | undefined;
  private readonly flaggedMissing: boolean;
  private readonly states = new Map<string, AssetState>();
  private readonly totals: WindowerStats = {
    windows: 0,
    skipped: { gap: 0, stale: 0, bad_quality: 0, data_quality: 0 },
    dropped: { out_of_order: 0, duplicate: 0, no_axis: 0 },
    resets: 0,
  };
  /** The outcome being built by the current push/flush. */
  private out: WindowOutcome = emptyOutcome();

  constructor(o: WindowerOptions) {
    const p = o.preprocessing;
    this.tags = p.tags;
    p.tags.forEach((t, i) => this.index.set(t, i));
    this.counterTag = p.axis.type === 'counter' ? p.axis.tag : undefined;
    this.stepSize = p.axis.type === 'counter' ? p.axis.step : 1;
    this.stepMs = p.axis.type === 'time' ? p.axis.stepSeconds * 1000 : 1;
    this.W = p.window;
    this.stride = p.stride;
    this.hold = o.holdSteps ?? p.holdSteps;
    this.late = o.lateSteps ?? 0;
    this.mean = p.normalize.mean;
    this.std = p.normalize.std;
    this.features = p.features;
    this.only = o.assets ? new Set(o.assets) : undefined;
    this.flaggedMissing = (o.flagged ?? 'missing') === 'missing';
  }

  /** Places a batch of readings (any quality) and returns the windows that became due. */
  push(batch: readonly Reading[]): WindowOutcome {
    this.out = emptyOutcome();
    const touched = new Set<AssetState>();
    for (const r of this.ordered(batch)) {
      const s = this.place(r);
      if (s) touched.add(s);
    }
    if (this.counterTag !== undefined) for (const s of touched) this.closeComplete(s);
    return this.finish();
  }

  /** Makes every open step final (the end of a replay): the last windows are scored. */
  flush(asset?: string): WindowOutcome {
    this.out = emptyOutcome();
    for (const [name, s] of this.states) {
      if (asset !== undefined && name !== asset) continue;
      this.finalizeThrough(s, this.newestStep(s));
    }
    return this.finish();
  }

  stats(): WindowerStats {
    return {
      windows: this.totals.windows,
      skipped: { ...this.totals.skipped },
      dropped: { ...this.totals.dropped },
      resets: this.totals.resets,
    };
  }

  /** Assets seen so far. */
  assets(): string[] {
    return [...this.states.keys()];
  }

  /**
   * The batch's readings of this model's assets and tags, in time order; within one timestamp a
   * lone counter reading goes first (see the class comment).
   */
  private ordered(batch: readonly Reading[]): Reading[] {
    const relevant = batch.filter(
      (r) =>
        (this.only === undefined || this.only.has(r.asset)) &&
        (this.index.has(r.tag) || r.tag === this.counterTag),
    );
    const keyed = relevant.map((r, i) => ({ r, i, t: timeOf(r) }));
    keyed.sort((a, b) => a.t - b.t || a.i - b.i);
    if (this.counterTag === undefined) return keyed.map((k) => k.r);
    const result: Reading[] = [];
    for (let i = 0; i < keyed.length;) {
      let j = i;
      while (j < keyed.length && keyed[j]!.t === keyed[i]!.t) j++;
      const run = keyed.slice(i, j).map((k) => k.r);
      const counters = run.filter((r) => r.tag === this.counterTag);
      if (counters.length === 1) result.push(counters[0]!, ...run.filter((r) => r !== counters[0]));
      else result.push(...run);
      i = j;
    }
    return result;
  }

  private place(r: Reading): AssetState | undefined {
    const t = timeOf(r);
    if (this.counterTag !== undefined && r.tag === this.counterTag) return this.placeCounter(r, t);
    let s = this.states.get(r.asset);
    let step: number;
    if (this.counterTag !== undefined) {
      if (!s) {
        this.drop('no_axis');
        return undefined;
      }
      const at = s.stepAt.get(t);
      step = at !== undefined && !Number.isNaN(at) ? at : s.cur;
    } else {
      step = Math.floor(t / this.stepMs);
      if (!s) s = this.start(r.asset, step, t);
      else if (step > s.cur) {
        s.cur = step;
        this.finalizeThrough(s, step - 1 - this.late);
      }
    }
    if (step <= s.closed) {
      this.drop(step === s.cur ? 'duplicate' : 'out_of_order');
      return undefined;
    }
    s.sources.add(r.source);
    const open = this.openStep(s, step);
    const j = this.index.get(r.tag)!;
    const prev = open.cells[j];
    if (prev && prev.time > t) return s;
    if (!prev) open.filled++;
    const flagged = r.flags !== undefined && r.flags.length > 0 ? r : undefined;
    open.cells[j] = {
      value: r.value,
      good: r.quality === 'good' && r.value !== null && !(flagged && this.flaggedMissing),
      time: t,
      trace: r.traceId,
      flagged,
    };
    open.time = Math.max(open.time, t);
    return s;
  }

  private placeCounter(r: Reading, t: number): AssetState | undefined {
    if (r.quality !== 'good' || r.value === null) {
      this.drop('no_axis');
      return undefined;
    }
    const step = Math.floor(r.value / this.stepSize + 1e-9);
    let s = this.states.get(r.asset);
    if (!s) s = this.start(r.asset, step, t);
    else if (step > s.cur) {
      s.cur = step;
      this.finalizeThrough(s, step - 1 - this.late);
    } else if (step < s.cur) {
      if (t <= s.lastCounterTime) {
        // A late counter reading: it still places the readings that share its timestamp while
        // its step is open.
        if (step <= s.closed) {
          this.drop('out_of_order');
          return undefined;
        }
        this.remember(s, step, t, r.traceId);
        return s;
      }
      // The counter restarted (a replaced engine): score what the old run still has open, then
      // begin again without mixing the two runs in one window.
      const from = s.cur * this.stepSize;
      this.finalizeThrough(s, this.newestStep(s));
      const sources = s.sources;
      s = this.start(r.asset, step, t);
      for (const src of sources) s.sources.add(src);
      this.out.resets.push({ asset: r.asset, from, to: step * this.stepSize });
      this.totals.resets++;
    }
    s.lastCounterTime = Math.max(s.lastCounterTime, t);
    s.sources.add(r.source);
    this.remember(s, step, t, r.traceId);
    return s;
  }

  /** Records that the counter was at `step` at time t, and that the step has a reading. */
  private remember(s: AssetState, step: number, t: number, trace: string | undefined): void {
    const known = s.stepAt.get(t);
    s.stepAt.set(t, known !== undefined && known !== step ? Number.NaN : step);
    if (s.stepAt.size > REMEMBERED_COUNTER_TIMES) s.stepAt.delete(s.stepAt.keys().next().value!);
    if (step > s.closed) {
      const open = this.openStep(s, step);
      if (trace !== undefined) open.counterTrace = trace;
      open.time = Math.max(open.time, t);
    }
  }

  private start(asset: string, step: number, t: number): AssetState {
    const n = this.tags.length;
    const s: AssetState = {
      asset,
      cur: step,
      origin: step,
      closed: step - 1,
      open: new Map(),
      stepAt: new Map(),
      lastCounterTime: Number.NEGATIVE_INFINITY,
      lastGoodStep: new Array<number | undefined>(n).fill(undefined),
      lastZ: new Float64Array(n),
      lastTrace: new Array<string | undefined>(n).fill(undefined),
      lastBad: new Array<boolean>(n).fill(false),
      lastDq: new Array<boolean>(n).fill(false),
      lastFlagged: new Array<Reading | undefined>(n).fill(undefined),
      flags: new Array<Reading[] | undefined>(this.W).fill(undefined),
      ring: new Float64Array(this.W * n),
      codes: new Uint8Array(this.W),
      times: new Float64Array(this.W),
      lastTime: t,
      sources: new Set(),
    };
    this.states.set(asset, s);
    return s;
  }

  private openStep(s: AssetState, step: number): OpenStep {
    let o = s.open.get(step);
    if (!o) {
      o = {
        cells: new Array<Cell | undefined>(this.tags.length),
        filled: 0,
        time: Number.NEGATIVE_INFINITY,
        counterTrace: undefined,
      };
      s.open.set(step, o);
    }
    return o;
  }

  private newestStep(s: AssetState): number {
    let newest = s.cur;
    for (const k of s.open.keys()) newest = Math.max(newest, k);
    return newest;
  }

  /** Counter axis: open steps that every tag has reported in are final at once, in order. */
  private closeComplete(s: AssetState): void {
    for (;;) {
      const next = s.open.get(s.closed + 1);
      if (!next || next.filled < this.tags.length) return;
      this.finalizeThrough(s, s.closed + 1);
    }
  }

  /** Makes steps up to `target` final, in order, emitting or skipping the windows that end on them. */
  private finalizeThrough(s: AssetState, target: number): void {
    while (s.closed < target) {
      const k = s.closed + 1;
      if (!s.open.has(k) && this.allBeyondHold(s, k)) {
        // A run of steps with nothing in them and nothing left to hold: every window ending in
        // it is a gap. Counted in one go, so that a machine silent for a day costs nothing.
        let end = target;
        for (const o of s.open.keys()) if (o > s.closed && o - 1 < end) end = o - 1;
        if (end - k + 1 > this.W) {
          this.count('gap', this.windowEndsIn(s, k, end));
          s.codes.fill(GAP);
          s.closed = end;
          continue;
        }
      }
      this.finalizeStep(s, k);
    }
  }

  private allBeyondHold(s: AssetState, k: number): boolean {
    return s.lastGoodStep.every((g) => g === undefined || k - g > this.hold);
  }

  /** Aligned window ends in [lo, hi]: steps origin + W - 1 + m * stride. */
  private windowEndsIn(s: AssetState, lo: number, hi: number): number {
    const first = s.origin + this.W - 1;
    const from = Math.max(lo, first);
    if (from > hi) return 0;
    return Math.floor((hi - first) / this.stride) - Math.ceil((from - first) / this.stride) + 1;
  }

  private finalizeStep(s: AssetState, k: number): void {
    const n = this.tags.length;
    const open = s.open.get(k);
    s.open.delete(k);
    const slot = mod(k, this.W);
    let code = OK;
    let stepFlags: Reading[] | undefined;
    for (let j = 0; j < n; j++) {
      const cell = open?.cells[j];
      let z: number | undefined;
      if (cell) {
        if (cell.good) {
          z = (cell.value! - this.mean[j]!) / this.std[j]!;
          s.lastGoodStep[j] = k;
          s.lastZ[j] = z;
          s.lastTrace[j] = cell.trace;
          s.lastBad[j] = false;
          s.lastFlagged[j] = cell.flagged;
          if (cell.flagged) (stepFlags ??= []).push(cell.flagged);
        } else {
          s.lastGoodStep[j] = undefined;
          s.lastBad[j] = true;
          s.lastDq[j] = cell.flagged !== undefined && this.flaggedMissing;
          code = Math.max(code, s.lastDq[j] ? DATA_QUALITY : BAD);
        }
      } else {
        const g = s.lastGoodStep[j];
        if (g !== undefined && k - g <= this.hold) {
          z = s.lastZ[j];
          const held = s.lastFlagged[j];
          if (held) (stepFlags ??= []).push(held);
        } else
          code = Math.max(
            code,
            open === undefined ? GAP : s.lastBad[j] ? (s.lastDq[j] ? DATA_QUALITY : BAD) : STALE,
          );
      }
      s.ring[slot * n + j] = z ?? Number.NaN;
    }
    if (open && open.time > Number.NEGATIVE_INFINITY) s.lastTime = open.time;
    s.codes[slot] = code;
    s.flags[slot] = stepFlags;
    s.times[slot] = s.lastTime;
    s.closed = k;

    const filled = k - s.origin + 1;
    if (filled < this.W || (filled - this.W) % this.stride !== 0) return;
    let worst = OK;
    for (let i = 0; i < this.W; i++) worst = Math.max(worst, s.codes[i]!);
    if (worst !== OK) {
      this.count(REASON[worst]!, 1);
      return;
    }
    this.out.windows.push(this.build(s, k, open?.counterTrace));
    this.totals.windows++;
  }

  private build(s: AssetState, end: number, counterTrace: string | undefined): TelemetryWindow {
    const n = this.tags.length;
    const W = this.W;
    const start = end - W + 1;
    const rows = new Float64Array(W * n);
    for (let t = 0; t < W; t++) {
      const slot = mod(start + t, W);
      for (let j = 0; j < n; j++) rows[t * n + j] = s.ring[slot * n + j]!;
    }
    const lastValues = Float32Array.from(rows.subarray((W - 1) * n));
    let tensor: Float32Array;
    let shape: number[];
    if (this.features === 'window') {
      tensor = Float32Array.from(rows);
      shape = [1, W, n];
    } else {
      tensor = summarize(rows, W, n);
      shape = [1, n * SUMMARY_STATS];
    }
    return {
      asset: s.asset,
      axisStart: this.axisValue(start),
      axisEnd: this.axisValue(end),
      tensor,
      shape,
      lastValues,
      endTime: s.times[mod(end, W)]!,
      sources: [...s.sources].sort(),
      traceIds: traceIdsOf(s.lastTrace, counterTrace),
      ...flaggedIn(s.flags),
    };
  }

  private axisValue(step: number): number {
    return this.counterTag === undefined ? step : step * this.stepSize;
  }

  private count(reason: WindowSkipReason, n: number): void {
    if (n <= 0) return;
    this.out.skipped[reason] = (this.out.skipped[reason] ?? 0) + n;
    this.totals.skipped[reason] += n;
  }

  private drop(reason: ReadingDropReason): void {
    this.out.dropped[reason] = (this.out.dropped[reason] ?? 0) + 1;
    this.totals.dropped[reason]++;
  }

  private finish(): WindowOutcome {
    const out = this.out;
    this.out = emptyOutcome();
    return out;
  }
}

/**
 * Per tag [mean, std, min, max, last, slope] of a window (rows: steps, columns: tags), flattened
 * tag by tag. std is the population standard deviation; slope the least-squares slope per step.
 */
export function summarize(rows: Float64Array, W: number, n: number): Float32Array {
  const out = new Float32Array(n * SUMMARY_STATS);
  const tMean = (W - 1) / 2;
  let tVar = 0;
  for (let t = 0; t < W; t++) tVar += (t - tMean) ** 2;
  for (let j = 0; j < n; j++) {
    let sum = 0;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let t = 0; t < W; t++) {
      const x = rows[t * n + j]!;
      sum += x;
      if (x < min) min = x;
      if (x > max) max = x;
    }
    const mean = sum / W;
    let sq = 0;
    let cov = 0;
    for (let t = 0; t < W; t++) {
      const d = rows[t * n + j]! - mean;
      sq += d * d;
      cov += (t - tMean) * d;
    }
    const o = j * SUMMARY_STATS;
    out[o] = mean;
    out[o + 1] = Math.sqrt(sq / W);
    out[o + 2] = min;
    out[o + 3] = max;
    out[o + 4] = rows[(W - 1) * n + j]!;
    out[o + 5] = tVar > 0 ? cov / tVar : 0;
  }
  return out;
}

/**
 * The distinct trace ids of a window's last step: the counter reading's first, then each tag's
 * in tag order. Runs once per scored window; a step is usually one message, so the list is short.
 */
function traceIdsOf(perTag: ReadonlyArray<string | undefined>, counter: string | undefined): string[] {
  const ids: string[] = counter !== undefined ? [counter] : [];
  for (const id of perTag) {
    if (ids.length >= MAX_TRACE_IDS) break;
    if (id !== undefined && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** The distinct flagged readings of a window's steps (the ring holds exactly the window's). */
function flaggedIn(slots: ReadonlyArray<Reading[] | undefined>): { flagged?: Reading[] } {
  let flagged: Reading[] | undefined;
  for (const step of slots) {
    if (step === undefined) continue;
    for (const r of step) {
      if ((flagged ??= []).length >= MAX_FLAGGED) return { flagged };
      if (!flagged.includes(r)) flagged.push(r);
    }
  }
  return flagged ? { flagged } : {};
}

/** The time a reading is placed by: when the device measured it, else when it arrived. */
export function timeOf(r: Reading): number {
  return r.sourceTime ?? r.receivedAt;
}

function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

function emptyOutcome(): WindowOutcome {
  return { windows: [], skipped: {}, dropped: {}, resets: [] };
}
