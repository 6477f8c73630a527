#!/usr/bin/env node
/**
 * Exports run-to-failure trajectories of the simulated pump and spindle for the
 * predictive-maintenance models, without protocols and without waiting on the wall clock:
 *
 *   node dist/simulator/machines/export-runs.js --out DIR [--runs 10] [--seed 1] [--kind pump|spindle|both]
 *     [--sample-hours 0.5] [--mean-life-hours H] [--failure-mode random] [--step-seconds 10]
 *   node dist/simulator/machines/export-runs.js --out DIR --scenario simulator/scenarios/pump-run-to-failure.yaml
 *
 * Each run is a fresh machine with its own seed, run from new until it fails; its failure time is
 * drawn from the seed (a scenario's atHours is not used, so runs differ). Writes DIR/<kind>-runs.csv
 * (run_id, seed, time_h, the tags, state, failure_mode, hours_to_failure) and DIR/meta.json.
 */
import { mkdir, open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadScenarioFile } from '../scenario/load.js';
import { ManualTime, SimClock } from './clock.js';
import { FAILURE_MODES, type FailurePlan } from './failure.js';
import { deriveSeed } from './noise.js';
import { PROFILES, type RotatingKind } from './profiles.js';
import { RotatingMachine } from './rotating.js';

/** What one group of runs simulates. */
export interface RunSpec {
  kind: RotatingKind;
  failure: Omit<FailurePlan, 'atHours' | 'repairHours'>;
  stepSeconds?: number | undefined;
  modeDwellScale?: number | undefined;
}

export interface ExportRunsOptions {
  out: string;
  specs: RunSpec[];
  /** Runs per spec. */
  runs: number;
  seed: number;
  /** Simulated hours between rows. */
  sampleHours: number;
}

export interface RunSummary {
  run_id: number;
  kind: RotatingKind;
  seed: number;
  failure_mode: string;
  failure_h: number;
  onset_h: number;
  rows: number;
}

/** The columns of `<kind>-runs.csv`. */
export function runColumns(kind: RotatingKind): string[] {
  return [
    'run_id',
    'seed',
    'time_h',
    ...PROFILES[kind].tags.map((t) => t.name),
    'state',
    'failure_mode',
    'hours_to_failure',
  ];
}

/**
 * Simulates one machine from new to its failure and returns its CSV rows (without the header):
 * one row every `sampleHours` while it still runs.
 */
export function simulateRun(
  spec: RunSpec,
  seed: number,
  runId: number,
  sampleHours: number,
): { rows: string[]; summary: RunSummary } {
  const time = new ManualTime(0);
  const machine = new RotatingMachine({
    asset: `${spec.kind}-${runId}`,
    kind: spec.kind,
    clock: new SimClock({ acceleration: 1, now: time.now }),
    seed,
    failure: { ...spec.failure, repairHours: null },
    stepSeconds: spec.stepSeconds,
    modeDwellScale: spec.modeDwellScale,
  });
  const run = machine.currentRun()!;
  const failureH = run.failureAtSimSeconds / 3600;
  const tags = PROFILES[spec.kind].tags.map((t) => t.name);
  const rows: string[] = [];
  for (let k = 0; k * sampleHours < failureH; k++) {
    const hours = k * sampleHours;
    machine.advanceTo(hours * 3600);
    const v = machine.measure();
    const state = machine.truthNow().state;
    rows.push(
      [
        runId,
        seed,
        +hours.toFixed(6),
        ...tags.map((t) => v[t]),
        state,
        run.mode,
        +(failureH - hours).toFixed(6),
      ].join(','),
    );
  }
  return {
    rows,
    summary: {
      run_id: runId,
      kind: spec.kind,
      seed,
      failure_mode: run.mode,
      failure_h: failureH,
      onset_h: run.onsetSimSeconds / 3600,
      rows: rows.length,
    },
  };
}

