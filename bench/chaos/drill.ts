import os from 'node:os';
import { FrameRun, renderFramePool, type FramePool, type FrameRunSummary } from './frames.js';
import { interrupted, onInterrupt } from './interrupt.js';
import { computeLedger, ledgerFailures, settle, type Allowances, type Ledger } from './ledger.js';
import { histogramQuantile, histogramWindow, type MetricsScrape } from './prom.js';
import { ChaosRig, PIPELINE, type RigOptions } from './rig.js';
import type { DaemonExit, LogSummaryLine } from '../daemon-process.js';
import { machine as hostMachine, type Machine } from '../machine.js';
import { TelemetryDriver } from './telemetry.js';
import type { CorruptOutcome } from '../../simulator/chaos/corrupt-frames.js';

/**
 * The frame of every chaos drill: start the gateway (ChaosRig), put it under a moderate load
 * (frames over HTTP, telemetry over MQTT), let it warm up, inject the scenario's fault, clear it,
 * measure how long recovery took, keep the load on a little longer, stop the load, wait for the
 * gateway to settle, and account for everything sent (ledger.ts). A scenario supplies only the
 * fault and its recovery measurements.
 */

export interface DrillOptions {
  /** How long the fault lasts (s). */
  durationS: number;
  /** Load before the fault (s). */
  warmupS: number;
  /** Load after recovery (s). */
  afterS: number;
  /** Frames per second over HTTP. */
  fps: number;
  /** Telemetry messages per second (2 readings each). */
  telemetryRate: number;
  /** How long to wait for the gateway to settle once the load stopped (s). */
  settleS: number;
  width: number;
  height: number;
  say: (line: string) => void;
}

export const DEFAULT_DRILL: Omit<DrillOptions, 'say'> = {
  durationS: 5,
  warmupS: 3,
  afterS: 3,
  fps: 10,
  telemetryRate: 50,
  settleS: 60,
  width: 640,
  height: 480,
};

/** What a scenario's fault code gets: the rig under load, and places to put its findings. */
export interface DrillContext {
  rig: ChaosRig;
  options: DrillOptions;
  telemetry: TelemetryDriver;
  pool: FramePool;
  /** Recovery times, seconds (null: did not recover within the drill). */
  recovery: Record<string, number | null>;
  /** Scenario-specific findings. */
  fault: Record<string, unknown>;
  /** Corrupt frames sent and what came back. */
  corrupt: CorruptOutcome[];
  /** Things the scenario found that must never happen. */
  failures: string[];
  /**
   * Losses the scenario declares unavoidable, each with its bound and reason (ledger.ts): the
   * report shows them as lost and names the allowance; anything beyond fails the drill.
   */
  allowances: Allowances;
  /**
   * Marks the end of a phase for the latency windows (a /metrics scrape): the window from the
   * previous mark to this one gets this name. The runner marks `warm-up` before inject(),
   * `recovery` after it and `after` at the end; a scenario marks its own phases in between
   * (e.g. `fault` when it clears the fault).
   */
  mark(phase: string): Promise<void>;
  say(line: string): void;
}

export interface Scenario {
  name: string;
  /** One line for --help and the docs. */
  summary: string;
  /** Rig settings and resources the scenario needs before the gateway starts; cleanup runs at the end. */
  prepare?(
    options: DrillOptions,
  ): Promise<{ rig?: RigOptions; cleanup?: () => Promise<void>; withOpcua?: boolean }>;
  /** Injects the fault, clears it, and measures recovery. */
  inject(ctx: DrillContext): Promise<void>;
  /**
   * Called once the load stopped, before the drill waits for the gateway to settle: a scenario
   * whose devices keep producing by themselves (the PLC) stops them here, so that what was
   * accepted and what was stored can be counted while nothing new arrives.
   */
  quiesce?(ctx: DrillContext): Promise<void>;
  /** Extra findings once the ledger is known (e.g. device-side gaps). */
  review?(ctx: DrillContext, ledger: Ledger): void;
}

