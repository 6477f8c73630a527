import { existsSync, readFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { RolloutPolicy } from '../config/registry.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { CandidateError, HostClosedError, type ModelHost } from '../model/host.js';
import { MANIFEST_FILE } from '../model/package.js';
import type { Engine } from '../engines/engine.js';
import type { Metrics } from '../ops/metrics.js';
import { acceptanceGate, type AcceptanceStatus, type GateVerdict } from './acceptance-gate.js';
import { ShadowTally, WatchTally, type ShadowFigures, type Verdict, type WatchFigures } from './judge.js';
import type { LiveObservation, ShadowObservation } from './shadow.js';
import type { RolloutEvent, RolloutReason, RolloutState } from './types.js';

/** A version to try: an installed, verified package folder. */
export interface VersionRef {
  packageDir: string;
  /** The version as its manifest names it; read from the loaded package when absent. */
  version?: string | undefined;
  /** Where it came from in the registry (absent for a local package). */
  registered?: { name: string; alias: string; version: string } | undefined;
}

export interface RolloutControllerOptions {
  /** The configured model (models.<name>). */
  model: string;
  deviceId: string;
  host: ModelHost;
  policy: RolloutPolicy;
  /** Budget of the pipelines running this model (the smallest): the default of policy.maxLatencyMs. */
  budgetMs: number;
  log: Logger;
  /** Told about every transition (the daemon publishes it on MQTT and tags the registry). Must not throw. */
  onEvent?: ((event: RolloutEvent) => void) | undefined;
  /** Shadow inferences running at once; inputs beyond are skipped (default 1). */
  shadowInFlight?: number | undefined;
  /** Earlier versions kept for rollback (default 5). */
  historySize?: number | undefined;
  /**
   * Earlier versions to roll back to at start, oldest first (the model store's installed, not
   * refused versions before the active one; the configured package as the oldest), so that a
   * restart does not forget them. Capped at historySize (the newest kept); a folder that no
   * longer exists when a rollback comes is skipped for the next older one.
   */
  history?: VersionRef[] | undefined;
  /**
   * The version serving at start, when the host's package is one from the registry: a rollback
   * from it names it in its event's `registered`. Ignored unless packageDir is the host's.
   */
  active?: VersionRef | undefined;
  /** Counts acceptance test runs (vigil_model_acceptance_total) when given. */
  metrics?: Metrics | undefined;
}

/** How tryVersion(), promote() or rollback() ended. */
export interface RolloutOutcome {
  /**
   * promoted, rejected, rolled_back: decided (an event was emitted); unchanged: that version
   * already serves, or the version a rollback was asked for has been replaced meanwhile;
   * cancelled: a newer version or close() ended the trial, or the host is shutting down;
   * refused: nothing to do (no candidate to promote, no earlier version to roll back to, a
   * rollback that failed).
   */
  state: 'promoted' | 'rejected' | 'rolled_back' | 'unchanged' | 'cancelled' | 'refused';
  version: string | undefined;
  reason?: RolloutReason | undefined;
  message: string;
  evidence?: Record<string, number | string> | undefined;
}

export interface RolloutStatus {
  model: string;
  state: RolloutState;
  /** The version serving now (registered: where it came from in the registry, when known). */
  active: { version: string | undefined; package: string; registered?: VersionRef['registered'] };
  /** The version a rollback would return to. */
  previous?: { version: string; package: string } | undefined;
  /** The version being downloaded, verified or tried in shadow. */
  candidate?:
    { version: string; package?: string | undefined; registered?: VersionRef['registered'] } | undefined;
  /** Shadow progress: samples/target, skipped, errors, agreement so far, p95 ms, score shift. */
  shadow?: (ShadowFigures & { startedAt: string; decideBy: string }) | undefined;
  /** After a promotion: live inputs watched for a regression; settled once samples reach target. */
  watch?: (WatchFigures & { version: string; settled: boolean }) | undefined;
  /** The last acceptance test run of a new version (docs/ACCEPTANCE.md); outcome none: it declares no tests. */
  acceptance?: AcceptanceStatus | undefined;
  lastDecision?: RolloutEvent | undefined;
}

interface Trial {
  ref: VersionRef;
  version: string;
  tally: ShadowTally;
  startedAt: Date;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
  resolve: (o: RolloutOutcome) => void;
}

/** A version that served, as kept for rollback (and the one serving now). */
interface Kept {
  packageDir: string;
  version: string;
  registered?: VersionRef['registered'];
}

const DEFAULT_HISTORY = 5;
/** The longest a trial waits for a failed engine of the current version to serve again. */
const RELOAD_WAIT_MAX_MS = 120_000;

/**
 * The version a package's vigil.json names, read without verifying it, to name a version that
 * fails to load; the folder name when even that cannot be read.
 */
async function peekVersion(dir: string): Promise<string> {
  try {
    const m: unknown = JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), 'utf8'));
    const v = (m as { version?: unknown }).version;
    if (typeof v === 'string' && v.length > 0) return v;
  } catch {
    // Unreadable: the folder name will do.
  }
  return path.basename(dir);
}

