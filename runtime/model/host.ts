import type { Engine, EngineOptions, TensorMap } from '../engines/engine.js';
import { loadEngine } from '../engines/load.js';
import type { WorkerEngine } from '../engines/worker-engine.js';
import { VigilError, errorMessage, type VigilErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelHealth } from '../ops/http.js';
import type { Manifest } from './manifest.js';
import type { Metrics } from '../ops/metrics.js';
import { incompatibility } from '../rollout/compat.js';
import {
  ShadowRunner,
  type CandidateCheck,
  type LiveSink,
  type RolloutTap,
  type ShadowSink,
} from '../rollout/shadow.js';

const RELOAD_FIRST_DELAY_MS = 1_000;
const RELOAD_MAX_DELAY_MS = 60_000;

/** Why a version could not become the candidate: the words of RolloutReason. */
export type CandidateFailure = 'load_failed' | 'incompatible';

/** A version that could not be loaded beside the current one, or that the pipelines cannot use. */
export class CandidateError extends VigilError {
  constructor(
    readonly reason: CandidateFailure,
    code: VigilErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, unknown> },
  ) {
    super(code, message, options);
    this.name = 'CandidateError';
  }
}

/**
 * The host is closing: a load or swap asked for now is not done. Not the version's fault, so a
 * rollout treats it as a cancellation, never as a rejection.
 */
export class HostClosedError extends VigilError {
  constructor(name: string) {
    super('VIGIL_ERR_MODEL_LOAD', `model ${name} is shutting down`);
    this.name = 'HostClosedError';
  }
}

/**
 * An engine as the host lends it to pipelines: it counts the inferences running on it, so that
 * an engine replaced by a swap is closed only once they have finished (closing a worker rejects
 * what it is still running).
 */
export class HostedEngine implements Engine {
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private retiring: Promise<void> | undefined;

  constructor(
    readonly inner: WorkerEngine,
    /** The package folder it was loaded from. */
    readonly packageDir: string,
  ) {}

  get manifest() {
    return this.inner.manifest;
  }
  get backend() {
    return this.inner.backend;
  }
  get provider() {
    return this.inner.provider;
  }
  get requested() {
    return this.inner.requested;
  }
  get fallbacks() {
    return this.inner.fallbacks;
  }
  /** Inferences running on it now. */
  get running(): number {
    return this.inFlight;
  }
  /** Set when its worker crashed or hung: it must be replaced. */
  get failure(): VigilError | undefined {
    return this.inner.failure;
  }

  async run(inputs: TensorMap): Promise<TensorMap> {
    this.inFlight++;
    try {
      return await this.inner.run(inputs);
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.drained?.();
    }
  }

  /** Closes the engine once every inference already started on it has finished. */
  retire(): Promise<void> {
    this.retiring ??= (async () => {
      if (this.inFlight > 0) await new Promise<void>((r) => (this.drained = r));
      await this.inner.close();
    })();
    return this.retiring;
  }

  close(): Promise<void> {
    return this.retire();
  }
}

/**
 * One configured model and the engine serving it: loads it, reports why it is not serving when
 * it is not, and replaces an engine whose worker failed. Pipelines ask it for the engine to use
 * at each input, so a reload or a new version never needs a pipeline restart.
 *
 * For a rollout it also holds a candidate: another version loaded and warmed up beside the
 * current one, scored in shadow on the same inputs (shadow()), then either swapped in
 * atomically (promoteCandidate) or dropped. rollbackTo() loads an earlier version and swaps it
 * in the same way. A swap is one assignment: the next current() returns the new engine, and the
 * old one is closed once the inferences already running on it are done.
 */
export class ModelHost implements RolloutTap {
  private active: HostedEngine | undefined;
  private activeDir: string;
  private cand: { engine: HostedEngine; label: string } | undefined;
  private shadowRunner: ShadowRunner | undefined;
  private liveSink: LiveSink | undefined;
  /** Why the model is not serving, when it is not. */
  private error: { code: string; message: string } | undefined;
  private restarts = 0;
  /** A reload after an engine failure, while under way; close() waits for it. */
  private reloading: Promise<void> | undefined;
  /** Bumped by every swap, so that a reload started before it does not undo it. */
  private generation = 0;
  /** Engines being closed after a swap; close() waits for them. */
  private readonly retiring = new Set<Promise<void>>();
  /** The manifest of the version that served last (kept while a failed engine reloads). */
  private lastServed: Manifest | undefined;
  /** whenServing() callers, told when an engine serves again (or the host closes). */
  private readonly servingWaiters = new Set<() => void>();
  /** What the pipelines need of any version that is to replace the current one. */
  private readonly checks = new Set<CandidateCheck>();
  private closed = false;

