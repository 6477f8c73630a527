#!/usr/bin/env node
/**
 * `vigil models reference PACKAGE`: computes a model package's reference distributions for drift
 * monitoring (docs/DRIFT.md) and writes them into its vigil.json (referenceStats). The samples
 * are the data the model was built from, run through Vigil's own preprocessing, engine and
 * feature extraction, so that the reference and the live windows are computed the same way:
 *
 * - image models: frames rendered by the simulator camera (the generator of the training set)
 *   with a held-out seed, at a production-like defect rate (training sets are rebalanced; their
 *   class mix would read as drift on any real line);
 * - C-MAPSS models (tags s1..s21): every training engine of NASA's train_FD001/FD003 files;
 * - pump and spindle models: the simulator's run-to-failure runs with the training seed.
 *
 * vigil.json is not in its own sha256 list, so the package stays valid; a signed package
 * (vigil.json.sig) is refused, since the new manifest would need a new signature.
 *
 *   node dist/runtime/cli/models-reference.js PACKAGE [--data camera|cmapss|pump|spindle]
 *     [--count N] [--seed S] [--defect-rate R] [--cmapss-dir DIR] [--runs N] [--dry-run]
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { renderFrame } from '../../simulator/camera/render.js';
import { Rng } from '../../simulator/camera/rng.js';
import { DEFECT_CLASSES, type DefectClass } from '../../simulator/camera/types.js';
import { simulateRun, runColumns } from '../../simulator/machines/export-runs.js';
import { cmapssDir } from '../../simulator/machines/cmapss-data.js';
import { deriveSeed } from '../../simulator/machines/noise.js';
import { PROFILES } from '../../simulator/machines/profiles.js';
import { ReferenceBuilder, scoreFrame, scoreReadings } from '../drift/reference-builder.js';
import type { Engine } from '../engines/engine.js';
import { loadEngine } from '../engines/load.js';
import { VigilError, errorMessage } from '../errors.js';
import { silentLogger } from '../log.js';
import { Manifest, isImageManifest, isTelemetryManifest, type TelemetryManifest } from '../model/manifest.js';
import { MANIFEST_FILE, SIGNATURE_FILE, loadModelPackage } from '../model/package.js';
import type { Reading } from '../telemetry/reading.js';
import { isSignedPackage } from '../model/signature.js';

export type ReferenceData =
  | { type: 'camera'; count: number; seed: number; defectRate: number; width: number; height: number }
  | { type: 'cmapss'; dir: string; subsets: string[] }
  | { type: 'pump' | 'spindle'; runs: number; seed: number };

/** Seeds of the defect model's sets: train 101, validation 202, test 303 (models/defect/build.sh). */
export const CAMERA_REFERENCE_SEED = 404;
/** The machine models' training seed (models/machine-failure/common.sh) and runs per kind. */
export const MACHINE_TRAIN_SEED = 1001;
const MACHINE_TRAIN_RUNS = 200;

/** The data a shipped model was built from, as its manifest tells. */
export function defaultData(m: Manifest, over: Partial<Record<string, string>> = {}): ReferenceData {
  const int = (k: string, d: number) => (over[k] === undefined ? d : Number(over[k]));
  if (isImageManifest(m))
    return {
      type: 'camera',
      count: int('count', 3000),
      seed: int('seed', CAMERA_REFERENCE_SEED),
      defectRate: over['defect-rate'] === undefined ? 0.2 : Number(over['defect-rate']),
      width: 640,
      height: 480,
    };
  if (!isTelemetryManifest(m)) throw new Error(`${m.name} is neither an image nor a telemetry model`);
  const tags = m.preprocessing.tags;
  const kind = over['data'] ?? (tags.includes('s1') ? 'cmapss' : tags.includes('load') ? 'spindle' : 'pump');
  if (kind === 'cmapss')
    return {
      type: 'cmapss',
      // $VIGIL_CMAPSS_DIR, else the shared dataset folders; says where it looked when none has it.
      dir: over['cmapss-dir'] ?? cmapssDir(),
      subsets: ['FD001', 'FD003'],
    };
  if (kind === 'pump' || kind === 'spindle')
    return { type: kind, runs: int('runs', 60), seed: int('seed', MACHINE_TRAIN_SEED) };
  throw new Error(`--data ${kind}: use camera, cmapss, pump or spindle`);
}