/** peekVersion, for the versions named at start (the constructor cannot wait). */
function peekVersionSync(dir: string): string {
  try {
    const m: unknown = JSON.parse(readFileSync(path.join(dir, MANIFEST_FILE), 'utf8'));
    const v = (m as { version?: unknown }).version;
    if (typeof v === 'string' && v.length > 0) return v;
  } catch {
    // Unreadable (a pruned folder, say): the folder name will do.
  }
  return path.basename(dir);
}

function keep(ref: VersionRef): Kept {
  return {
    packageDir: ref.packageDir,
    version: ref.version ?? peekVersionSync(ref.packageDir),
    ...(ref.registered ? { registered: ref.registered } : {}),
  };
}

async function exists(dir: string): Promise<boolean> {
  try {
    await access(path.join(dir, MANIFEST_FILE));
    return true;
  } catch {
    return false;
  }
}

/**
 * The rollout of one configured model: tries a new version in shadow beside the current one,
 * promotes it when it is fast enough, free of errors and NaN, and agrees with the current one,
 * watches it on live inputs after the swap, and rolls back to the version before on a
 * regression. Every transition is logged with its evidence and handed to onEvent.
 *
 *   idle ─> downloading ─> verifying ─> shadow ─> promoted ─(regression)─> rolled_back
 *                 │              │          └──> rejected
 *                 └──────────────┴─────────────> rejected
 *
 * downloading and verifying are set by the registry follower (setState, fail); tryVersion()
 * takes over from an installed, verified package. Operations that swap engines run one at a
 * time.
 */
export class RolloutController {
  private state: RolloutState = 'idle';
  private trial: Trial | undefined;
  /** The version being downloaded or verified (setState). */
  private pendingRef: { version: string; registered?: VersionRef['registered'] } | undefined;
  private watchTally: WatchTally | undefined;
  private settled: WatchFigures | undefined;
  private watchedVersion: string | undefined;
  /** Versions that served before the current one, oldest first, with their registry refs. */
  private readonly history: Kept[];
  /** The version serving now, as promoted or rolled back to (or named at start). */
  private serving: Kept | undefined;
  /** Promotions and rollbacks done: a rollback asked for before one of them is not done after it. */
  private swaps = 0;
  private lastDecision: RolloutEvent | undefined;
  private acceptance: AcceptanceStatus | undefined;
  /** Ends the acceptance tests running now (a newer version, close()). */
  private testing: AbortController | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly maxLatencyMs: number;
  private readonly historySize: number;

  constructor(private readonly o: RolloutControllerOptions) {
    this.maxLatencyMs = o.policy.maxLatencyMs ?? o.budgetMs;
    this.historySize = o.historySize ?? DEFAULT_HISTORY;
    this.history = (o.history ?? [])
      .filter((r) => r.packageDir !== o.host.packageDir)
      .slice(-this.historySize)
      .map(keep);
    this.serving = o.active && o.active.packageDir === o.host.packageDir ? keep(o.active) : undefined;
  }

  get model(): string {
    return this.o.model;
  }

