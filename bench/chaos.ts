/**
 * Chaos drills (issue 8): one fault at a time, injected into a real gateway under load, with an
 * account of what was sent, accepted, stored and delivered, what was lost (must be nothing the
 * gateway accepted) and how long recovery took. docs/CHAOS.md explains each drill and its output.
 *
 * Run: npm run build && npm run chaos -- --scenario NAME [options]
 *   --scenario NAME   broker-restart | opcua-restart | corrupt-frames | disk-full | clock-jump | all
 *   --duration S      how long the fault lasts (default 5)
 *   --warmup S        load before the fault (default 3)
 *   --after S         load after recovery (default 3)
 *   --fps N           frames per second over HTTP (default 10)
 *   --telemetry N     telemetry messages per second, 2 readings each (default 50)
 *   --settle S        wait for the gateway to settle after the load (default 60)
 *   --signal KILL|TERM  how broker-restart stops the broker (default KILL)
 *   --json FILE       write the reports as JSON
 * Exits 1 when a drill found accepted data lost, or anything else it must never find.
 * Needs Mosquitto; disk-full needs root (it mounts a small tmpfs); clock-jump needs the Debian
 * package faketime. SIGINT or SIGTERM stops the drill and undoes it (load, daemon, brokers,
 * tmpfs and ballast) before exiting with 130 or 143.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_DRILL,
  runDrill,
  type DrillOptions,
  type DrillReport,
  type Scenario,
} from './chaos/drill.js';
import { cleanUpOnSignals, interrupted } from './chaos/interrupt.js';
import { formatDrill } from './chaos/report.js';
import { brokerRestart } from './chaos/scenarios/broker-restart.js';
import { clockJump } from './chaos/scenarios/clock-jump.js';
import { corruptFrames } from './chaos/scenarios/corrupt-frames.js';
import { diskFull } from './chaos/scenarios/disk-full.js';
import { opcuaRestart } from './chaos/scenarios/opcua-restart.js';

export const SCENARIOS: Record<string, (args: ParsedArgs) => Scenario> = {
  'broker-restart': (a) => brokerRestart(a.signal),
  'opcua-restart': () => opcuaRestart(),
  'corrupt-frames': () => corruptFrames(),
  'disk-full': () => diskFull(),
  'clock-jump': () => clockJump(),
};

export interface ParsedArgs {
  scenarios: string[];
  options: DrillOptions;
  signal: 'SIGKILL' | 'SIGTERM';
  json: string | undefined;
}

const OPTIONS = [
  '--scenario',
  '--duration',
  '--warmup',
  '--after',
  '--fps',
  '--telemetry',
  '--settle',
  '--signal',
  '--json',
];

function value(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function num(args: string[], name: string, fallback: number): number {
  const v = value(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} takes a number, not ${v}`);
  return n;
}

const started = Date.now();
/** Progress lines with the seconds since the start, so that a slow step shows. */
const progress = (line: string) =>
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);

export function parseArgs(args: string[], say: (l: string) => void = progress): ParsedArgs {
  // Every argument is `--option value`: a misspelt option fails instead of being ignored.
  for (let i = 0; i < args.length; i += 2) {
    if (!OPTIONS.includes(args[i]!))
      throw new Error(`unknown option ${args[i]}: the chaos drill takes ${OPTIONS.join(', ')}`);
    if (args[i + 1] === undefined) throw new Error(`${args[i]} needs a value`);
  }
  const scenario = value(args, '--scenario');
  if (!scenario) throw new Error(`--scenario is required: one of ${Object.keys(SCENARIOS).join(', ')}, all`);
  const scenarios = scenario === 'all' ? Object.keys(SCENARIOS) : scenario.split(',');
  for (const s of scenarios)
    if (!SCENARIOS[s])
      throw new Error(`unknown scenario ${s}: one of ${Object.keys(SCENARIOS).join(', ')}, all`);
  const signal = (value(args, '--signal') ?? 'KILL').toUpperCase().replace(/^SIG/, '');
  if (signal !== 'KILL' && signal !== 'TERM') throw new Error(`--signal takes KILL or TERM, not ${signal}`);
  return {
    scenarios,
    signal: `SIG${signal}` as 'SIGKILL' | 'SIGTERM',
    json: value(args, '--json'),
    options: {
      ...DEFAULT_DRILL,
      durationS: num(args, '--duration', DEFAULT_DRILL.durationS),
      warmupS: num(args, '--warmup', DEFAULT_DRILL.warmupS),
      afterS: num(args, '--after', DEFAULT_DRILL.afterS),
      fps: num(args, '--fps', DEFAULT_DRILL.fps),
      telemetryRate: num(args, '--telemetry', DEFAULT_DRILL.telemetryRate),
      settleS: num(args, '--settle', DEFAULT_DRILL.settleS),
      say,
    },
  };
}

async function main(): Promise<void> {
  const parsed = parseArgs(process.argv.slice(2));
  // A killed drill must not leave the tmpfs mounted, the ballast on it, or its child processes.
  cleanUpOnSignals((line) => console.error(`\nchaos: ${line}`));
  const reports: DrillReport[] = [];
  const broken: string[] = [];
  for (const name of parsed.scenarios) {
    if (interrupted()) break;
    try {
      const report = await runDrill(SCENARIOS[name]!(parsed), parsed.options);
      reports.push(report);
      console.log('\n' + formatDrill(report) + '\n');
    } catch (err) {
      // Interrupted: the signal handler is undoing the drill and exits when it is done.
      if (interrupted()) break;
      // A drill that could not run (no root for a tmpfs, no libfaketime...) says why; the others still run.
      broken.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      console.error(`\nchaos: ${name} could not run: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  // The signal handler exits (130/143) once it has undone the drill; no verdict for a cut-short run.
  if (interrupted()) return;
  if (parsed.json) {
    await writeFile(parsed.json, JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2) + '\n');
    console.log(`reports written to ${parsed.json}`);
  }
  const failed = reports.filter((r) => !r.passed).map((r) => r.scenario);
  if (failed.length > 0 || broken.length > 0) {
    if (failed.length > 0) console.error(`chaos: ${failed.join(', ')} FAILED`);
    if (broken.length > 0)
      console.error(`chaos: could not run: ${broken.map((b) => b.split(':')[0]).join(', ')}`);
    process.exitCode = 1;
  } else {
    // A loss a drill allowed in advance is still a loss: say so rather than "nothing lost".
    const allowed = reports
      .filter((r) => r.ledger.frames.lost > 0)
      .map((r) => `${r.scenario}: ${r.ledger.frames.lost} frames, ${r.ledger.frames.allowance?.why ?? ''}`);
    console.log(
      `chaos: ${reports.map((r) => r.scenario).join(', ')} passed: ` +
        (allowed.length === 0
          ? 'nothing accepted was lost'
          : `nothing accepted was lost beyond what the drills allow (${allowed.join('; ')})`),
    );
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    // Interrupted: the signal handler exits (130/143) once it has undone what was started.
    if (interrupted()) return;
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