  constructor(
    readonly name: string,
    packageDir: string,
    private readonly options: EngineOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.activeDir = packageDir;
  }

  /** Folder of the version serving now (or to be served, while it is not loaded). */
  get packageDir(): string {
    return this.activeDir;
  }

  /** The worker engine of the version serving now (supervision and tests reach it). */
  private get engine(): WorkerEngine | undefined {
    return this.active?.inner;
  }

  /** The engine to run now, or undefined while the model is unavailable (even before supervision notices). */
  current(): Engine | undefined {
    return this.active?.failure ? undefined : this.active;
  }

  /**
   * Whether any version has served since the host started: when not, there is nothing to
   * compare a new version with; when so, an undefined current() means a failed engine that is
   * being (or is about to be) reloaded.
   */
  get everServed(): boolean {
    return this.lastServed !== undefined;
  }

  /**
   * Resolves true once an engine serves, false after `timeoutMs`, or at once when none ever
   * served or the host is closing (nothing would bring one back).
   */
  async whenServing(timeoutMs: number): Promise<boolean> {
    if (this.current()) return true;
    if (this.closed || !this.lastServed) return false;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.servingWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.servingWaiters.add(done);
    });
    return this.current() !== undefined;
  }

  /**
   * RolloutTap: a check every version must pass before it is tried or swapped in (a pipeline's
   * own settings that a version may not work with). Returns the function that removes it.
   */
  addCandidateCheck(check: CandidateCheck): () => void {
    this.checks.add(check);
    return () => void this.checks.delete(check);
  }

  /**
   * Loads the package. A model that fails to load or verify does not take the gateway down: its
   * pipelines drop frames as model_unavailable, /readyz says why, and everything else keeps
   * serving. Resolves true when the model serves.
   */
  async load(): Promise<boolean> {
    const generation = this.generation;
    const dir = this.activeDir;
    try {
      const engine = await loadEngine(dir, this.options, this.log);
      if (this.closed || generation !== this.generation) {
        // close() or a swap came while this load was under way: nobody else would close this engine.
        await engine.close().catch(() => undefined);
        return !this.closed;
      }
      this.active = new HostedEngine(engine, dir);
      this.error = undefined;
      this.announce(engine);
      return true;
    } catch (err) {
      if (generation !== this.generation) return true;
      const code = err instanceof VigilError ? err.code : 'VIGIL_ERR_MODEL_LOAD';
      this.active = undefined;
      this.error = { code, message: errorMessage(err) };
      this.metrics.modelReady.set({ model: this.name }, 0);
      this.metrics.modelLoadErrors.inc({ model: this.name, code });
      this.log.error({ package: dir, code }, `model ${this.name} is not serving: ${errorMessage(err)}`);
      return false;
    }
  }

  /**
   * Called periodically: an engine whose worker failed or hung is replaced by a fresh one, with
   * back-off between attempts, so that the gateway heals without an outside supervisor.
   */
  supervise(): void {
    const failure = this.active?.failure;
    if (!failure || this.reloading || this.closed) return;
    const dead = this.active!;
    this.active = undefined;
    this.error = { code: failure.code, message: failure.message };
    this.metrics.modelReady.set({ model: this.name }, 0);
    this.metrics.modelRestarts.inc({ model: this.name });
    this.log.error(
      { code: failure.code },
      `model ${this.name} engine failed (${failure.message}); reloading it`,
    );
    const generation = this.generation;
    this.reloading = (async () => {
      await dead.inner.close().catch(() => undefined);
      let delay = RELOAD_FIRST_DELAY_MS;
      while (!this.closed && generation === this.generation && !(await this.load())) {
        await new Promise((r) => setTimeout(r, delay).unref());
        delay = Math.min(delay * 2, RELOAD_MAX_DELAY_MS);
      }
      this.restarts++;
      this.reloading = undefined;
    })();
  }

  /**
   * Loads and warms up another version beside the current one, off the hot path: the current
   * engine keeps serving meanwhile. A candidate already there is dropped first. Throws a
   * CandidateError: 'load_failed' when the package does not verify or load, 'incompatible' when
   * the pipelines could not use it in place of the current version (another kind of model, other
   * inputs or labels).
   */
  async loadCandidate(packageDir: string, label: string): Promise<Engine> {
    if (this.closed) throw new HostClosedError(this.name);
    await this.dropCandidate();
    const engine = await this.loadChecked(packageDir, `version ${label} in ${packageDir}`);
    const hosted = new HostedEngine(engine, packageDir);
    this.cand = { engine: hosted, label };
    return hosted;
  }

  /** The version loaded beside the current one, if any. */
  candidate(): { engine: Engine; packageDir: string; label: string } | undefined {
    const c = this.cand;
    return c ? { engine: c.engine, packageDir: c.engine.packageDir, label: c.label } : undefined;
  }

  /** Starts scoring the candidate on live inputs; results go to `sink`, never to the live path. */
  startShadow(sink: ShadowSink, maxInFlight = 1): void {
    if (!this.cand)
      throw new VigilError('VIGIL_ERR_ROLLOUT', `model ${this.name} has no candidate to shadow`);
    this.shadowRunner = new ShadowRunner(this.cand.engine, sink, this.log, maxInFlight);
  }

  stopShadow(): void {
    this.shadowRunner = undefined;
  }

  /** RolloutTap: the candidate in shadow, for the pipelines. */
  shadow(): ShadowRunner | undefined {
    return this.shadowRunner;
  }

  /** Tells `sink` about every live input from now on (after a promotion); undefined stops it. */
  watch(sink: LiveSink | undefined): void {
    this.liveSink = sink;
  }

  /** RolloutTap: the watcher of a promotion, for the pipelines. */
  live(): LiveSink | undefined {
    return this.liveSink;
  }

  /**
   * Makes the candidate the serving version: the next current() returns it. The old engine is
   * closed once the inferences running on it are done; the promise resolves then. Throws when
   * there is no candidate, or a CandidateError('load_failed') when its worker has died.
   */
  async promoteCandidate(): Promise<void> {
    const c = this.cand;
    if (!c) throw new VigilError('VIGIL_ERR_ROLLOUT', `model ${this.name} has no candidate to promote`);
    this.cand = undefined;
    this.shadowRunner = undefined;
    if (c.engine.failure) {
      void this.retire(c.engine);
      throw new CandidateError(
        'load_failed',
        c.engine.failure.code,
        `model ${this.name}: version ${c.label} cannot be promoted: ${c.engine.failure.message}`,
      );
    }
    await this.swap(c.engine);
  }

  /** Closes the candidate (after the shadow inferences running on it) and stops the shadow. */
  async dropCandidate(): Promise<void> {
    const c = this.cand;
    this.cand = undefined;
    this.shadowRunner = undefined;
    if (c) await this.retire(c.engine);
  }

  /**
   * Loads an earlier version and swaps it in the same way as a promotion. On a load failure
   * (CandidateError 'load_failed') the version serving now stays.
   */
  async rollbackTo(packageDir: string): Promise<void> {
    if (this.closed) throw new HostClosedError(this.name);
    const engine = await this.loadChecked(packageDir, `the earlier version in ${packageDir}`);
    await this.swap(new HostedEngine(engine, packageDir));
  }

  /**
   * Loads a version that is to replace the current one and checks that the pipelines can use it:
   * against the version that served last (even while its failed engine reloads) and against the
   * pipelines' own checks. Throws CandidateError (load_failed, incompatible) or HostClosedError.
   */
  private async loadChecked(packageDir: string, what: string): Promise<WorkerEngine> {
    let engine: WorkerEngine;
    try {
      engine = await loadEngine(packageDir, this.options, this.log);
    } catch (err) {
      const code = err instanceof VigilError ? err.code : 'VIGIL_ERR_MODEL_LOAD';
      throw new CandidateError(
        'load_failed',
        code,
        `model ${this.name}: ${what} could not be loaded: ${errorMessage(err)}`,
        { cause: err, detail: { package: packageDir } },
      );
    }
    if (this.closed) {
      await engine.close().catch(() => undefined);
      throw new HostClosedError(this.name);
    }
    const current = this.active?.manifest ?? this.lastServed;
    const why = current ? incompatibility(current, engine.manifest) : undefined;
    let objection: string | undefined;
    for (const check of this.checks) {
      try {
        objection ??= check(engine.manifest);
      } catch (err) {
        objection ??= errorMessage(err);
      }
    }
    if (why || objection) {
      await engine.close().catch(() => undefined);
      const m = engine.manifest;
      throw new CandidateError(
        'incompatible',
        'VIGIL_ERR_MODEL_IO_MISMATCH',
        why
          ? `model ${this.name}: ${what} cannot replace ${current!.name}@${current!.version}: ${why}. ` +
              'Register a version with the same inputs and labels, or change the pipelines first.'
          : `model ${this.name}: ${what} (${m.name}@${m.version}) cannot be used: ${objection}`,
        { detail: { package: packageDir } },
      );
    }
    return engine;
  }

  /** The atomic part of a promotion or rollback: one assignment, then the old engine retires. */
  private async swap(next: HostedEngine): Promise<void> {
    const old = this.active;
    this.generation++;
    this.active = next;
    this.activeDir = next.packageDir;
    this.error = undefined;
    if (old) {
      const m = old.manifest;
      this.metrics.modelInfo.remove({
        model: m.name,
        version: m.version,
        backend: old.backend,
        provider: old.provider,
        name: this.name,
      });
    }
    this.announce(next.inner);
    this.log.info(
      {
        from: old?.manifest.version,
        to: next.manifest.version,
        package: next.packageDir,
      },
      `model ${this.name} now serves ${next.manifest.name}@${next.manifest.version}${old ? ` (was ${old.manifest.version})` : ''}`,
    );
    if (old) await this.retire(old);
  }

  private retire(engine: HostedEngine): Promise<void> {
    const p = engine.retire().catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, `model ${this.name}: closing a replaced engine failed`);
    });
    this.retiring.add(p);
    void p.finally(() => this.retiring.delete(p));
    return p;
  }

  private announce(engine: WorkerEngine): void {
    const m = engine.manifest;
    this.lastServed = m;
    for (const w of [...this.servingWaiters]) w();
    this.metrics.modelInfo.set(
      {
        model: m.name,
        version: m.version,
        backend: engine.backend,
        provider: engine.provider,
        name: this.name,
      },
      1,
    );
    this.metrics.modelReady.set({ model: this.name }, 1);
  }

  health(): ModelHealth & {
    restarts: number;
    candidate?: { package: string; label: string; version: string; backend: string; provider: string };
  } {
    const e = this.active;
    const c = this.cand;
    return {
      name: this.name,
      package: this.activeDir,
      model: e?.manifest.name,
      version: e?.manifest.version,
      backend: e?.backend,
      provider: e?.provider,
      ...(e?.requested ? { requested: [...e.requested] } : {}),
      ...(e?.fallbacks?.length ? { fallbacks: e.fallbacks.map((f) => ({ ...f })) } : {}),
      ready: e !== undefined && !e.failure,
      error: this.error,
      restarts: this.restarts,
      ...(c
        ? {
            candidate: {
              package: c.engine.packageDir,
              label: c.label,
              version: c.engine.manifest.version,
              backend: c.engine.backend,
              provider: c.engine.provider,
            },
          }
        : {}),
    };
  }

  /** Stops reloading and closes the engines; the caller bounds how long it may take. */
  async close(): Promise<void> {
    this.closed = true;
    this.shadowRunner = undefined;
    this.liveSink = undefined;
    for (const w of [...this.servingWaiters]) w();
    if (this.reloading) await this.reloading;
    const serving = this.engine;
    this.active = undefined;
    const c = this.cand;
    this.cand = undefined;
    await Promise.all([...this.retiring]);
    if (c) await c.engine.retire().catch(() => undefined);
    if (serving) await serving.close();
  }
}