  /**
   * For the registry follower: a version is being downloaded or verified. Emits the event; a
   * shadow in progress goes on until tryVersion() brings the new version.
   */
  setState(
    state: 'downloading' | 'verifying',
    ref: { version: string; registered?: VersionRef['registered'] },
  ): void {
    this.state = state;
    this.pendingRef = { version: ref.version, registered: ref.registered };
    this.emit({
      state,
      to: ref.version,
      registered: ref.registered,
      message:
        state === 'downloading'
          ? `downloading version ${ref.version} of model ${this.o.model}`
          : `verifying version ${ref.version} of model ${this.o.model}`,
    });
  }

  /**
   * For the registry follower: a version failed before it could be tried (download_failed,
   * sha256_mismatch, bad_package, signature_missing, signature_invalid). The current version
   * keeps serving.
   */
  fail(
    ref: { version: string; registered?: VersionRef['registered'] },
    reason: RolloutReason,
    message: string,
  ): RolloutOutcome {
    this.state = 'rejected';
    this.pendingRef = undefined;
    this.emit({ state: 'rejected', to: ref.version, registered: ref.registered, reason, message });
    return { state: 'rejected', version: ref.version, reason, message };
  }

  /**
   * Tries an installed, verified version: loads it beside the current one (rejected as
   * load_failed or incompatible when that fails), scores it in shadow on live inputs, and
   * promotes or rejects it by the policy. Resolves with the decision; a trial still in shadow is
   * cancelled by a newer tryVersion() or close().
   */
  tryVersion(ref: VersionRef): Promise<RolloutOutcome> {
    // A version still in its acceptance tests is superseded too.
    this.testing?.abort();
    if (this.trial && !this.trial.done)
      this.finish(this.trial, {
        state: 'cancelled',
        version: this.trial.version,
        message: `the trial of version ${this.trial.version} was superseded by a newer version`,
      });
    // The load runs in turn with other swaps; the shadow that follows must not hold the turn, or
    // its own decision (which takes a turn) could never run.
    const loaded = this.serial(
      async (): Promise<{ outcome: RolloutOutcome } | { trial: Promise<RolloutOutcome> }> => {
        if (this.closed) return { outcome: this.cancelledOutcome(ref.version) };
        const host = this.o.host;
        let current = host.current();
        if (!current && host.everServed) {
          // The current version's engine failed and is being reloaded: the new version waits for
          // it, to be compared with it as any other, rather than slipping in unchecked.
          const waitMs = Math.min(this.o.policy.shadowMaxSeconds * 1000, RELOAD_WAIT_MAX_MS);
          this.o.log.warn(
            { version: ref.version, package: ref.packageDir },
            `model ${this.o.model}: the serving version's engine is reloading after a failure; the new version is tried once it serves again (waiting up to ${Math.round(waitMs / 1000)} s)`,
          );
          await host.whenServing(waitMs);
          if (this.closed) return { outcome: this.cancelledOutcome(ref.version) };
          current = host.current();
        }
        if (
          current &&
          host.packageDir === ref.packageDir &&
          (ref.version === undefined || ref.version === current.manifest.version)
        )
          return {
            outcome: {
              state: 'unchanged',
              version: current.manifest.version,
              message: `version ${current.manifest.version} already serves`,
            },
          };
        const label = ref.version ?? (await peekVersion(ref.packageDir));
        await host.dropCandidate();
        try {
          await host.loadCandidate(ref.packageDir, label);
        } catch (err) {
          if (err instanceof HostClosedError) return { outcome: this.cancelledOutcome(label) };
          const reason: RolloutReason = err instanceof CandidateError ? err.reason : 'load_failed';
          return { outcome: this.reject(ref, label, reason, errorMessage(err), undefined) };
        }
        const candidate = host.candidate()!;
        const version = candidate.engine.manifest.version;
        if (ref.version !== undefined && ref.version !== version)
          this.o.log.warn(
            { expected: ref.version, manifest: version, package: ref.packageDir },
            `model ${this.o.model}: the package in ${ref.packageDir} says version ${version}, not ${ref.version}; using ${version}`,
          );
        if (this.closed) {
          await host.dropCandidate();
          return { outcome: this.cancelledOutcome(version) };
        }
        // Its own acceptance tests first: a version that fails them never sees a live input.
        const gate = await this.runAcceptance(ref, version, candidate.engine, candidate.packageDir);
        if ('cancelled' in gate || this.closed) {
          await host.dropCandidate();
          return { outcome: this.cancelledOutcome(version) };
        }
        if (!gate.pass) {
          await host.dropCandidate();
          return { outcome: this.reject(ref, version, 'acceptance_failed', gate.message, gate.evidence) };
        }
        const passed =
          gate.status.outcome === 'passed'
            ? `passed its acceptance tests (${gate.status.checks} checks on ${gate.status.samples} holdout samples, ${((gate.status.durationMs ?? 0) / 1000).toFixed(1)} s)`
            : undefined;
        if (!host.everServed) {
          // No version ever served (the configured one did not load): any version that loads
          // (and passes its tests) beats none.
          return {
            outcome: await this.promoteNow(
              ref,
              version,
              gate.evidence,
              `version ${version} serves: no version was serving${passed ? `; it ${passed}` : ''}`,
            ),
          };
        }
        return { trial: this.startTrial(ref, version, passed, gate.evidence) };
      },
    );
    return loaded.then((r) => ('outcome' in r ? r.outcome : r.trial));
  }

