import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { SimError } from '../machines/errors.js';
import { repoRoot } from '../machines/paths.js';
import { Scenario } from './scenario.js';
import { ScenarioSpec, crossIssues } from './schema.js';

/** A problem in a scenario file, located by a dotted path (`machines.pump-1.failure.atHours`). */
export interface ScenarioIssue {
  path: string;
  message: string;
}

export class ScenarioError extends SimError {
  readonly issues: ScenarioIssue[];
  constructor(file: string, issues: ScenarioIssue[]) {
    super(
      'SIM_ERR_SCENARIO_INVALID',
      `scenario ${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n` +
        issues.map((i) => `${i.path}: ${i.message}`).join('\n'),
    );
    this.name = 'ScenarioError';
    this.issues = issues;
  }
}

function zodIssues(error: z.ZodError): ScenarioIssue[] {
  return error.issues.map((issue) => {
    const where = issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys')
      message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')} (check the spelling; see docs/SIMULATOR.md)`;
    else if (issue.code === 'invalid_union' && 'discriminator' in issue && issue.discriminator === 'kind')
      message = `unknown kind; use one of ${kindsAt(issue.path)}`;
    return { path: where, message };
  });
}

function kindsAt(p: ReadonlyArray<PropertyKey>): string {
  return p[0] === 'faults'
    ? 'spike, stuck, drift, dropout, status, server-restart, cable-pull, broker-disconnect'
    : 'pump, spindle, cmapss-engine';
}

/** Validates a parsed scenario; throws ScenarioError listing every problem as `path: message`. */
export function parseScenario(raw: unknown, file = '(inline)'): Scenario {
  const parsed = ScenarioSpec.safeParse(raw ?? {});
  if (!parsed.success) throw new ScenarioError(file, zodIssues(parsed.error));
  const issues = crossIssues(parsed.data);
  if (issues.length > 0) throw new ScenarioError(file, issues);
  return new Scenario(parsed.data, file);
}

/** Parses and validates scenario YAML; syntax errors are reported with line and column. */
export function loadScenarioText(text: string, file = '(inline)'): Scenario {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ScenarioError(
      file,
      doc.errors.map((e) => ({
        path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(yaml)',
        message: e.message.split('\n')[0] ?? e.message,
      })),
    );
  return parseScenario(doc.toJS(), file);
}

/** Reads and validates a scenario file. */
export function loadScenarioFile(file: string): Scenario {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SimError(
      'SIM_ERR_SCENARIO_READ',
      code === 'ENOENT'
        ? `scenario file ${abs} does not exist`
        : `cannot read scenario file ${abs}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return loadScenarioText(text, abs);
}

/** The path of a scenario shipped in simulator/scenarios/ (`default`, `factory-faults`...). */
export function shippedScenario(name: string): string {
  return path.join(repoRoot(), 'simulator', 'scenarios', `${name}.yaml`);
}
