import type { DriftConfig, DriftWindow } from '../config/drift.js';
import {
  isImageManifest,
  isTelemetryManifest,
  type Manifest,
  type ReferenceDistribution,
} from '../model/manifest.js';
import type { ScoredSample } from '../pipeline/observer.js';
import { extractorFor, type FeatureExtractor } from './features.js';
import { ksCritical, ksStatistic } from './ks.js';
import { binCounts, psi } from './psi.js';
import { classProportions, distributionOf, inputReference, isMonitorable } from './reference.js';
import type { DriftMeasure, ReferenceOrigin } from './types.js';
import { SampleWindow } from './window.js';

/** A measure with the level it must fall under for a raised alert to clear. */
export interface Measure extends DriftMeasure {
  kind: 'input' | 'output';
  clear: number;
}

export interface Evaluation {
  input: Measure[];
  output: Measure[];
  /** Samples in the window. */
  samples: number;
  from: number;
  to: number;
}

interface ClassReference {
  labels: readonly string[];
  proportions: number[];
}

/**
 * The drift state of one pipeline for one model version: the live window, the references it is
 * compared with (from the manifest, a Gaussian stand-in, or learned from the first live samples),
 * and the computation of every measure. record() is the only part on the pipeline's path.
 */
export class DriftTracker {
  readonly model: { name: string; version: string };
  readonly manifest: Manifest;
  readonly origins: { input: ReferenceOrigin; output: ReferenceOrigin };
  /** Lines for the log, said once when the tracker is made (fallbacks, what is not monitored). */
  readonly notes: string[] = [];
  private readonly extractor: FeatureExtractor | undefined;
  private readonly window: SampleWindow;
  private inputRefs: Array<ReferenceDistribution | undefined>;
  private scoreRef: ReferenceDistribution | undefined;
  private classRef: ClassReference | undefined;
  private readonly labels: readonly string[];
  /** Live learning of the references that the manifest does not give: the first N samples. */
  private learning:
    | {
        features: Float64Array;
        scores: Float64Array;
        classes: Int32Array;
        n: number;
        input: boolean;
        output: boolean;
      }
    | undefined;
  /** window.recorded when the live references were complete: the live measures use later samples only. */
  private learnedAt = 0;

  constructor(
    manifest: Manifest,
    readonly kind: 'frame' | 'window',
    private readonly cfg: DriftConfig,
    private readonly win: DriftWindow,
  ) {
    this.manifest = manifest;
    this.model = { name: manifest.name, version: manifest.version };
    const m = manifest;
    this.extractor = extractorFor(m);
    const names = this.extractor?.names ?? [];
    this.window = new SampleWindow(win.windowSamples, names.length);
    this.labels = isImageManifest(m) ? m.postprocessing.labels : [];

    // Inputs.
    let inputOrigin: ReferenceOrigin = 'none';
    this.inputRefs = names.map(() => undefined);
    let learnInput = false;
    if (this.extractor) {
      const plan = inputReference(
        m,
        this.extractor.featureSet,
        names,
        isTelemetryManifest(m) ? (i) => (m.preprocessing.features === 'window' ? i : i * 6 + 4) : undefined,
      );
      if (plan.origin === 'none' && isImageManifest(m)) {
        // Pixel mean and std say nothing about how per-frame brightness varies; learn it.
        learnInput = true;
        inputOrigin = 'live';
        this.notes.push(
          `input drift is measured against the first ${win.liveReferenceSamples} frames seen, because ${plan.reason}`,
        );
      } else {
        inputOrigin = plan.origin;
        this.inputRefs = plan.features;
        if (plan.origin === 'gaussian')
          this.notes.push(
            `input drift is measured against a normal distribution of referenceStats.inputMean/inputStd, because ${plan.reason}`,
          );
        if (plan.origin === 'none')
          this.notes.push(`input drift is not monitored, because ${plan.reason} and no inputMean/inputStd`);
      }
      const constant = names.filter((_, i) => this.inputRefs[i] && !isMonitorable(this.inputRefs[i]!));
      if (constant.length > 0) {
        this.notes.push(
          `inputs constant in the reference data are not monitored (the model cannot use them): ${constant.join(', ')}`,
        );
        this.inputRefs = this.inputRefs.map((r) => (r && isMonitorable(r) ? r : undefined));
      }
    } else {
      this.notes.push('input drift is not monitored: no features are defined for this kind of model');
    }

    // Outputs.
    let outputOrigin: ReferenceOrigin = 'none';
    let learnOutput = false;
    const out = m.referenceStats?.output;
    if (cfg.outputReference === 'manifest' && out?.score) {
      outputOrigin = 'manifest';
      this.scoreRef = isMonitorable(out.score) ? out.score : undefined;
      if (out.classes && this.labels.length > 0) {
        this.classRef = {
          labels: this.labels,
          proportions: this.labels.map((l) => {
            const i = out.classes!.labels.indexOf(l);
            return i < 0 ? 0 : out.classes!.proportions[i]!;
          }),
        };
      }
      if (this.kind === 'frame' && !out.score.sample) {
        this.notes.push('output score is compared by PSI: the manifest has no reference sample for KS');
      }
    } else {
      learnOutput = true;
      outputOrigin = 'live';
      this.notes.push(
        cfg.outputReference === 'live'
          ? `output drift is measured against the first ${win.liveReferenceSamples} outputs (outputReference: live)`
          : `output drift is measured against the first ${win.liveReferenceSamples} outputs, because the manifest has no output reference`,
      );
    }
    this.origins = { input: inputOrigin, output: outputOrigin };
    if (learnInput || learnOutput) {
      const n = win.liveReferenceSamples;
      this.learning = {
        features: new Float64Array(learnInput ? n * names.length : 0),
        scores: new Float64Array(n),
        classes: new Int32Array(n),
        n: 0,
        input: learnInput,
        output: learnOutput,
      };
    }
  }

