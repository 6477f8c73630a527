import { AcceptanceCancelled, runAcceptance } from '../acceptance/run.js';
import { failureSummary, type AcceptanceReport } from '../acceptance/types.js';
import type { Engine } from '../engines/engine.js';
import { errorMessage } from '../errors.js';
import type { Metrics } from '../ops/metrics.js';

/**
 * The acceptance gate a new version passes before its shadow (docs/ACCEPTANCE.md): its own
 * holdout and declared checks, run on the candidate engine already loaded beside the serving one.
 * Inference runs in the candidate's worker thread, one sample at a time, so the live pipelines
 * keep their budget; the event loop only prepares inputs between inferences.
 */

/** The last acceptance run of a model, as the status API shows it. */
export interface AcceptanceStatus {
  version: string;
  /** running; passed; failed (a check failed); error (the tests could not run); none (the package declares no tests). */
  outcome: 'running' | 'passed' | 'failed' | 'error' | 'none';
  /** What happened, in one line: the failed checks, or why there were none. */
  summary: string;
  checks?: number | undefined;
  failedChecks?: number | undefined;
  samples?: number | undefined;
  durationMs?: number | undefined;
  at: string;
}

export type GateVerdict =
  | { pass: true; status: AcceptanceStatus; evidence: Record<string, number | string> }
  | { pass: false; status: AcceptanceStatus; message: string; evidence: Record<string, number | string> }
  | { cancelled: true };

export interface GateOptions {
  model: string;
  version: string;
  packageDir: string;
  engine: Engine;
  requireAcceptance: boolean;
  signal: AbortSignal;
  /** The run is stopped after this long and the version rejected (rollout.acceptanceTimeoutSeconds). */
  timeoutMs: number;
  metrics?: Metrics | undefined;
}

/**
 * How long a stopped run may take to end after its deadline: it stops before its next inference,
 * so this covers the one in flight. Past it the gate gives its verdict without waiting further.
 */
const STOP_GRACE_MS = 10_000;

type RunEnd =
  | { report: AcceptanceReport }
  | { err: unknown }
  /** Past the deadline; inferences is undefined when the run had not stopped within the grace. */
  | { timedOut: true; inferences: number | undefined };

/**
 * The run, ended by its report, its error, or its deadline. At the deadline the run is told to
 * stop (it checks before each inference) and awaited for up to STOP_GRACE_MS, so that a rejected
 * candidate is not left running inferences for a run nobody waits for any more.
 */
async function runWithin(o: GateOptions): Promise<RunEnd> {
  const stop = new AbortController();
  const cancel = () => stop.abort();
  if (o.signal.aborted) stop.abort();
  o.signal.addEventListener('abort', cancel, { once: true });
  const running: Promise<RunEnd> = runAcceptance(o.packageDir, o.engine, { signal: stop.signal }).then(
    (report) => ({ report }),
    (err: unknown) => ({ err }),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), o.timeoutMs);
  });
  try {
    const first = await Promise.race([running, deadline]);
    if (first !== 'deadline') return first;
    stop.abort();
    let grace: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      running,
      new Promise<undefined>((resolve) => {
        grace = setTimeout(() => resolve(undefined), STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(grace);
    // Finished while being told to stop: its report is as good as any.
    if (ended && 'report' in ended) return ended;
    const inferences =
      ended && 'err' in ended && ended.err instanceof AcceptanceCancelled ? ended.err.inferences : undefined;
    return { timedOut: true, inferences };
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener('abort', cancel);
  }
}

/** Runs the gate; never throws (a test that cannot run is a failed gate, cancellation is its own verdict). */
export async function acceptanceGate(o: GateOptions): Promise<GateVerdict | { cancelled: true }> {
  const at = () => new Date().toISOString();
  const count = (outcome: AcceptanceStatus['outcome']) =>
    o.metrics?.modelAcceptance.inc({ model: o.model, outcome });
  if (!o.engine.manifest.acceptance) {
    count('none');
    const summary = `version ${o.version} declares no acceptance tests (its vigil.json has no acceptance section)`;
    const status: AcceptanceStatus = { version: o.version, outcome: 'none', summary, at: at() };
    if (!o.requireAcceptance) return { pass: true, status, evidence: { acceptance: 'none' } };
    return {
      pass: false,
      status,
      message:
        `acceptance tests failed: ${summary}, and rollout.requireAcceptance is set for model ${o.model}. ` +
        'Add a holdout and checks to the package (docs/ACCEPTANCE.md) and register it again.',
      evidence: { acceptance: 'none' },
    };
  }
  const started = performance.now();
  const error = (summary: string): GateVerdict => {
    const ms = Math.round(performance.now() - started);
    o.metrics?.modelAcceptanceSeconds.observe({ model: o.model }, ms / 1000);
    count('error');
    return {
      pass: false,
      status: { version: o.version, outcome: 'error', summary, durationMs: ms, at: at() },
      message: `acceptance tests failed: ${summary}`,
      evidence: { acceptance: 'error', acceptanceMs: ms },
    };
  };
  const ended = await runWithin(o);
  if ('timedOut' in ended)
    return error(
      `the tests did not finish within ${o.timeoutMs / 1000} s (models.${o.model}.rollout.acceptanceTimeoutSeconds) ` +
        `and were stopped${ended.inferences === undefined ? '' : ` after ${ended.inferences} inferences`}; ` +
        'make the holdout smaller or its checks fewer, or raise the limit',
    );
  if ('err' in ended) {
    if (ended.err instanceof AcceptanceCancelled || o.signal.aborted) return { cancelled: true };
    return error(`the tests could not run: ${errorMessage(ended.err).split('\n').join('; ')}`);
  }
  const report = ended.report;
  o.metrics?.modelAcceptanceSeconds.observe({ model: o.model }, report.durationMs / 1000);
  const failed = report.checks.filter((c) => !c.passed).length;
  count(report.passed ? 'passed' : 'failed');
  const evidence = {
    acceptance: report.passed ? 'passed' : 'failed',
    acceptanceChecks: report.checks.length,
    acceptanceFailedChecks: failed,
    acceptanceSamples: report.holdout.samples,
    acceptanceMs: report.durationMs,
  };
  const status: AcceptanceStatus = {
    version: o.version,
    outcome: report.passed ? 'passed' : 'failed',
    summary: failureSummary(report),
    checks: report.checks.length,
    failedChecks: failed,
    samples: report.holdout.samples,
    durationMs: report.durationMs,
    at: at(),
  };
  if (report.passed) return { pass: true, status, evidence };
  return { pass: false, status, message: `acceptance tests failed: ${status.summary}`, evidence };
}
