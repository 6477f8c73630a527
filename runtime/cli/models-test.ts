import { AcceptanceCancelled, runAcceptance } from '../acceptance/run.js';
import { formatReport } from '../acceptance/report.js';
import type { AcceptanceReport } from '../acceptance/types.js';
import type { Engine } from '../engines/engine.js';
import { loadEngine } from '../engines/load.js';
import { errorMessage } from '../errors.js';
import { silentLogger } from '../log.js';
import { loadModelPackage } from '../model/package.js';

/**
 * `vigil models test PACKAGE [--json]`: a package's acceptance tests (docs/ACCEPTANCE.md),
 * through the same loader, engine and preprocessing the pipelines use.
 *
 * Exit codes: 0 every check passed; 1 a check failed; 2 the package cannot be read or verified,
 * declares no acceptance tests, or its holdout cannot be used.
 */
export interface ModelsTestOptions {
  json?: boolean | undefined;
}

export async function modelsTestCommand(
  dir: string,
  opts: ModelsTestOptions,
  out: (text: string) => void = (t) => process.stdout.write(t + '\n'),
  err: (text: string) => void = (t) => process.stderr.write(t + '\n'),
): Promise<number> {
  const refuse = (message: string): number => {
    if (opts.json) out(JSON.stringify({ package: dir, error: message }, null, 2));
    err(message);
    return 2;
  };
  let pkg;
  try {
    pkg = await loadModelPackage(dir);
  } catch (e) {
    return refuse(`cannot test ${dir}: ${errorMessage(e)}`);
  }
  if (!pkg.manifest.acceptance)
    return refuse(
      `${pkg.dir} (${pkg.manifest.name}@${pkg.manifest.version}) declares no acceptance tests: its vigil.json has no ` +
        "acceptance section. Add a holdout and checks (docs/ACCEPTANCE.md), or build them with 'vigil models holdout'.",
    );
  let engine: Engine;
  try {
    // One thread: what a gateway gives a test beside its live pipelines.
    engine = await loadEngine(
      pkg.dir,
      {
        onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
        tflite: { threads: 1, xnnpack: true },
        warmupRuns: 1,
      },
      silentLogger(),
    );
  } catch (e) {
    return refuse(`cannot load ${pkg.dir}: ${errorMessage(e)}`);
  }
  let report: AcceptanceReport;
  try {
    report = await runAcceptance(pkg.dir, engine);
  } catch (e) {
    if (e instanceof AcceptanceCancelled) throw e;
    return refuse(`cannot run the acceptance tests of ${pkg.dir}: ${errorMessage(e)}`);
  } finally {
    await engine.close();
  }
  out(opts.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.passed ? 0 : 1;
}
