import type { Engine, TensorMap } from '../engines/engine.js';
import { VigilError } from '../errors.js';
import {
  isImageManifest,
  type ImageManifest,
  type Manifest,
  type TelemetryManifest,
} from '../model/manifest.js';
import { classify } from '../pipeline/postprocess.js';
import { scoreTelemetry } from '../pipeline/telemetry-postprocess.js';
import { loadHoldout, type ImageSample, type LoadedHoldout, type TelemetrySample } from './holdout.js';
import { brighten, encodePng, imageInput, rawImage, shift, telemetryInput, withColumn } from './inputs.js';
import type { Invariance, Monotonic } from './schema.js';
import { auc, binaryCounts, f1, mae, precision, recall, rmse } from './scores.js';
import type { AcceptanceReport, CheckResult, FailingExample } from './types.js';

/** Failing samples named per check; the count says how many there were in all. */
const MAX_EXAMPLES = 5;

/** One holdout sample as the model saw it. */
interface Scored {
  id: string;
  /** The top class (images) or the telemetry result's label. */
  label: string;
  /** The published score: defect score, failure probability, anomaly score, RUL (clipped as published). */
  score: number;
  /** The values postprocessing reads: probabilities after the activation, or the raw output value(s). */
  values: number[];
  outputs: TensorMap;
}

export interface AcceptanceOptions {
  /** Ends the run between two inferences (the rollout is cancelled, the daemon stops). */
  signal?: AbortSignal | undefined;
}

export class AcceptanceCancelled extends Error {
  constructor(
    /** Inferences run before the run stopped. */
    readonly inferences = 0,
  ) {
    super('acceptance tests cancelled');
    this.name = 'AcceptanceCancelled';
  }
}

/**
 * Runs a package's acceptance tests on an engine already loaded from it: every holdout sample
 * through Vigil's own preprocessing, the engine and postprocessing, then each declared check.
 * One inference at a time, so that beside live pipelines it takes one engine's worth of CPU.
 * Throws VigilError when the package declares no tests or its holdout cannot be used.
 */
export async function runAcceptance(
  dir: string,
  engine: Engine,
  options: AcceptanceOptions = {},
): Promise<AcceptanceReport> {
  const started = performance.now();
  const m = engine.manifest;
  if (!m.acceptance)
    throw new VigilError(
      'VIGIL_ERR_MANIFEST_INVALID',
      `model package ${dir} (${m.name}@${m.version}) declares no acceptance tests: its vigil.json has no acceptance section (docs/ACCEPTANCE.md)`,
    );
  const holdout = await loadHoldout(dir, m);
  if (options.signal?.aborted) throw new AcceptanceCancelled();
  const run = new Runner(engine, m, holdout, options.signal);
  const checks = await run.all();
  return {
    package: dir,
    model: m.name,
    version: m.version,
    backend: engine.backend,
    provider: engine.provider,
    holdout: {
      format: holdout.format,
      samples: holdout.samples.length,
      ...(holdout.description ? { description: holdout.description } : {}),
    },
    checks,
    passed: checks.every((c) => c.passed),
    inferences: run.inferences,
    durationMs: Math.round(performance.now() - started),
  };
}

function fmt(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return String(x);
  return Number(x.toPrecision(digits)).toString();
}

function pct(n: number, of: number): string {
  return `${fmt((100 * n) / of, 3)}% (${n}/${of})`;
}

/** A result from a list of per-sample failures and a required share of passing samples. */
function agreementResult(
  id: string,
  title: string,
  expected: string,
  total: number,
  failing: FailingExample[],
  minAgreement: number,
  extra = '',
): CheckResult {
  const passedCount = total - failing.length;
  return {
    id,
    title,
    expected,
    measured: `${pct(passedCount, total)}${extra}`,
    passed: passedCount / total >= minAgreement,
    failing: failing.slice(0, MAX_EXAMPLES),
    failingCount: failing.length,
  };
}