  /**
   * Manual promotion (CLI, ops API): with no argument the version in shadow is promoted now,
   * without waiting for its samples; with a package, that version is loaded and promoted at once.
   * Either way the promotion is watched and rolled back on a regression.
   */
  promote(ref?: VersionRef): Promise<RolloutOutcome> {
    if (!ref) {
      const trial = this.trial;
      if (!trial || trial.done)
        return Promise.resolve({
          state: 'refused',
          version: undefined,
          message: `model ${this.o.model} has no version in shadow to promote`,
        });
      return this.conclude(
        trial,
        {
          decided: true,
          promote: true,
          message: `version ${trial.version} promoted by hand after ${trial.tally.count} shadow samples`,
        },
        'manual',
      );
    }
    if (this.trial && !this.trial.done)
      this.finish(this.trial, {
        state: 'cancelled',
        version: this.trial.version,
        message: `the trial of version ${this.trial.version} was ended by a manual promotion`,
      });
    return this.serial(async () => {
      const host = this.o.host;
      const label = ref.version ?? (await peekVersion(ref.packageDir));
      if (this.closed) return this.cancelledOutcome(label);
      try {
        await host.loadCandidate(ref.packageDir, label);
      } catch (err) {
        if (err instanceof HostClosedError) return this.cancelledOutcome(label);
        const reason: RolloutReason = err instanceof CandidateError ? err.reason : 'load_failed';
        return this.reject(ref, label, reason, errorMessage(err), undefined);
      }
      const version = host.candidate()!.engine.manifest.version;
      return this.promoteNow(ref, version, undefined, `version ${version} promoted by hand`, 'manual');
    });
  }

  /**
   * Manual rollback (reason 'manual'). During a shadow it only ends the trial: the version in
   * shadow is rejected and the serving one stays. Otherwise the version serving now is replaced
   * by the one before it, unless a promotion or rollback has replaced it meanwhile (an automatic
   * rollback of the same regression, say): one request never rolls back two versions.
   */
  rollback(): Promise<RolloutOutcome> {
    const trial = this.trial;
    if (trial && !trial.done) {
      const serving = this.o.host.current()?.manifest.version ?? 'none';
      return this.conclude(trial, {
        decided: true,
        promote: false,
        reason: 'manual',
        message: `version ${trial.version} in shadow was rejected by a manual rollback; version ${serving} keeps serving`,
      });
    }
    const expected = this.swaps;
    return this.serial(() => this.rollbackNow('manual', 'rolled back by hand', undefined, expected));
  }

