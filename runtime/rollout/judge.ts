import type { RolloutPolicy } from '../config/registry.js';
import type { RolloutReason } from './types.js';
import type { LiveObservation, ShadowObservation } from './shadow.js';

/**
 * The rules of a rollout as pure bookkeeping: what a shadow and a watch have seen, and the
 * decision they call for. No timers and no engines here: the controller feeds them and acts.
 */

/** Fewest shadow samples a decision at shadowMaxSeconds may rest on (the policy's documented floor). */
export const MIN_SAMPLES_AT_DEADLINE = 10;

export type Verdict =
  | { decided: false }
  | { decided: true; promote: true; message: string }
  | { decided: true; promote: false; reason: RolloutReason | undefined; message: string };

const pending: Verdict = { decided: false };

// Type aliases, not interfaces: they serve as event evidence (Record<string, number | string>) as they are.
export type ShadowFigures = {
  samples: number;
  target: number;
  skipped: number;
  errors: number;
  nonFinite: number;
  /** Share of samples on which both versions agreed (0..1); -1 before any comparable sample. */
  agreement: number;
  /** p95 of the candidate's inference time, ms; -1 before any. */
  p95Ms: number;
  maxLatencyMs: number;
  /** Mean score of the candidate minus the current one's, in score units (see scoreScale). */
  scoreShift: number;
};

/** A shadow in progress: every input the candidate scored (or skipped) and what the rules make of it. */
export class ShadowTally {
  private samples = 0;
  private skipped = 0;
  private errors = 0;
  private nonFinite = 0;
  private compared = 0;
  private agreed = 0;
  private currentScores = 0;
  private candidateScores = 0;
  private readonly latencies: number[] = [];
  private lastError: string | undefined;

  constructor(
    private readonly policy: RolloutPolicy,
    private readonly maxLatencyMs: number,
  ) {}

  get count(): number {
    return this.samples;
  }

  skip(): void {
    this.skipped++;
  }

  /** Counts one scored input; returns an immediate rejection when one is due. */
  add(o: ShadowObservation): Verdict {
    this.samples++;
    const c = o.candidate;
    if (c.nonFinite) {
      this.nonFinite++;
      return this.reject(
        'nan_output',
        `version ${c.version} returned NaN or infinite values on an input of pipeline ${o.pipeline}`,
      );
    }
    if (c.error !== undefined || !c.verdict) {
      this.errors++;
      this.lastError = c.error;
      // Once more errors than the whole shadow may have, the rate can only end up too high.
      if (this.errors > this.policy.maxErrorRate * this.policy.shadowSamples)
        return this.reject(
          'errors',
          `version ${c.version} failed ${this.errors} of ${this.samples} inferences in shadow (at most ${pct(this.policy.maxErrorRate)} allowed); last error: ${c.error ?? 'unknown'}`,
        );
      return pending;
    }
    this.latencies.push(c.inferenceMs);
    this.compared++;
    const agree =
      o.kind === 'image' ? c.verdict.label === o.current.label : c.verdict.alert === o.current.alert;
    if (agree) this.agreed++;
    const unit = o.scoreScale > 0 ? o.scoreScale : 1;
    this.currentScores += o.current.score / unit;
    this.candidateScores += c.verdict.score / unit;
    return this.samples >= this.policy.shadowSamples ? this.decide(c.version) : pending;
  }

