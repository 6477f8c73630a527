import type { LoadedConfig } from '../config/load.js';

/**
 * What `vigil doctor` produces: one row per thing checked on the gateway. `skip` means the check
 * had nothing to look at (no --config, nothing of that kind configured); it never fails a run.
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export type CheckGroup = 'system' | 'native' | 'engines' | 'serial' | 'network' | 'disk' | 'clock';

export const CHECK_GROUPS: readonly CheckGroup[] = [
  'system',
  'native',
  'engines',
  'serial',
  'network',
  'disk',
  'clock',
];

export interface CheckResult {
  group: CheckGroup;
  /** What was checked, e.g. 'node', 'better-sqlite3', 'defect onnx/webgpu', 'mqtt broker'. */
  name: string;
  status: CheckStatus;
  /** What was found, in one line. */
  detail: string;
  /** For warn and fail: what to do about it. */
  fix?: string | undefined;
  /** Machine-readable extras for --json (versions, providers, free bytes...). */
  data?: Record<string, unknown> | undefined;
}

/** An HTTP Date header seen while checking, for the clock check. */
export interface PeerDate {
  /** Who sent it, e.g. 'registry https://mlflow.plant:5000'. */
  from: string;
  /** The peer's clock (1 s resolution). */
  date: number;
  /** Local wall clock when the answer's headers arrived. */
  receivedAt: number;
}

export interface DoctorContext {
  /** The validated config, when --config was given. */
  loaded?: LoadedConfig | undefined;
  /** Bound on each network check (connect, CONNACK, HTTP answer). */
  timeoutMs: number;
  /** Where password and token variables are read from. */
  env: NodeJS.ProcessEnv;
  /** Root of the Vigil installation (holds models/ and dist/). */
  root: string;
  /** Filled by the network checks, read by the clock check. */
  peerDates: PeerDate[];
  /** Wall and monotonic clocks when the run began, to notice a clock step during it. */
  startedWall: number;
  startedMono: number;
}

export const STATUS_ORDER: Record<CheckStatus, number> = { fail: 0, warn: 1, ok: 2, skip: 3 };

/** Exit code of a run: 1 when any check failed, else 0 (warnings allowed). */
export function exitCodeOf(results: readonly CheckResult[]): 0 | 1 {
  return results.some((r) => r.status === 'fail') ? 1 : 0;
}