function describeData(d: ReferenceData): string {
  switch (d.type) {
    case 'camera':
      return `${d.count} frames of the simulator camera (simulator/camera/render.ts), ${d.width}x${d.height} JPEG, seed ${d.seed}, defect rate ${d.defectRate}`;
    case 'cmapss':
      return `every training engine of NASA C-MAPSS ${d.subsets.map((s) => `train_${s}.txt`).join(' and ')}`;
    default:
      return `${d.runs} simulated ${d.type} run-to-failure runs (simulator/machines/export-runs.ts, seed ${d.seed}, one row per operating hour): the first runs of the training set`;
  }
}

async function* cameraFrames(d: Extract<ReferenceData, { type: 'camera' }>): AsyncGenerator<Buffer> {
  const defects = DEFECT_CLASSES.filter((c) => c !== 'ok');
  const rng = new Rng(d.seed);
  for (let i = 0; i < d.count; i++) {
    // As SimCamera draws them: a label by the defect rate, then the frame's seed.
    const label: DefectClass = rng.chance(d.defectRate) ? rng.pick(defects) : 'ok';
    const frame = await renderFrame({
      width: d.width,
      height: d.height,
      label,
      seed: rng.nextU32(),
      format: 'jpeg',
    });
    yield frame.data;
  }
}

const T0 = Date.UTC(2025, 0, 1);

/** One batch of readings per row: the tags the model reads and its axis counter. */
function rowReadings(
  asset: string,
  time: number,
  values: Record<string, number>,
  tags: readonly string[],
): Reading[] {
  return tags.map((tag) => ({
    source: 'reference',
    asset,
    tag,
    value: values[tag]!,
    quality: 'good' as const,
    sourceTime: time,
    receivedAt: time,
  }));
}

async function* cmapssRows(
  d: Extract<ReferenceData, { type: 'cmapss' }>,
  tags: readonly string[],
): AsyncGenerator<Reading[]> {
  const columns = [
    'unit',
    'cycle',
    'setting1',
    'setting2',
    'setting3',
    ...Array.from({ length: 21 }, (_, i) => `s${i + 1}`),
  ];
  for (const subset of d.subsets) {
    const file = path.join(d.dir, `train_${subset}.txt`);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new VigilError(
        'VIGIL_ERR_INPUT_INVALID',
        `cannot read ${file} (${errorMessage(err)}); pass --cmapss-dir, the folder with NASA's train_FD00x.txt files`,
      );
    }
    for (const line of text.split('\n')) {
      const parts = line.trim().split(/\s+/).map(Number);
      if (parts.length !== columns.length) continue;
      const values = Object.fromEntries(columns.map((c, i) => [c, parts[i]!]));
      yield rowReadings(`${subset}-unit-${values['unit']}`, T0 + values['cycle']! * 3_600_000, values, tags);
    }
  }
}

function* machineRows(
  d: Extract<ReferenceData, { type: 'pump' | 'spindle' }>,
  tags: readonly string[],
): Generator<Reading[]> {
  const columns = runColumns(d.type);
  // export-runs --kind both numbers pump runs 0..199 and spindle runs 200..399.
  const first = d.type === 'pump' ? 0 : MACHINE_TRAIN_RUNS;
  for (let r = first; r < first + d.runs; r++) {
    const { rows } = simulateRun(
      {
        kind: d.type,
        failure: { mode: 'random', meanLifeHours: PROFILES[d.type].meanLifeHours },
        stepSeconds: 10,
      },
      deriveSeed(d.seed, r),
      r,
      1,
    );
    for (const row of rows) {
      const cells = row.split(',');
      const values = Object.fromEntries(columns.map((c, i) => [c, Number(cells[i])]));
      yield rowReadings(`${d.type}-${r}`, T0 + values['time_h']! * 3_600_000, values, tags);
    }
  }
}

async function collect(
  builder: ReferenceBuilder,
  engine: Engine,
  m: Manifest,
  data: ReferenceData,
  progress: (n: number) => void,
): Promise<void> {
  if (isImageManifest(m)) {
    if (data.type !== 'camera') throw new Error(`${m.name} is an image model: use --data camera`);
    for await (const frame of cameraFrames(data)) {
      builder.add(await scoreFrame(engine, m, frame));
      if (builder.count % 250 === 0) progress(builder.count);
    }
    return;
  }
  const tm = m as TelemetryManifest;
  const axis = tm.preprocessing.axis.type === 'counter' ? [tm.preprocessing.axis.tag] : [];
  const tags = [...tm.preprocessing.tags, ...axis];
  const batches: Reading[][] = [];
  if (data.type === 'cmapss') for await (const b of cmapssRows(data, tags)) batches.push(b);
  else if (data.type === 'pump' || data.type === 'spindle')
    for (const b of machineRows(data, tags)) batches.push(b);
  else throw new Error(`${m.name} is a telemetry model: use --data cmapss, pump or spindle`);
  for await (const s of scoreReadings(engine, tm, batches)) {
    builder.add(s);
    if (builder.count % 5000 === 0) progress(builder.count);
  }
}

