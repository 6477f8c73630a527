import type { LoadedConfig } from '../config/load.js';
import { errorMessage } from '../errors.js';
import { CHECK_GROUPS, exitCodeOf, type CheckGroup, type CheckResult, type DoctorContext } from './check.js';
import { clockChecks } from './clock.js';
import { diskChecks } from './disk.js';
import { engineChecks } from './engines.js';
import { nativeChecks, probeNativeModules } from './native.js';
import { networkChecks } from './network.js';
import { serialSourceChecks, visiblePortsCheck } from './serial.js';
import { systemChecks } from './system.js';

export interface DoctorOptions {
  loaded?: LoadedConfig | undefined;
  timeoutMs: number;
  root: string;
  env?: NodeJS.ProcessEnv;
}

export interface DoctorReport {
  config: string | null;
  startedAt: string;
  durationMs: number;
  summary: Record<'ok' | 'warn' | 'fail' | 'skip', number>;
  exitCode: 0 | 1;
  checks: CheckResult[];
}

/** A check group that throws is one failed row, never a doctor that stops half-way. */
async function guarded(group: CheckGroup, fn: () => Promise<CheckResult[]>): Promise<CheckResult[]> {
  try {
    return await fn();
  } catch (err) {
    return [
      {
        group,
        name: group,
        status: 'fail',
        detail: `the check itself failed: ${errorMessage(err)}`,
        fix: 'report this with the output of vigil doctor --json',
      },
    ];
  }
}

/**
 * Runs every check. Independent groups run at once (the slow ones start processes or wait on
 * the network); the clock goes last because it compares with the Date headers the network
 * checks saw and looks for clock steps over the whole run.
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const ctx: DoctorContext = {
    loaded: options.loaded,
    timeoutMs: options.timeoutMs,
    env: options.env ?? process.env,
    root: options.root,
    peerDates: [],
    startedWall: Date.now(),
    startedMono: performance.now(),
  };
  const startedAt = new Date(ctx.startedWall).toISOString();
  const native = probeNativeModules(ctx);
  const [nativeRows, engineRows, serialRows, networkRows, diskRows] = await Promise.all([
    guarded('native', async () => nativeChecks(await native)),
    guarded('engines', () => engineChecks(ctx)),
    guarded('serial', async () => [
      visiblePortsCheck((await native).get('@serialport/bindings-cpp')),
      ...(await serialSourceChecks(ctx)),
    ]),
    guarded('network', () => networkChecks(ctx)),
    guarded('disk', () => diskChecks(ctx)),
  ]);
  const clockRows = await guarded('clock', () => clockChecks(ctx));
  const checks = [
    ...systemChecks(),
    ...nativeRows,
    ...engineRows,
    ...serialRows,
    ...networkRows,
    ...diskRows,
    ...clockRows,
  ].sort((a, b) => CHECK_GROUPS.indexOf(a.group) - CHECK_GROUPS.indexOf(b.group));
  const summary = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of checks) summary[c.status]++;
  return {
    config: options.loaded?.file ?? null,
    startedAt,
    durationMs: Math.round(performance.now() - ctx.startedMono),
    summary,
    exitCode: exitCodeOf(checks),
    checks,
  };
}
