/** What `vigil models test` prints and the rollout controller judges by (docs/ACCEPTANCE.md). */

export interface FailingExample {
  /** The holdout sample: a frame's file name, a telemetry sample's id. */
  sample: string;
  /** What went wrong on it, in numbers. */
  detail: string;
}

export interface CheckResult {
  /** Stable name: outputs.shape, invariance.brightness, monotonic.vibration_rms, minMetrics.recall... */
  id: string;
  /** What the check asks, in words. */
  title: string;
  expected: string;
  measured: string;
  passed: boolean;
  /** Samples that failed it, the first few (failingCount says how many in all). */
  failing: FailingExample[];
  failingCount: number;
}

export interface AcceptanceReport {
  /** The package folder. */
  package: string;
  model: string;
  version: string;
  backend: string;
  provider: string;
  holdout: { format: 'images' | 'telemetry'; samples: number; description?: string | undefined };
  checks: CheckResult[];
  passed: boolean;
  /** Inferences run for all checks together. */
  inferences: number;
  durationMs: number;
}

/** The failed checks in one line, for a rollout reason, a registry tag or a log line. */
export function failureSummary(report: AcceptanceReport): string {
  const failed = report.checks.filter((c) => !c.passed);
  if (failed.length === 0) return `all ${report.checks.length} checks passed`;
  const parts = failed.map((c) => {
    const first = c.failing[0];
    return `${c.id}: ${c.measured} (expected ${c.expected})${first ? `, e.g. ${first.sample}: ${first.detail}` : ''}`;
  });
  return `${failed.length} of ${report.checks.length} checks failed on ${report.holdout.samples} holdout samples: ${parts.join('; ')}`;
}