/** Writes the CSV files and meta.json; returns what was written. */
export async function exportRuns(
  opts: ExportRunsOptions,
  progress?: (done: number, total: number) => void,
): Promise<{ files: string[]; runs: RunSummary[] }> {
  await mkdir(opts.out, { recursive: true });
  const files = new Map<RotatingKind, Awaited<ReturnType<typeof open>>>();
  const summaries: RunSummary[] = [];
  const total = opts.specs.length * opts.runs;
  try {
    let runId = 0;
    for (const spec of opts.specs) {
      let file = files.get(spec.kind);
      if (!file) {
        file = await open(path.join(opts.out, `${spec.kind}-runs.csv`), 'w');
        files.set(spec.kind, file);
        await file.write(runColumns(spec.kind).join(',') + '\n');
      }
      for (let i = 0; i < opts.runs; i++, runId++) {
        const seed = deriveSeed(opts.seed, runId);
        const { rows, summary } = simulateRun(spec, seed, runId, opts.sampleHours);
        await file.write(rows.join('\n') + '\n');
        summaries.push(summary);
        progress?.(runId + 1, total);
      }
    }
  } finally {
    for (const f of files.values()) await f.close();
  }
  const written = [...files.keys()].map((k) => path.join(opts.out, `${k}-runs.csv`));
  const meta = {
    generator: 'simulator/machines/export-runs.ts',
    seed: opts.seed,
    runsPerSpec: opts.runs,
    sampleHours: opts.sampleHours,
    specs: opts.specs,
    tags: Object.fromEntries(
      [...files.keys()].map((k) => [
        k,
        PROFILES[k].tags.map(({ name, unit, description }) => ({ name, unit, description })),
      ]),
    ),
    runs: summaries,
  };
  await writeFile(path.join(opts.out, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  return { files: written, runs: summaries };
}

function positive(name: string, value: string | undefined, fallback: number, integer: boolean): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw new Error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got '${value}'`);
  return n;
}

function parseCli(argv: string[]): ExportRunsOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      runs: { type: 'string' },
      seed: { type: 'string' },
      kind: { type: 'string' },
      scenario: { type: 'string' },
      'sample-hours': { type: 'string' },
      'mean-life-hours': { type: 'string' },
      'failure-mode': { type: 'string' },
      'step-seconds': { type: 'string' },
    },
    strict: true,
  });
  if (!values.out) throw new Error('--out DIR is required');
  const seedText = values.seed ?? '1';
  const seed = Number(seedText);
  if (!Number.isInteger(seed) || seed < 0)
    throw new Error(`--seed must be an integer >= 0, got '${seedText}'`);
  const common = {
    out: values.out,
    runs: positive('runs', values.runs, 10, true),
    seed,
    sampleHours: positive('sample-hours', values['sample-hours'], 0.5, false),
  };
  if (values.scenario !== undefined) {
    const scenario = loadScenarioFile(values.scenario);
    const specs: RunSpec[] = [];
    for (const m of Object.values(scenario.spec.machines)) {
      if (m.kind === 'cmapss-engine') continue;
      const plan = scenario.failurePlan(m);
      if (!plan) continue;
      specs.push({
        kind: m.kind,
        failure: plan,
        stepSeconds: m.stepSeconds,
        modeDwellScale: m.modeDwellScale,
      });
    }
    if (specs.length === 0)
      throw new Error(`${values.scenario} has no pump or spindle with a planned failure`);
    return { ...common, specs };
  }
  const kindText = values.kind ?? 'both';
  if (!['pump', 'spindle', 'both'].includes(kindText))
    throw new Error(`--kind must be pump, spindle or both, got '${kindText}'`);
  const mode = values['failure-mode'] ?? 'random';
  if (mode !== 'random' && !(FAILURE_MODES as readonly string[]).includes(mode))
    throw new Error(`--failure-mode must be random or one of ${FAILURE_MODES.join(', ')}, got '${mode}'`);
  const kinds: RotatingKind[] = kindText === 'both' ? ['pump', 'spindle'] : [kindText as RotatingKind];
  const specs = kinds.map((kind): RunSpec => ({
    kind,
    failure: {
      mode: mode as FailurePlan['mode'],
      meanLifeHours: positive(
        'mean-life-hours',
        values['mean-life-hours'],
        PROFILES[kind].meanLifeHours,
        false,
      ),
    },
    stepSeconds: positive('step-seconds', values['step-seconds'], 10, false),
  }));
  for (const s of specs)
    if (s.failure.mode !== 'random' && !PROFILES[s.kind].failureModes.includes(s.failure.mode))
      throw new Error(
        `a ${s.kind} has no failure mode '${s.failure.mode}' (${PROFILES[s.kind].failureModes.join(', ')})`,
      );
  return { ...common, specs };
}

async function main(): Promise<void> {
  let opts: ExportRunsOptions;
  try {
    opts = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(
      `export-runs: ${(err as Error).message}\n` +
        'usage: export-runs --out DIR [--runs N] [--seed S] [--kind pump|spindle|both] [--sample-hours H]\n' +
        '         [--mean-life-hours H] [--failure-mode MODE] [--step-seconds S]\n' +
        '       export-runs --out DIR --scenario FILE [--runs N] [--seed S] [--sample-hours H]\n',
    );
    process.exitCode = 2;
    return;
  }
  const started = Date.now();
  const { files, runs } = await exportRuns(opts, (done, total) => {
    if (done % 10 === 0 || done === total) process.stderr.write(`export-runs: ${done}/${total} runs\n`);
  });
  const hours = runs.reduce((s, r) => s + r.failure_h, 0);
  process.stderr.write(
    `export-runs: ${runs.length} runs, ${Math.round(hours)} simulated hours, into ${files.join(', ')} ` +
      `in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
}

// Run only as a program, not when imported (by tests).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`export-runs failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