  status(): RolloutStatus {
    const host = this.o.host;
    const active = host.current()?.manifest.version;
    const serving = this.servingRef();
    // What a rollback would go back to: the newest kept version whose folder is still there.
    const prev = this.history.findLast((k) => k.packageDir !== host.packageDir && existsSync(k.packageDir));
    const t = this.trial && !this.trial.done ? this.trial : undefined;
    const cand = host.candidate();
    const watch = this.watchTally
      ? { ...this.watchTally.figures(), version: this.watchTally.version, settled: false }
      : this.settled && this.watchedVersion
        ? { ...this.settled, version: this.watchedVersion, settled: true }
        : undefined;
    return {
      model: this.o.model,
      state: this.state,
      active: {
        version: active,
        package: host.packageDir,
        ...(serving.registered ? { registered: serving.registered } : {}),
      },
      previous: prev ? { version: prev.version, package: prev.packageDir } : undefined,
      candidate: t
        ? { version: t.version, package: t.ref.packageDir, registered: t.ref.registered }
        : cand
          ? { version: cand.engine.manifest.version, package: cand.packageDir }
          : this.pendingRef
            ? { version: this.pendingRef.version, registered: this.pendingRef.registered }
            : undefined,
      shadow: t
        ? {
            ...t.tally.figures(),
            startedAt: t.startedAt.toISOString(),
            decideBy: new Date(t.startedAt.getTime() + this.o.policy.shadowMaxSeconds * 1000).toISOString(),
          }
        : undefined,
      watch,
      ...(this.acceptance ? { acceptance: { ...this.acceptance } } : {}),
      lastDecision: this.lastDecision,
    };
  }

  /** Ends a trial in progress (cancelled), stops watching and drops the candidate. */
  async close(): Promise<void> {
    this.closed = true;
    this.testing?.abort();
    if (this.trial && !this.trial.done) this.finish(this.trial, this.cancelledOutcome(this.trial.version));
    this.o.host.stopShadow();
    this.o.host.watch(undefined);
    this.watchTally = undefined;
    await this.queue.catch(() => undefined);
    await this.o.host.dropCandidate();
  }

  /**
   * The version's acceptance tests on the candidate engine (acceptance-gate.ts), announced as a
   * `verifying` event when it declares some. Runs inside serial(): no swap happens meanwhile, so
   * the run is bounded by rollout.acceptanceTimeoutSeconds and the holdout's size
   * (runtime/acceptance/holdout.ts) to keep a promote or rollback from waiting behind it for long.
   */
  private async runAcceptance(
    ref: VersionRef,
    version: string,
    engine: Engine,
    packageDir: string,
  ): Promise<GateVerdict> {
    const testing = new AbortController();
    this.testing = testing;
    if (engine.manifest.acceptance) {
      this.state = 'verifying';
      this.acceptance = {
        version,
        outcome: 'running',
        summary: 'acceptance tests running',
        at: new Date().toISOString(),
      };
      this.emit({
        state: 'verifying',
        to: version,
        registered: ref.registered,
        message: `version ${version} of model ${this.o.model}: running its acceptance tests before its shadow`,
      });
    }
    let verdict: GateVerdict;
    try {
      verdict = await acceptanceGate({
        model: this.o.model,
        version,
        packageDir,
        engine,
        requireAcceptance: this.o.policy.requireAcceptance,
        signal: testing.signal,
        timeoutMs: this.o.policy.acceptanceTimeoutSeconds * 1000,
        metrics: this.o.metrics,
      });
    } finally {
      if (this.testing === testing) this.testing = undefined;
    }
    if ('cancelled' in verdict) {
      if (this.acceptance?.version === version && this.acceptance.outcome === 'running')
        this.acceptance = undefined;
      return verdict;
    }
    this.acceptance = verdict.status;
    const s = verdict.status;
    if (s.outcome === 'none' && verdict.pass)
      this.o.log.warn(
        { version },
        `model ${this.o.model}: version ${version} declares no acceptance tests; it goes to shadow without them (rollout.requireAcceptance: true refuses such versions)`,
      );
    else if (s.outcome === 'passed')
      this.o.log.info(
        { version, checks: s.checks, samples: s.samples, durationMs: s.durationMs },
        `model ${this.o.model}: version ${version} passed its acceptance tests in ${s.durationMs} ms`,
      );
    return verdict;
  }