  /** The decision at the end of the shadow: all samples in, or shadowMaxSeconds passed. */
  decide(version: string, deadline = false): Verdict {
    const p = this.policy;
    if (deadline && this.samples < MIN_SAMPLES_AT_DEADLINE) {
      // A candidate that scored few inputs because it was busy on each one is too slow.
      if (this.skipped > this.samples)
        return this.reject(
          'too_slow',
          `version ${version} scored only ${this.samples} inputs in ${p.shadowMaxSeconds} s and skipped ${this.skipped} because it was still busy: it cannot keep up`,
        );
      return this.reject(
        'insufficient_samples',
        `version ${version} saw only ${this.samples} inputs in ${p.shadowMaxSeconds} s, fewer than the ${MIN_SAMPLES_AT_DEADLINE} a decision needs; it is tried again when the registry next offers it`,
      );
    }
    const f = this.figures();
    if (this.samples > 0 && this.errors / this.samples > p.maxErrorRate)
      return this.reject(
        'errors',
        `version ${version} failed ${this.errors} of ${this.samples} inferences in shadow (at most ${pct(p.maxErrorRate)} allowed); last error: ${this.lastError ?? 'unknown'}`,
      );
    if (f.p95Ms > this.maxLatencyMs)
      return this.reject(
        'too_slow',
        `version ${version} took ${f.p95Ms} ms per inference at the 95th percentile, over the ${this.maxLatencyMs} ms allowed`,
      );
    if (this.compared === 0)
      return this.reject('errors', `version ${version} produced no usable output in shadow`);
    if (f.agreement < p.minAgreement)
      return this.reject(
        'disagreement',
        `version ${version} agreed with the current version on ${pct(f.agreement)} of ${this.compared} inputs, under the ${pct(p.minAgreement)} required`,
      );
    if (Math.abs(f.scoreShift) > p.maxScoreShift)
      return this.reject(
        'disagreement',
        `version ${version} moved the mean score by ${f.scoreShift} (more than ${p.maxScoreShift} allowed)`,
      );
    return {
      decided: true,
      promote: true,
      message: `version ${version} passed shadow: ${this.samples} inputs, agreement ${pct(f.agreement)}, p95 ${f.p95Ms} ms, ${this.errors} errors`,
    };
  }

  figures(): ShadowFigures {
    return {
      samples: this.samples,
      target: this.policy.shadowSamples,
      skipped: this.skipped,
      errors: this.errors,
      nonFinite: this.nonFinite,
      agreement: this.compared > 0 ? round4(this.agreed / this.compared) : -1,
      p95Ms: this.latencies.length > 0 ? round2(p95(this.latencies)) : -1,
      maxLatencyMs: this.maxLatencyMs,
      scoreShift: this.compared > 0 ? round4((this.candidateScores - this.currentScores) / this.compared) : 0,
    };
  }

  private reject(reason: RolloutReason | undefined, message: string): Verdict {
    return { decided: true, promote: false, reason, message };
  }
}

export type WatchFigures = {
  samples: number;
  target: number;
  errors: number;
  nonFinite: number;
  budgetViolations: number;
};

/** Live inputs after a promotion, for the version that was promoted. */
export class WatchTally {
  private samples = 0;
  private errors = 0;
  private nonFinite = 0;
  private overBudget = 0;

  constructor(
    private readonly policy: RolloutPolicy,
    readonly version: string,
  ) {}

  /** Counts one live input; a regression verdict rolls back, a promote verdict means settled. */
  add(o: LiveObservation): Verdict {
    // Inputs still served by the version before the swap are not this version's doing.
    if (o.version !== undefined && o.version !== this.version) return pending;
    const p = this.policy;
    this.samples++;
    if (o.outcome === 'nan') this.nonFinite++;
    if (o.outcome === 'error' || o.outcome === 'unavailable' || o.outcome === 'nan') this.errors++;
    if (o.overBudget) this.overBudget++;
    if (this.nonFinite > 0)
      return this.regression(`version ${this.version} returned NaN or infinite values on live input`);
    // Past what the whole watch may have, the rate can only end up too high: roll back now.
    if (this.errors > p.maxErrorRate * p.watchSamples)
      return this.regression(
        `version ${this.version} failed ${this.errors} of ${this.samples} live inputs (at most ${pct(p.maxErrorRate)} of ${p.watchSamples} allowed)`,
      );
    if (this.overBudget > p.maxBudgetViolationRate * p.watchSamples)
      return this.regression(
        `version ${this.version} took ${this.overBudget} of ${this.samples} live inputs over the pipeline budget (at most ${pct(p.maxBudgetViolationRate)} of ${p.watchSamples} allowed)`,
      );
    if (this.samples >= p.watchSamples)
      return {
        decided: true,
        promote: true,
        message: `version ${this.version} settled after ${this.samples} live inputs: ${this.errors} errors, ${this.overBudget} over budget`,
      };
    return pending;
  }

  figures(): WatchFigures {
    return {
      samples: this.samples,
      target: this.policy.watchSamples,
      errors: this.errors,
      nonFinite: this.nonFinite,
      budgetViolations: this.overBudget,
    };
  }

  private regression(message: string): Verdict {
    return { decided: true, promote: false, reason: 'regression', message };
  }
}

/** Nearest-rank 95th percentile. */
export function p95(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(0.95 * sorted.length) - 1))]!;
}

const pct = (x: number) => `${Math.round(x * 1000) / 10} %`;
const round2 = (x: number) => Math.round(x * 100) / 100;
const round4 = (x: number) => Math.round(x * 10000) / 10000;
