import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { VigilError, errorMessage, type Issue } from '../errors.js';
import type { ImageManifest, Manifest, TelemetryManifest } from '../model/manifest.js';
import { zodIssues } from '../validation.js';

/**
 * A package's holdout set, read and checked against its manifest. The files were verified with
 * the rest of the package (their sha256 is in vigil.json) when the engine loaded it; here their
 * content must make sense: labels the model has, rows with the model's tags, enough steps for a
 * window.
 */

export interface ImageSample {
  id: string;
  label: string;
  /** The encoded frame (PNG or JPEG), as a camera would deliver it. */
  bytes: Buffer;
}

export interface TelemetrySample {
  id: string;
  /** RUL in the output's unit, or 1/0 for "fails within the horizon" / "anomalous". */
  label: number;
  /** Raw values per step, oldest first, in `columns` order. */
  rows: number[][];
}

export type LoadedHoldout =
  | { format: 'images'; description: string | undefined; samples: ImageSample[] }
  | {
      format: 'telemetry';
      description: string | undefined;
      columns: string[];
      samples: TelemetrySample[];
    };

/** The JSON file of a telemetry holdout. */
export const TelemetryHoldoutFile = z.strictObject({
  description: z.string().optional(),
  columns: z
    .array(z.string().min(1))
    .min(1)
    .describe("The model's tags and its axis (the counter tag, or `time` in seconds), in row order"),
  samples: z
    .array(
      z.strictObject({
        id: z.string().min(1),
        label: z.number(),
        rows: z.array(z.array(z.number())).min(1),
      }),
    )
    .min(1),
});
export type TelemetryHoldoutFile = z.infer<typeof TelemetryHoldoutFile>;

/**
 * Limits on a holdout (docs/ACCEPTANCE.md). The rollout runs the tests while promotes and
 * rollbacks of the model wait, and reads the holdout in the daemon's own process: a holdout is a
 * small sample of evidence, not a test set. The shipped ones have 40 samples and under 1 MiB.
 */
export const MAX_HOLDOUT_SAMPLES = 1000;
/** The holdout's files together: labels.csv and its frames, or the telemetry JSON. */
export const MAX_HOLDOUT_BYTES = 16 * 1024 * 1024;
/** Rows of one telemetry sample: each inference replays them all through a Windower. */
export const MAX_SAMPLE_ROWS = 10_000;

function mib(bytes: number): string {
  return `${Number((bytes / 1024 / 1024).toFixed(2))} MiB`;
}

function tooManySamples(file: string, n: number): Issue {
  return {
    path: file,
    message: `${n} samples; a holdout has at most ${MAX_HOLDOUT_SAMPLES} (the rollout waits for its tests): keep a representative few hundred`,
  };
}

function tooLarge(where: string, what: string, bytes: number): Issue {
  return {
    path: where,
    message: `${what} ${mib(bytes)}; a holdout is at most ${mib(MAX_HOLDOUT_BYTES)} (the rollout waits for its tests): keep fewer or smaller samples (frames at the model's input size)`,
  };
}

/** The size of a package file, or a HoldoutError naming it. */
async function sizeOf(dir: string, file: string, where: string): Promise<number> {
  try {
    return (await stat(path.join(dir, file))).size;
  } catch (err) {
    throw invalid(dir, [{ path: where, message: `'${file}' cannot be read: ${errorMessage(err)}` }]);
  }
}

/** The column that holds a time axis' timestamps, in seconds. */
export const TIME_COLUMN = 'time';

/** A holdout that cannot be used: every problem, as `where: message`. */
export class HoldoutError extends VigilError {
  constructor(
    dir: string,
    readonly issues: Issue[],
  ) {
    super(
      'VIGIL_ERR_MANIFEST_INVALID',
      `model package ${dir}: its acceptance holdout cannot be used\n` +
        issues.map((i) => `${i.path}: ${i.message}`).join('\n'),
    );
    this.name = 'HoldoutError';
  }
}

function invalid(dir: string, issues: Issue[]): HoldoutError {
  return new HoldoutError(dir, issues);
}

export async function loadHoldout(dir: string, m: Manifest): Promise<LoadedHoldout> {
  const a = m.acceptance;
  if (!a) throw invalid(dir, [{ path: 'acceptance', message: 'the package declares no acceptance tests' }]);
  return a.holdout.format === 'images'
    ? loadImages(dir, m as ImageManifest, a.holdout.labels, a.holdout.description)
    : loadTelemetry(dir, m as TelemetryManifest, a.holdout.file, a.holdout.description);
}

async function readText(dir: string, file: string, where: string): Promise<string> {
  try {
    return await readFile(path.join(dir, file), 'utf8');
  } catch (err) {
    throw invalid(dir, [{ path: where, message: `'${file}' cannot be read: ${errorMessage(err)}` }]);
  }
}