  private startTrial(
    ref: VersionRef,
    version: string,
    acceptance?: string,
    acceptanceEvidence?: Record<string, number | string>,
  ): Promise<RolloutOutcome> {
    const host = this.o.host;
    // A trial whose load was queued behind this one's could not be finished by tryVersion().
    if (this.trial && !this.trial.done)
      this.finish(this.trial, {
        state: 'cancelled',
        version: this.trial.version,
        message: `the trial of version ${this.trial.version} was superseded by version ${version}`,
      });
    let resolve!: (o: RolloutOutcome) => void;
    const outcome = new Promise<RolloutOutcome>((r) => (resolve = r));
    const trial: Trial = {
      ref,
      version,
      tally: new ShadowTally(this.o.policy, this.maxLatencyMs),
      startedAt: new Date(),
      timer: undefined,
      done: false,
      resolve,
    };
    this.trial = trial;
    this.pendingRef = undefined;
    host.startShadow(
      {
        observe: (obs: ShadowObservation) => {
          if (this.trial !== trial || trial.done) return;
          const verdict = trial.tally.add(obs);
          if (verdict.decided) void this.conclude(trial, verdict);
        },
        skipped: () => {
          if (this.trial === trial && !trial.done) trial.tally.skip();
        },
      },
      this.o.shadowInFlight ?? 1,
    );
    trial.timer = setTimeout(() => {
      if (!trial.done) void this.conclude(trial, trial.tally.decide(version, true));
    }, this.o.policy.shadowMaxSeconds * 1000);
    trial.timer.unref();
    this.state = 'shadow';
    this.emit({
      state: 'shadow',
      to: version,
      registered: ref.registered,
      message: `version ${version} of model ${this.o.model} ${acceptance ? `${acceptance} and ` : ''}runs in shadow: ${this.o.policy.shadowSamples} inputs within ${this.o.policy.shadowMaxSeconds} s, p95 under ${this.maxLatencyMs} ms, agreement at least ${this.o.policy.minAgreement}`,
      evidence: { ...trial.tally.figures(), ...(acceptanceEvidence ?? {}) },
    });
    return outcome;
  }

  /** Acts on a shadow verdict: promote or reject, then resolve the trial's outcome. */
  private conclude(trial: Trial, verdict: Verdict, manual?: 'manual'): Promise<RolloutOutcome> {
    if (trial.done || !verdict.decided) return Promise.resolve(this.cancelledOutcome(trial.version));
    // No more samples count once decided; the candidate stays loaded until promoted or dropped.
    trial.done = true;
    if (trial.timer) clearTimeout(trial.timer);
    // The shadow running now may be a newer trial's.
    if (this.trial === trial) this.o.host.stopShadow();
    const evidence = trial.tally.figures();
    const decided = this.serial(async () => {
      if (this.trial !== trial) return this.cancelledOutcome(trial.version);
      this.trial = undefined;
      if (verdict.promote)
        return this.promoteNow(trial.ref, trial.version, evidence, verdict.message, manual);
      await this.o.host.dropCandidate();
      return this.reject(trial.ref, trial.version, verdict.reason, verdict.message, evidence);
    }).catch((err: unknown): RolloutOutcome => {
      this.o.log.error({ err: errorMessage(err) }, `model ${this.o.model}: rollout decision failed`);
      return { state: 'refused', version: trial.version, message: errorMessage(err) };
    });
    void decided.then(trial.resolve);
    return decided;
  }

  /** Ends a trial without a decision (superseded, closed). */
  private finish(trial: Trial, outcome: RolloutOutcome): void {
    trial.done = true;
    if (trial.timer) clearTimeout(trial.timer);
    if (this.trial === trial) {
      this.trial = undefined;
      this.o.host.stopShadow();
    }
    this.o.log.info({ version: trial.version }, outcome.message);
    trial.resolve(outcome);
  }

