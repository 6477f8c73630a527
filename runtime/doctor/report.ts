import type { CheckResult } from './check.js';
import type { DoctorReport } from './runner.js';

/**
 * The human form of a doctor report: one row per check (group, check, status, detail), with
 * what to do under every warning and failure, and a summary line that says the exit code.
 */

const MAX_NAME = 36;

/** Wraps text into lines of at most `width` characters (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  if (width <= 20 || text.length <= width) return [text];
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** `columns`: terminal width to wrap details at; undefined (not a terminal) keeps each on one line. */
export function formatReport(report: DoctorReport, version: string, columns?: number): string {
  const rows = report.checks;
  const groupW = Math.max(5, ...rows.map((r) => r.group.length));
  const nameW = Math.min(MAX_NAME, Math.max(5, ...rows.map((r) => r.name.length)));
  const statusW = 6;
  const indent = groupW + 2 + nameW + 2 + statusW + 2;
  const detailW = columns ? columns - indent : Infinity;
  const title = `vigil doctor ${version}: ${report.config ? `config ${report.config}` : 'no --config (shipped models and this machine only)'}`;
  const out: string[] = [
    ...wrap(title, columns ?? Infinity),
    '',
    `${'GROUP'.padEnd(groupW)}  ${'CHECK'.padEnd(nameW)}  ${'STATUS'.padEnd(statusW)}  DETAIL`,
  ];
  const pad = ' '.repeat(indent);
  for (const r of rows) {
    const name = r.name.length > nameW ? `${r.name.slice(0, nameW - 1)}…` : r.name;
    const [first = '', ...rest] = wrap(r.detail, detailW);
    out.push(`${r.group.padEnd(groupW)}  ${name.padEnd(nameW)}  ${r.status.padEnd(statusW)}  ${first}`);
    for (const l of rest) out.push(pad + l);
    if (r.fix && (r.status === 'warn' || r.status === 'fail')) {
      for (const [i, l] of wrap(r.fix, detailW - 5).entries())
        out.push(`${pad}${i === 0 ? 'fix: ' : '     '}${l}`);
    }
  }
  const s = report.summary;
  const verdict =
    `${s.ok} ok, ${s.warn} warn, ${s.fail} fail, ${s.skip} skipped in ${(report.durationMs / 1000).toFixed(1)} s: ` +
    (report.exitCode === 0
      ? s.warn > 0
        ? 'usable, see the warnings (exit 0)'
        : 'all good (exit 0)'
      : `${failedNames(rows)} failed (exit 1)`);
  out.push('', ...wrap(verdict, columns ?? Infinity));
  return out.join('\n') + '\n';
}

function failedNames(rows: CheckResult[]): string {
  const failed = rows.filter((r) => r.status === 'fail').map((r) => `${r.group}/${r.name}`);
  return failed.length <= 3
    ? failed.join(', ')
    : `${failed.slice(0, 3).join(', ')} and ${failed.length - 3} more`;
}

/** The --json form: the report with Vigil's version, stable field names. */
export function reportJson(report: DoctorReport, version: string): string {
  return JSON.stringify({ vigil: version, ...report }, null, 2) + '\n';
}