function atLeast(minAgreement: number): string {
  return minAgreement >= 1 ? 'every sample' : `at least ${fmt(minAgreement * 100, 3)}% of samples`;
}

class Runner {
  inferences = 0;
  private base: Scored[] = [];

  constructor(
    private readonly engine: Engine,
    private readonly m: Manifest,
    private readonly holdout: LoadedHoldout,
    private readonly signal: AbortSignal | undefined,
  ) {}

  async all(): Promise<CheckResult[]> {
    const c = this.m.acceptance!.checks;
    this.base = [];
    if (this.holdout.format === 'images')
      for (const s of this.holdout.samples) this.base.push(await this.scoreImage(s.id, s.bytes));
    else for (const s of this.holdout.samples) this.base.push(await this.scoreRows(s.id, s.rows));

    const results: CheckResult[] = [];
    if (c.outputs) {
      if (c.outputs.shape) results.push(this.shapeCheck());
      if (c.outputs.probabilities !== undefined)
        results.push(
          this.probabilityCheck(c.outputs.probabilities === true ? 1e-3 : c.outputs.probabilities.tolerance),
        );
      if (c.outputs.range) results.push(this.rangeCheck(c.outputs.range));
    }
    for (const inv of c.invariance ?? []) results.push(await this.invariance(inv));
    for (const mono of c.monotonic ?? []) results.push(await this.monotonic(mono));
    results.push(...this.metricChecks());
    return results;
  }

  // --- scoring -------------------------------------------------------------------------------

  private async infer(data: Float32Array): Promise<TensorMap> {
    if (this.signal?.aborted) throw new AcceptanceCancelled(this.inferences);
    const spec = this.m.inputs[0]!;
    this.inferences++;
    return this.engine.run({ [spec.name]: { dtype: 'float32', shape: spec.shape, data } });
  }

  private async scoreImage(id: string, frame: Uint8Array): Promise<Scored> {
    const m = this.m as ImageManifest;
    const outputs = await this.infer(await imageInput(m, frame));
    const c = classify(outputs, m.postprocessing);
    return {
      id,
      label: c.label,
      score: c.score,
      values: m.postprocessing.labels.map((l) => c.scores[l]!),
      outputs,
    };
  }

  private async scoreRows(id: string, rows: readonly (readonly number[])[]): Promise<Scored> {
    const m = this.m as TelemetryManifest;
    const h = this.holdout as Extract<LoadedHoldout, { format: 'telemetry' }>;
    const outputs = await this.infer(telemetryInput(m, h.columns, rows, id));
    const s = scoreTelemetry(outputs, m.postprocessing);
    const pp = m.postprocessing;
    const out = outputs[pp.output]!;
    const values =
      pp.type === 'failure_probability'
        ? Array.from(out.data, Number)
        : [Number(out.data[pp.type === 'rul' ? 0 : pp.index])];
    return { id, label: s.label, score: s.score, values, outputs };
  }

  // --- outputs -------------------------------------------------------------------------------

  private shapeCheck(): CheckResult {
    const failing: FailingExample[] = [];
    for (const s of this.base) {
      for (const spec of this.m.outputs) {
        const t = s.outputs[spec.name];
        const count = spec.shape.reduce((a, b) => a * b, 1);
        if (!t) failing.push({ sample: s.id, detail: `no output '${spec.name}'` });
        else if (t.data.length !== count || t.shape.join('x') !== spec.shape.join('x'))
          failing.push({
            sample: s.id,
            detail: `'${spec.name}' has ${t.data.length} values, shape [${t.shape.join(', ')}]`,
          });
      }
    }
    const declared = this.m.outputs.map((o) => `${o.name} [${o.shape.join(', ')}]`).join(', ');
    return agreementResult(
      'outputs.shape',
      'every output has its declared shape',
      declared,
      this.base.length,
      failing,
      1,
    );
  }