  /** Swaps the candidate in and starts watching it. Runs inside serial(). */
  private async promoteNow(
    ref: VersionRef,
    version: string,
    evidence: Record<string, number | string> | undefined,
    message: string,
    reason?: 'manual',
  ): Promise<RolloutOutcome> {
    const host = this.o.host;
    // A version that never served (the configured one failed to load) is nothing to go back to.
    const previous: Kept | undefined = host.everServed ? this.servingRef() : undefined;
    // Watching starts with the swap itself; inputs the old engine still serves are told apart by version.
    const watch = previous ? new WatchTally(this.o.policy, version) : undefined;
    this.startWatch(watch);
    try {
      await host.promoteCandidate();
    } catch (err) {
      this.startWatch(undefined);
      await host.dropCandidate();
      return this.reject(ref, version, 'load_failed', errorMessage(err), evidence);
    }
    this.swaps++;
    if (previous) {
      this.history.push(previous);
      if (this.history.length > this.historySize) this.history.shift();
    }
    this.serving = {
      packageDir: host.packageDir,
      version,
      ...(ref.registered ? { registered: ref.registered } : {}),
    };
    this.state = 'promoted';
    this.pendingRef = undefined;
    const event = this.emit({
      state: 'promoted',
      from: previous?.version,
      to: version,
      registered: ref.registered,
      reason,
      message: watch
        ? `${message}; watching ${this.o.policy.watchSamples} live inputs for a regression`
        : message,
      evidence,
    });
    return { state: 'promoted', version, reason, message: event.message, evidence };
  }

  /** The version serving now, with its registry ref when it was promoted or named at start. */
  private servingRef(): Kept {
    const host = this.o.host;
    const s = this.serving;
    if (s && s.packageDir === host.packageDir) return s;
    return {
      packageDir: host.packageDir,
      version: host.current()?.manifest.version ?? peekVersionSync(host.packageDir),
    };
  }

  private startWatch(tally: WatchTally | undefined): void {
    this.watchTally = tally;
    this.settled = undefined;
    this.watchedVersion = tally?.version;
    if (!tally) {
      this.o.host.watch(undefined);
      return;
    }
    this.o.host.watch({
      observe: (obs: LiveObservation) => {
        if (this.watchTally !== tally) return;
        const verdict = tally.add(obs);
        if (!verdict.decided) return;
        this.watchTally = undefined;
        this.o.host.watch(undefined);
        if (verdict.promote) {
          this.settled = tally.figures();
          this.o.log.info({ model: this.o.model, version: tally.version, ...this.settled }, verdict.message);
          return;
        }
        const evidence = tally.figures();
        const expected = this.swaps;
        void this.serial(() => this.rollbackNow('regression', verdict.message, evidence, expected)).catch(
          (err: unknown) =>
            this.o.log.error({ err: errorMessage(err) }, `model ${this.o.model}: rollback failed`),
        );
      },
    });
  }

  /**
   * Loads the newest earlier version and swaps it in; runs inside serial(). Not done when a
   * promotion or rollback came after the request (`expected`, the swap count when it was made).
   * Kept versions whose folders are gone, or that the pipelines can no longer use, are dropped
   * for the next older one.
   */
  private async rollbackNow(
    reason: RolloutReason,
    message: string,
    evidence: Record<string, number | string> | undefined,
    expected: number,
  ): Promise<RolloutOutcome> {
    const host = this.o.host;
    const from = this.servingRef();
    if (expected !== this.swaps) {
      const why = `model ${this.o.model} changed version since the rollback was asked for (it serves ${from.version} now); nothing more was rolled back`;
      this.o.log.warn({ reason, version: from.version }, `${why}: ${message}`);
      return { state: 'unchanged', version: from.version, reason, message: why };
    }
    const skipped: string[] = [];
    for (;;) {
      const prev = this.history[this.history.length - 1];
      if (!prev) return this.nothingToRollBackTo(from.version, reason, message, skipped);
      if (prev.packageDir === host.packageDir) {
        this.history.pop();
        continue;
      }
      if (!(await exists(prev.packageDir))) {
        this.history.pop();
        skipped.push(`${prev.version} (its folder ${prev.packageDir} is gone)`);
        this.o.log.warn(
          { version: prev.version, package: prev.packageDir },
          `model ${this.o.model}: earlier version ${prev.version} is no longer installed (${prev.packageDir} is gone); trying the one before it`,
        );
        continue;
      }
      this.startWatch(undefined);
      try {
        await host.rollbackTo(prev.packageDir);
      } catch (err) {
        if (err instanceof HostClosedError) return this.cancelledOutcome(from.version);
        if (err instanceof CandidateError && err.reason === 'incompatible') {
          this.history.pop();
          skipped.push(`${prev.version} (the pipelines cannot use it)`);
          this.o.log.warn({ version: prev.version, package: prev.packageDir }, errorMessage(err));
          continue;
        }
        const why = `could not roll back model ${this.o.model} to version ${prev.version}: ${errorMessage(err)}; version ${from.version} keeps serving`;
        this.o.log.error({ reason, from: from.version, to: prev.version }, why);
        return { state: 'refused', version: from.version, reason, message: why };
      }
      this.history.pop();
      this.swaps++;
      const to = host.current()?.manifest.version ?? prev.version;
      this.serving = { ...prev, version: to };
      this.state = 'rolled_back';
      const event = this.emit({
        state: 'rolled_back',
        from: from.version,
        to,
        // The version refused: the registry tags it, the model store stops serving it.
        registered: from.registered,
        reason,
        message: `${message}; model ${this.o.model} is back on version ${to}`,
        evidence,
      });
      return { state: 'rolled_back', version: to, reason, message: event.message, evidence };
    }
  }