export interface ModelsReferenceOptions {
  data?: string;
  count?: string;
  seed?: string;
  defectRate?: string;
  cmapssDir?: string;
  runs?: string;
  dryRun?: boolean;
}

/** Computes and (unless dryRun) writes the reference; returns the exit code. */
export async function modelsReferenceCommand(
  dir: string,
  opts: ModelsReferenceOptions,
  say: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Promise<number> {
  const pkg = await loadModelPackage(dir);
  const signed = await isSignedPackage(pkg.dir);
  if (signed && !opts.dryRun) {
    say(
      `${pkg.dir} is signed (${SIGNATURE_FILE}): writing the reference would invalidate the signature. ` +
        'Compute it before signing, or remove the signature, write it, and sign the package again.',
    );
    return 2;
  }
  const m = pkg.manifest;
  const data = defaultData(m, {
    ...(opts.data === undefined ? {} : { data: opts.data }),
    ...(opts.count === undefined ? {} : { count: opts.count }),
    ...(opts.seed === undefined ? {} : { seed: opts.seed }),
    ...(opts.defectRate === undefined ? {} : { 'defect-rate': opts.defectRate }),
    ...(opts.cmapssDir === undefined ? {} : { 'cmapss-dir': opts.cmapssDir }),
    ...(opts.runs === undefined ? {} : { runs: opts.runs }),
  });
  const started = Date.now();
  say(`${m.name}@${m.version}: reference from ${describeData(data)}`);
  const engine = await loadEngine(
    pkg.dir,
    {
      onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
      tflite: { threads: 1, xnnpack: true },
      warmupRuns: 1,
    },
    silentLogger(),
  );
  const builder = new ReferenceBuilder(m);
  try {
    await collect(builder, engine, m, data, (n) => say(`  ${n} samples scored`));
  } finally {
    await engine.close();
  }
  const stats = builder.build({
    data: describeData(data),
    builder: 'vigil models reference (runtime/cli/models-reference.ts)',
  });
  // The manifest must still be valid with the reference in it.
  Manifest.parse({ ...m, referenceStats: stats });
  for (const f of stats.features ?? [])
    say(
      `  ${f.name}: mean ${f.mean}, std ${f.std}, ${f.edges.length + 1} bins${f.edges.length === 0 ? ' (constant: not monitored)' : ''}`,
    );
  const o = stats.output!;
  say(`  output score: mean ${o.score!.mean}, std ${o.score!.std}, ${o.score!.edges.length + 1} bins`);
  if (o.classes)
    say(`  classes: ${o.classes.labels.map((l, i) => `${l} ${o.classes!.proportions[i]}`).join(', ')}`);
  say(`  ${builder.count} samples in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (opts.dryRun) return 0;
  const file = path.join(pkg.dir, MANIFEST_FILE);
  const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  json['referenceStats'] = stats;
  // Written beside and renamed: a reader never sees half a manifest.
  await writeFile(`${file}.tmp`, JSON.stringify(json, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
  await loadModelPackage(pkg.dir);
  say(`  wrote ${file}`);
  return 0;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      data: { type: 'string' },
      count: { type: 'string' },
      seed: { type: 'string' },
      'defect-rate': { type: 'string' },
      'cmapss-dir': { type: 'string' },
      runs: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
  });
  if (positionals.length === 0) {
    process.stderr.write(
      'usage: models-reference PACKAGE... [--data camera|cmapss|pump|spindle] [--count N] [--seed S]\n' +
        '         [--defect-rate R] [--cmapss-dir DIR] [--runs N] [--dry-run]\n',
    );
    process.exitCode = 2;
    return;
  }
  for (const dir of positionals) {
    const code = await modelsReferenceCommand(dir, {
      data: values.data,
      count: values.count,
      seed: values.seed,
      defectRate: values['defect-rate'],
      cmapssDir: values['cmapss-dir'],
      runs: values.runs,
      dryRun: values['dry-run'],
    });
    if (code !== 0) process.exitCode = code;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`models reference failed: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  });
}