  private probabilityCheck(tolerance: number): CheckResult {
    const failing: FailingExample[] = [];
    let lo = Infinity;
    let hi = -Infinity;
    let minSum = Infinity;
    let maxSum = -Infinity;
    // Float rounding may put a softmax a hair above 1; anything more is not a probability.
    const eps = 1e-6;
    for (const s of this.base) {
      const sum = s.values.reduce((a, b) => a + b, 0);
      lo = Math.min(lo, ...s.values);
      hi = Math.max(hi, ...s.values);
      minSum = Math.min(minSum, sum);
      maxSum = Math.max(maxSum, sum);
      const outside = s.values.find((v) => !(v >= -eps && v <= 1 + eps));
      if (outside !== undefined || !(Math.abs(sum - 1) <= tolerance))
        failing.push({
          sample: s.id,
          detail: `values [${s.values.map((v) => fmt(v)).join(', ')}], sum ${fmt(sum, 6)}`,
        });
    }
    return agreementResult(
      'outputs.probabilities',
      'outputs are probabilities: each in [0, 1], summing to 1',
      `each in [0, 1], sum 1 ± ${fmt(tolerance)} on every sample`,
      this.base.length,
      failing,
      1,
      `; values ${fmt(lo)}..${fmt(hi)}, sums ${fmt(minSum, 6)}..${fmt(maxSum, 6)}`,
    );
  }

