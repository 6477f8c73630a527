import type { AcceptanceReport } from './types.js';

/**
 * The report `vigil models test` prints: one block per check (what it asks, expected, measured,
 * PASS or FAIL) with the failing samples named, and a verdict line.
 */
export function formatReport(r: AcceptanceReport): string {
  const lines: string[] = [];
  lines.push(`${r.model}@${r.version}  ${r.package}`);
  lines.push(
    `  engine ${r.backend}/${r.provider}; holdout: ${r.holdout.samples} ${r.holdout.format === 'images' ? 'frames' : 'telemetry samples'}` +
      (r.holdout.description ? ` (${r.holdout.description})` : ''),
  );
  lines.push('');
  const idWidth = Math.max(...r.checks.map((c) => c.id.length), 5);
  for (const c of r.checks) {
    lines.push(`${c.passed ? 'PASS' : 'FAIL'}  ${c.id.padEnd(idWidth)}  ${c.title}`);
    lines.push(`      ${''.padEnd(idWidth)}  expected: ${c.expected}`);
    lines.push(`      ${''.padEnd(idWidth)}  measured: ${c.measured}`);
    if (!c.passed) {
      for (const f of c.failing) lines.push(`      ${''.padEnd(idWidth)}    - ${f.sample}: ${f.detail}`);
      if (c.failingCount > c.failing.length)
        lines.push(`      ${''.padEnd(idWidth)}    ... and ${c.failingCount - c.failing.length} more`);
    }
  }
  lines.push('');
  const failed = r.checks.filter((c) => !c.passed).length;
  lines.push(
    failed === 0
      ? `PASSED: ${r.checks.length} of ${r.checks.length} checks (${r.inferences} inferences, ${(r.durationMs / 1000).toFixed(1)} s)`
      : `FAILED: ${failed} of ${r.checks.length} checks failed (${r.inferences} inferences, ${(r.durationMs / 1000).toFixed(1)} s)`,
  );
  return lines.join('\n');
}