async function loadImages(
  dir: string,
  m: ImageManifest,
  labelsFile: string,
  description: string | undefined,
): Promise<LoadedHoldout> {
  const where = 'acceptance.holdout.labels';
  // Sizes first: nothing is read from a holdout too large to test.
  let bytes = await sizeOf(dir, labelsFile, where);
  if (bytes > MAX_HOLDOUT_BYTES) throw invalid(dir, [tooLarge(where, `${labelsFile} is`, bytes)]);
  const lines = (await readText(dir, labelsFile, where)).split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = (lines.shift() ?? '').split(',').map((h) => h.trim());
  const fileCol = header.indexOf('file');
  const labelCol = header.indexOf('label');
  if (fileCol < 0 || labelCol < 0)
    throw invalid(dir, [
      {
        path: where,
        message: `${labelsFile} needs a header with the columns file and label, got '${header.join(',')}'`,
      },
    ]);
  const base = path.posix.dirname(labelsFile);
  const labels = m.postprocessing.labels;
  const issues: Issue[] = [];
  const listed: Array<{ id: string; label: string; rel: string; at: string }> = [];
  for (const [i, line] of lines.entries()) {
    const cells = line.split(',').map((c) => c.trim());
    const file = cells[fileCol] ?? '';
    const label = cells[labelCol] ?? '';
    const rel = base === '.' ? file : `${base}/${file}`;
    const at = `${labelsFile} line ${i + 2}`;
    if (!labels.includes(label)) {
      issues.push({
        path: at,
        message: `label '${label}' is not one of the model's labels (${labels.join(', ')})`,
      });
      continue;
    }
    if (!Object.hasOwn(m.files, rel)) {
      issues.push({
        path: at,
        message: `'${rel}' is not listed in vigil.json files, so its sha256 is not checked`,
      });
      continue;
    }
    listed.push({ id: file, label, rel, at });
  }
  if (listed.length === 0 && issues.length === 0)
    issues.push({ path: where, message: `${labelsFile} lists no frames` });
  if (lines.length > MAX_HOLDOUT_SAMPLES) issues.push(tooManySamples(labelsFile, lines.length));
  if (issues.length > 0) throw invalid(dir, issues);
  for (const f of listed) bytes += await sizeOf(dir, f.rel, f.at);
  if (bytes > MAX_HOLDOUT_BYTES)
    throw invalid(dir, [tooLarge(where, `${labelsFile} and its ${listed.length} frames are`, bytes)]);
  const samples: ImageSample[] = [];
  for (const f of listed)
    samples.push({ id: f.id, label: f.label, bytes: await readFile(path.join(dir, f.rel)) });
  return { format: 'images', description, samples };
}

async function loadTelemetry(
  dir: string,
  m: TelemetryManifest,
  file: string,
  description: string | undefined,
): Promise<LoadedHoldout> {
  const where = 'acceptance.holdout.file';
  const bytes = await sizeOf(dir, file, where);
  if (bytes > MAX_HOLDOUT_BYTES) throw invalid(dir, [tooLarge(where, `'${file}' is`, bytes)]);
  let json: unknown;
  try {
    json = JSON.parse(await readText(dir, file, where));
  } catch (err) {
    if (err instanceof HoldoutError) throw err;
    throw invalid(dir, [{ path: where, message: `'${file}' is not valid JSON: ${errorMessage(err)}` }]);
  }
  const parsed = TelemetryHoldoutFile.safeParse(json);
  if (!parsed.success)
    throw invalid(
      dir,
      zodIssues(parsed.error).map((i) => ({ path: `${file}: ${i.path}`, message: i.message })),
    );
  const h = parsed.data;
  const pre = m.preprocessing;
  const issues: Issue[] = [];
  const axis = pre.axis.type === 'counter' ? pre.axis.tag : TIME_COLUMN;
  for (const needed of [...pre.tags, axis])
    if (!h.columns.includes(needed))
      issues.push({
        path: `${file}: columns`,
        message: `'${needed}' is missing (the model reads ${pre.tags.join(', ')}; its axis is ${axis})`,
      });
  if (h.samples.length > MAX_HOLDOUT_SAMPLES)
    issues.push(tooManySamples(`${file}: samples`, h.samples.length));
  // A shuffle swaps a tag's values between samples: with one sample it compares it with itself.
  m.acceptance?.checks.invariance?.forEach((inv, i) => {
    if (inv.kind === 'shuffle' && h.samples.length < 2)
      issues.push({
        path: `acceptance.checks.invariance.${i}`,
        message: `invariance.shuffle.${inv.tag} swaps ${inv.tag}'s values between holdout samples, and ${file} has ${h.samples.length} sample: it would be compared with itself and always pass; give the holdout at least 2 samples (many more for a meaningful check)`,
      });
  });
  const post = m.postprocessing;
  h.samples.forEach((s, i) => {
    const at = `${file}: samples.${i} (${s.id})`;
    if (s.rows.length < pre.window)
      issues.push({
        path: at,
        message: `${s.rows.length} rows, fewer than the window of ${pre.window} steps`,
      });
    if (s.rows.length > MAX_SAMPLE_ROWS)
      issues.push({
        path: at,
        message: `${s.rows.length} rows; a sample has at most ${MAX_SAMPLE_ROWS} (each inference replays them all): keep the rows that lead up to its window`,
      });
    const bad = s.rows.findIndex((r) => r.length !== h.columns.length);
    if (bad >= 0)
      issues.push({
        path: `${at}.rows.${bad}`,
        message: `${s.rows[bad]!.length} values for ${h.columns.length} columns`,
      });
    if (post.type === 'rul' ? s.label < 0 : s.label !== 0 && s.label !== 1)
      issues.push({
        path: `${at}.label`,
        message:
          post.type === 'rul'
            ? `${s.label}: a remaining useful life is not negative`
            : `${s.label}: a ${post.type} label is 1 (${post.type === 'anomaly' ? 'anomalous' : 'fails within the horizon'}) or 0`,
      });
  });
  if (issues.length > 0) throw invalid(dir, issues);
  return {
    format: 'telemetry',
    description: description ?? h.description,
    columns: h.columns,
    samples: h.samples,
  };
}