export interface PhaseLatency {
  phase: string;
  /** Frames processed in the phase. */
  count: number;
  /** From vigil_latency_seconds (arrival to stored), interpolated in its buckets, ms. */
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
}

export interface DrillReport {
  scenario: string;
  summary: string;
  machine: Machine & { loadAvg1m: number };
  options: Omit<DrillOptions, 'say'>;
  startedAt: string;
  wallS: number;
  load: { frames: FrameRunSummary; telemetryMessagesAcked: number; telemetryUnacked: number };
  ledger: Ledger;
  recovery: Record<string, number | null>;
  fault: Record<string, unknown>;
  latency: PhaseLatency[];
  /** The daemon's own exact latency over its life (status), ms. */
  daemonLatencyMs: { count: number; p50: number; p95: number; p99: number; max: number } | undefined;
  daemon: {
    /** Distinct warn/error messages of the daemon (numbers masked) and their counts. */
    log: LogSummaryLine[];
    aliveAtEnd: boolean;
    exit: DaemonExit | undefined;
    errorLines: string[];
  };
  settled: boolean;
  failures: string[];
  passed: boolean;
}

export function machine(): DrillReport['machine'] {
  return {
    ...hostMachine(),
    // Other work on the machine skews every figure: the 1-minute load average when the run ended.
    loadAvg1m: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}

/**
 * Waits `ms`; throws if the process was interrupted meanwhile (bench/chaos/interrupt.ts), so that
 * a drill being undone does not go on to its next step: restart a broker, fill a disk.
 */
export async function sleep(ms: number): Promise<void> {
  await new Promise<void>((r) => setTimeout(r, ms));
  const signal = interrupted();
  if (signal) throw new Error(`interrupted by ${signal}`);
}

/** Seconds since `t0` (ms), to 0.01 s. */
export const secondsSince = (t0: number) => Math.round((Date.now() - t0) / 10) / 100;

/**
 * Seconds from `from` until `check` holds, polled every 50 ms; null (and a failure, when `must`)
 * when it did not within `timeoutS`.
 */
export async function waitSeconds(
  ctx: DrillContext,
  what: string,
  from: number,
  check: () => Promise<boolean>,
  timeoutS: number,
  must = true,
): Promise<number | null> {
  try {
    await ctx.rig.waitFor(what, check, timeoutS * 1000, 50);
    return secondsSince(from);
  } catch (err) {
    if (must) ctx.failures.push(`${what}: ${(err as Error).message.split('\n')[0]}`);
    else ctx.say(`  (${what}: not within ${timeoutS} s)`);
    return null;
  }
}

export async function runDrill(scenario: Scenario, options: DrillOptions): Promise<DrillReport> {
  const t0 = Date.now();
  const say = options.say;
  if (interrupted()) throw new Error(`interrupted by ${interrupted()}`);
  const prepared = (await scenario.prepare?.(options)) ?? {};
  let rig: ChaosRig | undefined;
  let telemetry: TelemetryDriver | undefined;
  let frames: FrameRun | undefined;
  // What the finally below undoes, also run on SIGINT/SIGTERM (bench/chaos/interrupt.ts), which
  // a finally does not see: the tmpfs, the ballast and the child processes would stay behind.
  const undo = async () => {
    if (frames) await frames.stop().catch(() => undefined);
    await telemetry?.close().catch(() => undefined);
    await rig?.stop().catch(() => undefined);
    await prepared.cleanup?.().catch(() => undefined);
  };
  const forget = onInterrupt(undo);
  try {
    say(`${scenario.name}: rendering frames, starting brokers and vigil run`);
    const pool = await renderFramePool(24, options.width, options.height);
    rig = await ChaosRig.start(prepared.rig ?? {});
    telemetry = await TelemetryDriver.connect({ url: rig.plant.url, rate: options.telemetryRate, assets: 4 });

    const marks: Array<{ phase: string; scrape: MetricsScrape }> = [];
    const r = rig;
    const ctx: DrillContext = {
      rig,
      options,
      telemetry,
      pool,
      recovery: {},
      fault: {},
      corrupt: [],
      failures: [],
      allowances: {},
      mark: async (phase) => {
        marks.push({ phase, scrape: await r.metrics() });
      },
      say,
    };
    say(
      `${scenario.name}: load ${options.fps} frames/s (${pool.width}x${pool.height} JPEG, ~${Math.round(pool.meanBytes / 1024)} KiB) ` +
        `and ${options.telemetryRate} telemetry messages/s; warm-up ${options.warmupS} s`,
    );
    const run = new FrameRun({
      url: rig.cameraUrl,
      rate: options.fps,
      pool,
      idPrefix: `chaos-${process.pid}`,
    });
    frames = run;
    telemetry.start();
    await ctx.mark('start');
    await sleep(options.warmupS * 1000);
    await ctx.mark('warm-up');
    await scenario.inject(ctx);
    await ctx.mark('recovery');
    await sleep(options.afterS * 1000);
    await ctx.mark('after');
    const frameSummary = await frames.stop();
    frames = undefined;
    await telemetry.stop(Math.max(10_000, options.settleS * 1000));
    await scenario.quiesce?.(ctx);
    say(`${scenario.name}: load stopped; waiting for the gateway to settle`);
    const settled = await settle(rig, options.settleS * 1000);
    const ledger = await computeLedger(rig, {
      frameRuns: [frameSummary],
      acceptedIds: new Set(run.accepted.keys()),
      corrupt: ctx.corrupt,
      telemetry,
      withOpcua: prepared.withOpcua ?? false,
      allowances: ctx.allowances,
    });
    scenario.review?.(ctx, ledger);
    const status = await rig.status();
    const latency = phaseLatencies(marks);
    const failures = [...ctx.failures, ...ledgerFailures(ledger)];
    if (!settled)
      failures.push(`the gateway did not settle within ${options.settleS} s after the load stopped`);
    const aliveAtEnd = rig.daemon.alive;
    if (!aliveAtEnd) failures.push(`vigil run exited during the drill: ${JSON.stringify(rig.daemon.exit)}`);
    const errorLines = rig.daemon.errorLines().slice(0, 20);
    const report: DrillReport = {
      scenario: scenario.name,
      summary: scenario.summary,
      machine: machine(),
      options: { ...options, say: undefined } as unknown as Omit<DrillOptions, 'say'>,
      startedAt: new Date(t0).toISOString(),
      wallS: 0,
      load: {
        frames: frameSummary,
        telemetryMessagesAcked: telemetry.ackedMessages,
        telemetryUnacked: telemetry.unacked,
      },
      ledger,
      recovery: ctx.recovery,
      fault: ctx.fault,
      latency,
      daemonLatencyMs: status?.pipelines?.[PIPELINE]?.latencyMs,
      daemon: { log: rig.daemon.logSummary(), aliveAtEnd, exit: undefined, errorLines },
      settled,
      failures,
      passed: failures.length === 0,
    };
    const exit = await rig.stop();
    rig = undefined;
    report.daemon.exit = exit;
    if (aliveAtEnd && exit && exit.code !== 0) {
      report.failures.push(`vigil run exited with ${exit.code} (${exit.signal}) on SIGTERM`);
      report.passed = false;
    }
    report.wallS = secondsSince(t0);
    return report;
  } finally {
    await undo();
    forget();
  }
}

function phaseLatencies(marks: Array<{ phase: string; scrape: MetricsScrape }>): PhaseLatency[] {
  const out: PhaseLatency[] = [];
  for (let i = 1; i < marks.length; i++) {
    const w = histogramWindow(marks[i - 1]!.scrape, marks[i]!.scrape, 'vigil_latency_seconds', {
      pipeline: PIPELINE,
    });
    const ms = (q: number) => {
      const v = histogramQuantile(w, q);
      return v === undefined ? null : Math.round(v * 10_000) / 10;
    };
    out.push({ phase: marks[i]!.phase, count: w.count, p50Ms: ms(0.5), p95Ms: ms(0.95), p99Ms: ms(0.99) });
  }
  return out;
}
