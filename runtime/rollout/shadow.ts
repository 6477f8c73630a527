import { performance } from 'node:perf_hooks';
import type { Engine, TensorMap } from '../engines/engine.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Manifest } from '../model/manifest.js';
import { adaptInput, scoreScale } from './compat.js';

/**
 * What the pipelines tell the rollout about: a new version scored in shadow beside the current
 * one, and, after a promotion, how live inputs fare. These are the only places where the
 * pipelines and the rollout meet; a pipeline never acts on a shadow result.
 */

/** How a model's output reads for comparing two versions. */
export interface Verdict {
  label: string;
  score: number;
  /** Whether this output alone would alert: frames score >= threshold; telemetry past alert.raise. */
  alert: boolean;
}

/** One input scored by both versions. */
export interface ShadowObservation {
  pipeline: string;
  kind: 'image' | 'telemetry';
  current: Verdict & { version: string; outputs: TensorMap; inferenceMs: number };
  candidate: {
    version: string;
    /** Absent when the inference failed. */
    outputs?: TensorMap;
    /** Absent when the inference failed or an output is not finite. */
    verdict?: Verdict;
    inferenceMs: number;
    /** Why the inference or reading its output failed. */
    error?: string;
    /** Some output value is NaN or infinite. */
    nonFinite: boolean;
  };
  /** One unit of score (scoreScale of the current manifest): score shifts are measured in it. */
  scoreScale: number;
}

/** Receives shadow results; never acts on the live path. Called on the event loop, must not throw. */
export interface ShadowSink {
  observe(o: ShadowObservation): void;
  /** An input the candidate did not score because it was still busy with an earlier one. */
  skipped(pipeline: string): void;
}

/** One live input after a promotion. */
export interface LiveObservation {
  pipeline: string;
  /** Version of the engine that served it; undefined when no engine was available. */
  version: string | undefined;
  /** ok: stored; error: the inference or its output failed; nan: an output was NaN or infinite;
   *  unavailable: no engine was serving; dropped: not processed because it could not make its deadline. */
  outcome: 'ok' | 'error' | 'nan' | 'unavailable' | 'dropped';
  /** Arrival (or window ready) to stored beyond the pipeline budget, or dropped for its deadline. */
  overBudget: boolean;
}

export interface LiveSink {
  observe(o: LiveObservation): void;
}

/**
 * Why a pipeline could not use a version (its own settings do not work with it), in words for
 * the rollout event; undefined when it can.
 */
export type CandidateCheck = (manifest: Manifest) => string | undefined;

/** What a pipeline asks at each input: is a version in shadow, is a promotion being watched. */
export interface RolloutTap {
  shadow(): ShadowRunner | undefined;
  live(): LiveSink | undefined;
  /**
   * Registers what this pipeline needs of any version that is to replace the current one, so
   * that a version it could not use is refused (incompatible) before it is tried or swapped in.
   * Returns the function that removes the check (the pipeline's stop()).
   */
  addCandidateCheck?(check: CandidateCheck): () => void;
}

/** One input for the candidate, as the pipeline hands it over after storing its own result. */
export interface ShadowJob {
  pipeline: string;
  kind: 'image' | 'telemetry';
  /** The manifest the input was preprocessed for (the current version's). */
  manifest: Manifest;
  /** The preprocessed input the current engine was given. */
  data: Float32Array;
  current: Verdict & { outputs: TensorMap; inferenceMs: number };
  /** Reads the candidate's outputs by the candidate's manifest, as the pipeline would. */
  interpret(outputs: TensorMap, manifest: Manifest): Verdict;
}

/**
 * Runs the candidate on inputs the current version has already finished with. At most
 * `maxInFlight` shadow inferences run at once (shared by every pipeline of the model): an input
 * that arrives while the candidate is still busy is skipped and counted, so that a slow candidate
 * falls behind by skipping, never by queueing, and the live path never waits for it.
 */
export class ShadowRunner {
  private busy = 0;
  private readonly settledWaiters: Array<() => void> = [];

  constructor(
    readonly engine: Engine,
    private readonly sink: ShadowSink,
    private readonly log: Logger,
    private readonly maxInFlight = 1,
  ) {}

  get version(): string {
    return this.engine.manifest.version;
  }

  /** Takes an input for the candidate; never throws and never waits. Returns whether it will be scored. */
  offer(job: ShadowJob): boolean {
    if (this.busy >= this.maxInFlight) {
      this.tell(() => this.sink.skipped(job.pipeline));
      return false;
    }
    this.busy++;
    void this.score(job).finally(() => {
      this.busy--;
      if (this.busy === 0) for (const w of this.settledWaiters.splice(0)) w();
    });
    return true;
  }

  /** Resolves once no shadow inference is running. */
  async settled(): Promise<void> {
    if (this.busy > 0) await new Promise<void>((r) => this.settledWaiters.push(r));
  }

  private async score(job: ShadowJob): Promise<void> {
    const cm = this.engine.manifest;
    const input = cm.inputs[0]!;
    let outputs: TensorMap | undefined;
    let error: string | undefined;
    const started = performance.now();
    try {
      const data = adaptInput(job.manifest, cm, job.data);
      outputs = await this.engine.run({ [input.name]: { dtype: 'float32', shape: input.shape, data } });
    } catch (err) {
      error = errorMessage(err);
    }
    const inferenceMs = performance.now() - started;
    const nonFinite = outputs !== undefined && hasNonFinite(outputs);
    let verdict: Verdict | undefined;
    if (outputs && !nonFinite) {
      try {
        verdict = job.interpret(outputs, cm);
      } catch (err) {
        error = errorMessage(err);
      }
    }
    const observation: ShadowObservation = {
      pipeline: job.pipeline,
      kind: job.kind,
      current: { ...job.current, version: job.manifest.version },
      candidate: {
        version: cm.version,
        ...(outputs ? { outputs } : {}),
        ...(verdict ? { verdict } : {}),
        inferenceMs,
        ...(error !== undefined ? { error } : {}),
        nonFinite,
      },
      scoreScale: scoreScale(job.manifest),
    };
    this.tell(() => this.sink.observe(observation));
  }

  private tell(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // The sink is the rollout's; a bug there must not reach the pipeline.
      this.log.error({ err: errorMessage(err) }, 'shadow result not taken');
    }
  }
}

/** Whether any output value is NaN or infinite. */
export function hasNonFinite(outputs: TensorMap): boolean {
  for (const t of Object.values(outputs)) {
    const d = t.data;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) return true;
  }
  return false;
}

/** Tells the live sink, if any, without letting a failure there reach the pipeline. */
export function observeLive(tap: RolloutTap | undefined, o: LiveObservation, log: Logger): void {
  if (!tap) return;
  try {
    tap.live()?.observe(o);
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'live observation not taken');
  }
}
