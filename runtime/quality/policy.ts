import type { DataQualityFlag } from '../pipeline/result.js';
import type { ExpectationRule, Reading } from '../telemetry/reading.js';

/** Violations a flagged result lists at most (DataQualityFlag). */
export const MAX_FLAG_VIOLATIONS = 16;

/** Says why a reading broke a rule, in words (the source's ExpectationChecker knows the bounds). */
export type ExplainReading = (r: Reading, rule: ExpectationRule) => string;

/**
 * A sentence for a flag when the bounds of the rule are not at hand (the source declares no
 * expectation for the tag, or the rule is about the message the reading came in).
 */
export function explainFlag(r: Reading, rule: ExpectationRule): string {
  const what = `${r.asset}/${r.tag} = ${r.value}`;
  switch (rule) {
    case 'payload_fields':
      return `${what} came in a payload that lacks a required field`;
    case 'schema_drift':
      return `${what} came in a payload whose fields changed shape`;
    default:
      return `${what} broke ${rule}`;
  }
}

/** Whether a reading broke any data expectation. */
export function isFlagged(r: Reading): boolean {
  return r.flags !== undefined && r.flags.length > 0;
}

/**
 * The readings a `hold` pipeline hands its windower: the flagged ones left out, so that each tag
 * keeps its last good value. The same array when none is flagged (the common case).
 */
export function withoutFlagged(readings: readonly Reading[]): { kept: readonly Reading[]; dropped: number } {
  let i = 0;
  while (i < readings.length && !isFlagged(readings[i]!)) i++;
  if (i === readings.length) return { kept: readings, dropped: 0 };
  const kept = readings.slice(0, i);
  for (; i < readings.length; i++) if (!isFlagged(readings[i]!)) kept.push(readings[i]!);
  return { kept, dropped: readings.length - kept.length };
}

/**
 * What a result scored under the `flag` policy says of its input: the broken expectations of
 * the flagged readings whose values went into it, newest first, at most MAX_FLAG_VIOLATIONS.
 */
export function flagOf(readings: readonly Reading[], explain: ExplainReading = explainFlag): DataQualityFlag {
  const newestFirst = [...readings].sort(
    (a, b) => (b.sourceTime ?? b.receivedAt) - (a.sourceTime ?? a.receivedAt),
  );
  const violations: DataQualityFlag['violations'] = [];
  for (const r of newestFirst) {
    for (const rule of r.flags ?? []) {
      if (violations.length >= MAX_FLAG_VIOLATIONS) return { flagged: true, violations };
      violations.push({ source: r.source, asset: r.asset, tag: r.tag, rule, message: explain(r, rule) });
    }
  }
  return { flagged: true, violations };
}