  private nothingToRollBackTo(
    version: string,
    reason: RolloutReason,
    message: string,
    skipped: string[],
  ): RolloutOutcome {
    const gone = skipped.length > 0 ? ` (skipped: ${skipped.join('; ')})` : '';
    const why =
      `model ${this.o.model} has no earlier version on this gateway to roll back to${gone}; version ${version} keeps serving. ` +
      'To serve another version, point the registry alias this gateway follows at it (it is downloaded and tried in shadow), ' +
      'or raise registry.keepVersions so that more versions stay installed for rollback';
    this.o.log.error({ reason, version }, `${why}: ${message}`);
    return { state: 'refused', version, reason, message: `${why}. Rollback wanted (${reason}): ${message}` };
  }

  private reject(
    ref: VersionRef,
    version: string,
    reason: RolloutReason | undefined,
    message: string,
    evidence: Record<string, number | string> | undefined,
  ): RolloutOutcome {
    this.state = 'rejected';
    this.pendingRef = undefined;
    const from = this.o.host.current()?.manifest.version;
    this.emit({
      state: 'rejected',
      from,
      to: version,
      registered: ref.registered,
      reason,
      message,
      evidence,
    });
    return { state: 'rejected', version, reason, message, evidence };
  }

  private cancelledOutcome(version: string | undefined): RolloutOutcome {
    return { state: 'cancelled', version, message: `the rollout of model ${this.o.model} was cancelled` };
  }

  private emit(e: {
    state: RolloutState;
    to: string;
    from?: string | undefined;
    registered?: VersionRef['registered'];
    reason?: RolloutReason | undefined;
    message: string;
    evidence?: Record<string, number | string> | undefined;
  }): RolloutEvent {
    const event: RolloutEvent = {
      schema: 'vigil.rollout.v1',
      device: this.o.deviceId,
      model: this.o.model,
      ...(e.registered ? { registered: e.registered } : {}),
      state: e.state,
      ...(e.from !== undefined ? { from: e.from } : {}),
      to: e.to,
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      message: e.message,
      ...(e.evidence ? { evidence: { ...e.evidence } } : {}),
      at: new Date().toISOString(),
    };
    if (e.state === 'promoted' || e.state === 'rejected' || e.state === 'rolled_back')
      this.lastDecision = event;
    const level = e.state === 'rejected' || e.state === 'rolled_back' ? 'warn' : 'info';
    this.o.log[level](
      {
        model: this.o.model,
        state: e.state,
        from: e.from,
        to: e.to,
        reason: e.reason,
        registered: e.registered,
        evidence: e.evidence,
      },
      e.message,
    );
    try {
      this.o.onEvent?.(event);
    } catch (err) {
      this.o.log.error({ err: errorMessage(err) }, `model ${this.o.model}: rollout event not taken`);
    }
    return event;
  }

  /** Runs swap operations one at a time, in call order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
