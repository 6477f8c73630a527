import { loadConfigFile, type LoadedConfig } from '../config/load.js';
import { ConfigError, errorMessage } from '../errors.js';
import { formatReport, reportJson } from '../doctor/report.js';
import { runDoctor } from '../doctor/runner.js';
import { VERSION } from '../version.js';
import { repoRoot } from './simulate/defaults.js';

/**
 * `vigil doctor [--config FILE] [--json] [--timeout-ms N]`: checks a gateway (Node.js, native
 * modules, engines and their providers or delegates, serial ports, brokers and registry, disk,
 * clock) and prints one row per check. Exit 0 when nothing failed (warnings allowed), 1 when a
 * check failed, 2 when the config cannot be read or is invalid.
 */

export interface DoctorCliOptions {
  config?: string;
  json?: boolean;
  timeoutMs: number;
}

export const DEFAULT_DOCTOR_TIMEOUT_MS = 5_000;

type Say = (text: string) => void;

export async function doctorCommand(
  opts: DoctorCliOptions,
  say: Say = (t) => process.stdout.write(t),
): Promise<number> {
  let loaded: LoadedConfig | undefined;
  if (opts.config) {
    try {
      loaded = await loadConfigFile(opts.config);
    } catch (err) {
      if (err instanceof ConfigError) {
        for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
        console.error(`${opts.config}: ${err.issues.length} problem${err.issues.length === 1 ? '' : 's'}`);
      } else console.error(errorMessage(err));
      return 2;
    }
  }
  const report = await runDoctor({ loaded, timeoutMs: opts.timeoutMs, root: repoRoot() });
  say(
    opts.json
      ? reportJson(report, VERSION)
      : formatReport(report, VERSION, process.stdout.isTTY ? process.stdout.columns : undefined),
  );
  return report.exitCode;
}