  /** Records one scored sample: its features, score and class. O(input) for frames, O(tags) for windows. */
  record(sample: ScoredSample): void {
    const row = this.window.featureRow();
    this.extractor?.extract(sample.input, row);
    const cls = this.labels.length > 0 ? this.labels.indexOf(sample.result.label) : -1;
    const score = sample.result.score;
    this.window.commit(score, cls, sample.result.producedAt);
    const l = this.learning;
    if (l && l.n < l.scores.length) {
      if (l.input) l.features.set(row, l.n * row.length);
      l.scores[l.n] = score;
      l.classes[l.n] = cls;
      if (++l.n === l.scores.length) this.learnedAt = this.window.recorded;
    }
  }

  /** Builds the references learned live once enough samples were seen (off the pipeline's path). */
  private finishLearning(): void {
    const l = this.learning;
    if (!l || l.n < l.scores.length) return;
    this.learning = undefined;
    if (l.input && this.extractor) {
      const F = this.extractor.names.length;
      this.inputRefs = this.extractor.names.map((name, f) => {
        const d = distributionOf(
          name,
          Float64Array.from({ length: l.n }, (_, i) => l.features[i * F + f]!),
        );
        return isMonitorable(d) ? d : undefined;
      });
    }
    if (l.output) {
      const d = distributionOf('score', l.scores);
      this.scoreRef = isMonitorable(d) ? d : undefined;
      if (this.labels.length > 0) {
        const valid = l.classes.filter((c) => c >= 0);
        this.classRef = { labels: this.labels, proportions: classProportions(this.labels, valid) };
      }
    }
  }

  /** Samples recorded for this model version. */
  get recorded(): number {
    return this.window.recorded;
  }

  get windowSize(): number {
    return this.window.size;
  }

  /** Every measure over the current window, or undefined while fewer than minSamples were seen. */
  evaluate(): Evaluation | undefined {
    this.finishLearning();
    const size = this.window.size;
    if (size < this.win.minSamples) return undefined;
    const afterLearning = this.learning ? 0 : Math.min(size, this.window.recorded - this.learnedAt);
    const enough = (n: number) => n >= this.win.minSamples;
    const input: Measure[] = [];
    const output: Measure[] = [];
    const inputN = this.origins.input === 'live' ? afterLearning : size;
    if (enough(inputN)) {
      this.inputRefs.forEach((ref, f) => {
        if (ref)
          input.push(
            this.psiMeasure(
              'input',
              ref.name,
              ref.proportions,
              binCounts(ref.edges, this.window.feature(f, inputN)),
              inputN,
            ),
          );
      });
    }
    const outputN = this.origins.output === 'live' ? afterLearning : size;
    if (enough(outputN)) {
      const ref = this.scoreRef;
      if (ref) {
        const scores = this.window.score(outputN);
        if (this.kind === 'frame' && ref.sample && ref.sample.length > 0) {
          scores.sort();
          // The reference sample is evenly spaced quantiles of `count` values: compared as that many.
          const m = ref.count;
          const value = ksStatistic(scores, ref.sample);
          const threshold = ksCritical(this.cfg.ksAlpha, outputN, m);
          output.push({
            kind: 'output',
            name: 'score',
            test: 'ks',
            value: round4(value),
            threshold: round4(threshold),
            drifted: value > threshold,
            clear: ksCritical(this.cfg.ksClearAlpha, outputN, m),
            samples: outputN,
          });
        } else {
          output.push(
            this.psiMeasure('output', 'score', ref.proportions, binCounts(ref.edges, scores), outputN),
          );
        }
      }
      if (this.classRef) {
        const counts = new Float64Array(this.labels.length);
        for (const c of this.window.classIndex(outputN)) if (c >= 0) counts[c]!++;
        output.push(this.psiMeasure('output', 'class', this.classRef.proportions, counts, outputN));
      }
    }
    const span = this.window.span(size);
    return { input, output, samples: size, from: span.from, to: span.to };
  }

  private psiMeasure(
    kind: 'input' | 'output',
    name: string,
    reference: ArrayLike<number>,
    counts: ArrayLike<number>,
    samples: number,
  ): Measure {
    const value = psi(reference, counts);
    return {
      kind,
      name,
      test: 'psi',
      value: round4(value),
      threshold: this.cfg.psiThreshold,
      drifted: value > this.cfg.psiThreshold,
      clear: this.cfg.psiClear,
      samples,
    };
  }
}

const round4 = (x: number) => Math.round(x * 10000) / 10000;