  private rangeCheck(range: { min?: number | undefined; max?: number | undefined }): CheckResult {
    const failing: FailingExample[] = [];
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of this.base) {
      lo = Math.min(lo, ...s.values);
      hi = Math.max(hi, ...s.values);
      const out = s.values.find(
        (v) =>
          !Number.isFinite(v) ||
          (range.min !== undefined && v < range.min) ||
          (range.max !== undefined && v > range.max),
      );
      if (out !== undefined) failing.push({ sample: s.id, detail: `output ${fmt(out)}` });
    }
    const bounds =
      range.min !== undefined && range.max !== undefined
        ? `in [${range.min}, ${range.max}]`
        : range.min !== undefined
          ? `>= ${range.min}`
          : `<= ${range.max}`;
    return agreementResult(
      'outputs.range',
      `the raw output '${this.m.postprocessing.output}' stays within its declared range`,
      `${bounds} on every sample`,
      this.base.length,
      failing,
      1,
      `; measured ${fmt(lo)}..${fmt(hi)}`,
    );
  }

  // --- invariance ----------------------------------------------------------------------------

  private async invariance(inv: Invariance): Promise<CheckResult> {
    if (inv.kind === 'shuffle') return this.shuffle(inv);
    const samples = (this.holdout as Extract<LoadedHoldout, { format: 'images' }>).samples;
    const variants: Array<{
      name: string;
      apply: (img: Awaited<ReturnType<typeof rawImage>>) => ReturnType<typeof shift>;
    }> =
      inv.kind === 'brightness'
        ? [
            { name: `+${inv.delta}`, apply: (img) => brighten(img, inv.delta * 255) },
            { name: `-${inv.delta}`, apply: (img) => brighten(img, -inv.delta * 255) },
          ]
        : [
            { name: `right ${inv.pixels}px`, apply: (img) => shift(img, inv.pixels, 0) },
            { name: `left ${inv.pixels}px`, apply: (img) => shift(img, -inv.pixels, 0) },
            { name: `down ${inv.pixels}px`, apply: (img) => shift(img, 0, inv.pixels) },
            { name: `up ${inv.pixels}px`, apply: (img) => shift(img, 0, -inv.pixels) },
          ];
    const failing: FailingExample[] = [];
    for (const [i, s] of samples.entries()) {
      const changed = await this.imageVariants(s, this.base[i]!, variants);
      if (changed.length > 0) failing.push({ sample: s.id, detail: changed.join(', ') });
    }
    const what =
      inv.kind === 'brightness'
        ? `brightness ± ${inv.delta} of full scale`
        : `a shift of ${inv.pixels} px left, right, up and down`;
    return agreementResult(
      `invariance.${inv.kind}`,
      `the top class survives ${what}`,
      `top class unchanged under every variant on ${atLeast(inv.minAgreement)}`,
      samples.length,
      failing,
      inv.minAgreement,
    );
  }

  /** The variants whose top class differs from the original's, named with what it became. */
  private async imageVariants(
    s: ImageSample,
    base: Scored,
    variants: Array<{
      name: string;
      apply: (img: Awaited<ReturnType<typeof rawImage>>) => ReturnType<typeof shift>;
    }>,
  ): Promise<string[]> {
    const img = await rawImage(s.bytes);
    const changed: string[] = [];
    for (const v of variants) {
      const scored = await this.scoreImage(s.id, await encodePng(v.apply(img)));
      if (scored.label !== base.label) changed.push(`${v.name}: ${base.label} -> ${scored.label}`);
    }
    return changed;
  }

  private async shuffle(inv: Extract<Invariance, { kind: 'shuffle' }>): Promise<CheckResult> {
    const h = this.holdout as Extract<LoadedHoldout, { format: 'telemetry' }>;
    const col = h.columns.indexOf(inv.tag);
    const donors = derangement(h.samples.length, inv.seed);
    const failing: FailingExample[] = [];
    let worst = 0;
    for (const [i, s] of h.samples.entries()) {
      const donor = h.samples[donors[i]!]!;
      const rows = withColumn(s.rows, col, (r, v) => {
        // Aligned at the last step: the window the model scores is at the end of both.
        const k = donor.rows.length - s.rows.length + r;
        return k >= 0 ? donor.rows[k]![col]! : v;
      });
      const scored = await this.scoreRows(s.id, rows);
      const move = Math.abs(scored.score - this.base[i]!.score);
      worst = Math.max(worst, move);
      if (!(move <= inv.tolerance))
        failing.push({
          sample: s.id,
          detail: `score ${fmt(this.base[i]!.score)} -> ${fmt(scored.score)} with ${inv.tag} of ${donor.id}`,
        });
    }
    return agreementResult(
      `invariance.shuffle.${inv.tag}`,
      `the score does not depend on ${inv.tag} (its values swapped between holdout samples)`,
      `score moves at most ${fmt(inv.tolerance)} on ${atLeast(inv.minAgreement)}`,
      h.samples.length,
      failing,
      inv.minAgreement,
      `; largest move ${fmt(worst)}`,
    );
  }

  // --- monotonic -----------------------------------------------------------------------------

  private async monotonic(mono: Monotonic): Promise<CheckResult> {
    const h = this.holdout as Extract<LoadedHoldout, { format: 'telemetry' }>;
    const col = h.columns.indexOf(mono.tag);
    const sign = mono.direction === 'increasing' ? 1 : -1;
    const window = (this.m as TelemetryManifest).preprocessing.window;
    const failing: FailingExample[] = [];
    let worst = 0;
    for (const [i, s] of h.samples.entries()) {
      const path = [this.base[i]!.score];
      for (let k = 1; k <= mono.steps; k++) {
        const add = (mono.by * k) / mono.steps;
        // A trend rises over the window the model scores: the sample's last `window` rows.
        const first = s.rows.length - window;
        const lift =
          mono.profile === 'level'
            ? () => add
            : (r: number) => (window > 1 ? (add * Math.max(0, r - first)) / (window - 1) : add);
        path.push(
          (
            await this.scoreRows(
              s.id,
              withColumn(s.rows, col, (r, v) => v + lift(r)),
            )
          ).score,
        );
      }
      // The largest move the wrong way between two points of the path.
      let wrong = 0;
      let at = 0;
      for (let k = 1; k < path.length; k++) {
        const back = -sign * (path[k]! - path[k - 1]!);
        if (back > wrong) {
          wrong = back;
          at = k;
        }
      }
      worst = Math.max(worst, wrong);
      if (!(wrong <= mono.tolerance))
        failing.push({
          sample: s.id,
          detail: `score ${path.map((p) => fmt(p)).join(' -> ')}: ${mono.direction === 'increasing' ? 'falls' : 'rises'} by ${fmt(wrong)} at +${fmt((mono.by * at) / mono.steps)}`,
        });
    }
    const score = this.scoreName();
    return agreementResult(
      `monotonic.${mono.tag}`,
      `${score} ${mono.direction === 'increasing' ? 'never falls' : 'never rises'} as ${mono.tag} rises by ${mono.by}${mono.profile === 'trend' ? ' over the window (a rising trend)' : ''} in ${mono.steps} steps`,
      `no move the wrong way beyond ${fmt(mono.tolerance)} on ${atLeast(mono.minAgreement)}`,
      h.samples.length,
      failing,
      mono.minAgreement,
      `; largest move the wrong way ${fmt(worst)}`,
    );
  }

  private scoreName(): string {
    const p = this.m.postprocessing;
    return p.type === 'classification'
      ? 'the defect score'
      : p.type === 'rul'
        ? 'the predicted RUL'
        : p.type === 'failure_probability'
          ? 'the failure probability'
          : 'the anomaly score';
  }

  // --- metrics -------------------------------------------------------------------------------

  private metricChecks(): CheckResult[] {
    const c = this.m.acceptance!.checks;
    const wanted = [
      ...Object.entries(c.minMetrics ?? {}).map(([k, v]) => ({ key: k, bound: v as number, min: true })),
      ...Object.entries(c.maxMetrics ?? {}).map(([k, v]) => ({ key: k, bound: v as number, min: false })),
    ];
    if (wanted.length === 0) return [];
    const values = this.metricValues();
    return wanted.map(({ key, bound, min }) => {
      const { value, note, failing } = values[key]!;
      const passed = Number.isFinite(value) && (min ? value >= bound : value <= bound);
      return {
        id: `${min ? 'minMetrics' : 'maxMetrics'}.${key}`,
        title: `${key} on the holdout${note ? ` (${note})` : ''}`,
        expected: `${min ? '>=' : '<='} ${bound}`,
        measured: Number.isFinite(value) ? fmt(value) : `undefined (${note})`,
        passed,
        failing: passed ? [] : failing.slice(0, MAX_EXAMPLES),
        failingCount: passed ? 0 : failing.length,
      };
    });
  }

  /** Every metric the model's output has, with the samples that pulled it down. */
  private metricValues(): Record<string, { value: number; note: string; failing: FailingExample[] }> {
    const m = this.m;
    const p = m.postprocessing;
    const n = this.base.length;
    const out: Record<string, { value: number; note: string; failing: FailingExample[] }> = {};
    let truth: boolean[];
    let decided: boolean[];
    let positiveIs: string;
    let correct: boolean[];
    let wrongDetail: (i: number) => string;
    if (isImageManifest(m)) {
      const s = this.holdout.samples as ImageSample[];
      const pp = m.postprocessing;
      truth = s.map((x) => x.label !== pp.okLabel);
      decided = this.base.map((b) => b.score >= pp.threshold);
      positiveIs = `defect: any label but ${pp.okLabel}, alert at defect score >= ${pp.threshold}`;
      correct = this.base.map((b, i) => b.label === s[i]!.label);
      wrongDetail = (i) =>
        `labelled ${s[i]!.label}, predicted ${this.base[i]!.label} (defect score ${fmt(this.base[i]!.score)})`;
    } else {
      const s = this.holdout.samples as TelemetrySample[];
      const tp = p as TelemetryManifest['postprocessing'];
      const a = tp.alert;
      const fires = (score: number) => (a.direction === 'above' ? score >= a.raise : score <= a.raise);
      decided = this.base.map((b) => fires(b.score));
      if (tp.type === 'rul') {
        truth = s.map((x) => fires(x.label));
        positiveIs = `true RUL ${a.direction === 'below' ? '<=' : '>='} ${a.raise} (the alert level)`;
        const capped = s.map((x) => Math.min(x.label, tp.cap));
        const pred = this.base.map((b) => b.score);
        const errs = pred.map((v, i) => ({ i, e: Math.abs(v - capped[i]!) })).sort((x, y) => y.e - x.e);
        const largest = errs.map(({ i, e }) => ({
          sample: s[i]!.id,
          detail: `true RUL ${s[i]!.label}${s[i]!.label > tp.cap ? ` (capped ${tp.cap})` : ''}, predicted ${fmt(pred[i]!)}: off by ${fmt(e)}`,
        }));
        out['mae'] = {
          value: mae(pred, capped),
          note: `against the true RUL capped at ${tp.cap}`,
          failing: largest,
        };
        out['rmse'] = {
          value: rmse(pred, capped),
          note: `against the true RUL capped at ${tp.cap}`,
          failing: largest,
        };
      } else {
        truth = s.map((x) => x.label === 1);
        positiveIs =
          tp.type === 'anomaly'
            ? `label 1 (anomalous), alert at ${a.raise}`
            : `label 1 (fails within ${tp.horizon} ${tp.unit}), alert at ${a.raise}`;
      }
      correct = decided.map((d, i) => d === truth[i]);
      wrongDetail = (i) =>
        `label ${s[i]!.label}, score ${fmt(this.base[i]!.score)}: alert ${decided[i] ? 'raised' : 'not raised'}`;
    }
    const counts = binaryCounts(truth, decided);
    const ids = this.base.map((b) => b.id);
    const missed = ids.flatMap((id, i) =>
      truth[i] && !decided[i] ? [{ sample: id, detail: `missed: ${wrongDetail(i)}` }] : [],
    );
    const falseAlarms = ids.flatMap((id, i) =>
      !truth[i] && decided[i] ? [{ sample: id, detail: `false alarm: ${wrongDetail(i)}` }] : [],
    );
    const wrong = ids.flatMap((id, i) => (correct[i] ? [] : [{ sample: id, detail: wrongDetail(i) }]));
    const undefinedIf = (v: number, why: string) => (Number.isFinite(v) ? '' : why);
    const score = this.base.map((b) => b.score);
    const aucScore = isImageManifest(m)
      ? score
      : (p as TelemetryManifest['postprocessing']).alert.direction === 'above'
        ? score
        : score.map((x) => -x);
    out['accuracy'] = {
      value: correct.filter(Boolean).length / n,
      note: isImageManifest(m) ? 'top class = label' : 'alert decision = label',
      failing: wrong,
    };
    const prec = precision(counts);
    const rec = recall(counts);
    out['precision'] = {
      value: prec,
      note: positiveIs + undefinedIf(prec, '; no alert was raised'),
      failing: falseAlarms,
    };
    out['recall'] = {
      value: rec,
      note: positiveIs + undefinedIf(rec, '; no positive sample'),
      failing: missed,
    };
    out['f1'] = { value: f1(counts), note: positiveIs, failing: [...missed, ...falseAlarms] };
    const a = auc(truth, aucScore);
    out['auc'] = {
      value: a,
      note: `of the score, positives ${positiveIs}` + undefinedIf(a, '; needs positive and negative samples'),
      failing: [],
    };
    return out;
  }
}

/** A seeded permutation without fixed points: sample i takes the values of sample d[i] != i. */
export function derangement(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let state = seed >>> 0 || 1;
  const next = () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  // One cycle through the shuffled order: nobody keeps their own values.
  const d = new Array<number>(n);
  for (let k = 0; k < n; k++) d[order[k]!] = order[(k + 1) % n]!;
  return n === 1 ? [0] : d;
}
