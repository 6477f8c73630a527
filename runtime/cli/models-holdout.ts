/**
 * `vigil models holdout PACKAGE...`: builds a shipped model package's acceptance holdout from the
 * data it was built from, never from its training samples, and writes it with the declared
 * checks into the package (docs/ACCEPTANCE.md):
 *
 * - image models: frames rendered by the simulator camera (simulator/camera/render.ts) with a
 *   seed of their own (505; the model's sets use 101, 202, 303 and the drift reference 404),
 *   640x480 JPEG as the camera sends them, reduced by Vigil's own decodeAndResize to the model's
 *   input size and kept as small lossless PNGs;
 * - C-MAPSS models (tags s1..s21): one window per validation engine (models/engine-rul/
 *   validation-units.json: held out of training), cut at a seeded point in the engine's last 100
 *   cycles, labelled with its true RUL;
 * - pump and spindle failure models: held-out run-to-failure runs (seed 2002, as the models'
 *   evaluation), alternately a window ending within the horizon before the failure (label 1)
 *   and one ending before it (label 0);
 * - the pump anomaly model: windows of the held-out runs' normal operation (label 0) and the
 *   same with a sensor fault injected as models/anomaly/pipeline/inject.py does (label 1).
 *
 * The checks come from the model family's acceptance.json (models/<family>/acceptance.json),
 * keyed by package folder name. The holdout files are listed in vigil.json's files with their
 * sha256; a signed package is refused (the manifest changes).
 *
 *   vigil models holdout PACKAGE... [--checks FILE] [--cmapss-dir DIR] [--no-test]
 */
import { readFile, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { renderFrame } from '../../simulator/camera/render.js';
import { Rng } from '../../simulator/camera/rng.js';
import type { DefectClass } from '../../simulator/camera/types.js';
import { frameSeed } from '../../simulator/camera/export-dataset.js';
import {
  cmapssDir,
  loadCmapss,
  CMAPSS_COLUMNS,
  type CmapssDataset,
} from '../../simulator/machines/cmapss-data.js';
import { runColumns, simulateRun } from '../../simulator/machines/export-runs.js';
import { deriveSeed } from '../../simulator/machines/noise.js';
import { PROFILES } from '../../simulator/machines/profiles.js';
import { Acceptance } from '../acceptance/schema.js';
import type { TelemetryHoldoutFile } from '../acceptance/holdout.js';
import { errorMessage } from '../errors.js';
import {
  Manifest,
  isImageManifest,
  isTelemetryManifest,
  type ImageManifest,
  type TelemetryManifest,
} from '../model/manifest.js';
import { MANIFEST_FILE, SIGNATURE_FILE, loadModelPackage, sha256File } from '../model/package.js';
import { decodeAndResize } from '../pipeline/preprocess.js';
import { repoRoot } from './simulate/defaults.js';
import { modelsTestCommand } from './models-test.js';
import { isSignedPackage } from '../model/signature.js';

/** The folder inside a package that holds its holdout. */
export const HOLDOUT_DIR = 'acceptance';
export const CAMERA_HOLDOUT_SEED = 505;
/** The machine models' held-out seed and runs per kind (models/machine-failure/common.sh). */
const MACHINE_HELDOUT_SEED = 2002;
const MACHINE_HELDOUT_RUNS = 80;
const HOLDOUT_SEED = 8;

interface Built {
  /** Relative path (inside acceptance/) -> content. */
  files: Map<string, Buffer>;
  holdout: Acceptance['holdout'];
}

// --- images --------------------------------------------------------------------------------

/** 40 frames: 16 ok, 8 of each defect, in a seeded order. */
async function cameraHoldout(m: ImageManifest, count: number): Promise<Built> {
  const defects = m.postprocessing.labels.filter((l) => l !== m.postprocessing.okLabel);
  const ok = Math.round(count * 0.4);
  const labels: string[] = Array.from({ length: ok }, () => m.postprocessing.okLabel);
  for (let i = 0; labels.length < count; i++) labels.push(defects[i % defects.length]!);
  const rng = new Rng(CAMERA_HOLDOUT_SEED);
  for (let i = labels.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [labels[i], labels[j]] = [labels[j]!, labels[i]!];
  }
  const files = new Map<string, Buffer>();
  const rows = ['file,label'];
  for (const [i, label] of labels.entries()) {
    const frame = await renderFrame({
      width: 640,
      height: 480,
      label: label as DefectClass,
      seed: frameSeed(CAMERA_HOLDOUT_SEED, i),
      format: 'jpeg',
    });
    // The pixels the model sees, kept lossless at its input size.
    const d = await decodeAndResize(frame.data, m.preprocessing);
    const png = await sharp(Buffer.from(d.pixels), {
      raw: { width: d.width, height: d.height, channels: d.channels as 1 | 3 },
    })
      .png({ compressionLevel: 9 })
      .toBuffer();
    const name = `${String(i).padStart(2, '0')}-${label}.png`;
    files.set(name, png);
    rows.push(`${name},${label}`);
  }
  files.set('labels.csv', Buffer.from(rows.join('\n') + '\n'));
  return {
    files,
    holdout: {
      format: 'images',
      labels: `${HOLDOUT_DIR}/labels.csv`,
      description: `${count} frames of the simulator camera (640x480 JPEG, seed ${CAMERA_HOLDOUT_SEED}, none in the training, validation or test sets), reduced to the model's input by Vigil's decodeAndResize`,
    },
  };
}

// --- telemetry -----------------------------------------------------------------------------

function telemetryBuilt(h: TelemetryHoldoutFile): Built {
  return {
    files: new Map([['holdout.json', Buffer.from(JSON.stringify(h) + '\n')]]),
    holdout: { format: 'telemetry', file: `${HOLDOUT_DIR}/holdout.json`, description: h.description },
  };
}

/** One window per validation engine, ending at a seeded cycle in its last 100. */
async function cmapssHoldout(m: TelemetryManifest, dir: string): Promise<Built> {
  const pre = m.preprocessing;
  const axis = pre.axis.type === 'counter' ? pre.axis.tag : 'cycle';
  const columns = [axis, ...pre.tags];
  const split = JSON.parse(
    await readFile(path.join(repoRoot(), 'models/engine-rul/validation-units.json'), 'utf8'),
  ) as { units: Record<string, number[]> };
  const rng = new Rng(HOLDOUT_SEED);
  const samples: TelemetryHoldoutFile['samples'] = [];
  for (const [file, units] of Object.entries(split.units)) {
    const dataset = file.replace(/^train_|\.txt$/g, '') as CmapssDataset;
    const data = loadCmapss(dataset, dir);
    for (const unit of units) {
      const rows = data.units.get(unit)!.rows;
      const n = rows.length;
      // The window's last cycle: true RUL 0..99 (the last 100 cycles, where the model must be right).
      const end = rng.int(Math.max(pre.window, n - 99), n);
      const window = rows.slice(end - pre.window, end);
      samples.push({
        id: `${dataset}-unit-${unit}@${end}`,
        label: n - end,
        rows: window.map((r) => columns.map((c) => r[CMAPSS_COLUMNS.indexOf(c)]!)),
      });
    }
  }
  return telemetryBuilt({
    description: `${samples.length} windows of the C-MAPSS validation engines (models/engine-rul/validation-units.json, never trained on), each ending at a seeded cycle of the engine's last 100; label: true RUL in cycles`,
    columns,
    samples,
  });
}

interface MachineRun {
  id: number;
  columns: string[];
  /** Numbers per row, in `columns` order (NaN in the text columns). */
  values: number[][];
  /** Per row: 'healthy', then the degradation's states. */
  states: string[];
}

function machineRun(kind: 'pump' | 'spindle', runId: number): MachineRun {
  const { rows } = simulateRun(
    { kind, failure: { mode: 'random', meanLifeHours: PROFILES[kind].meanLifeHours }, stepSeconds: 10 },
    deriveSeed(MACHINE_HELDOUT_SEED, runId),
    runId,
    1,
  );
  const columns = runColumns(kind);
  const state = columns.indexOf('state');
  const cells = rows.map((row) => row.split(','));
  return {
    id: runId,
    columns,
    values: cells.map((c) => c.map(Number)),
    states: cells.map((c) => c[state]!),
  };
}

/** The window of `run` ending at row `end`, in the holdout's columns. */
function cut(run: MachineRun, columns: string[], end: number, window: number): number[][] {
  const idx = columns.map((c) => run.columns.indexOf(c === 'hours' ? 'time_h' : c));
  return run.values.slice(end - window + 1, end + 1).map((r) => idx.map((i) => r[i]!));
}

/** Alternately a window ending within the horizon before the failure (1) and one before it (0). */
function failureHoldout(m: TelemetryManifest, kind: 'pump' | 'spindle', count: number): Built {
  const pre = m.preprocessing;
  const post = m.postprocessing as Extract<
    TelemetryManifest['postprocessing'],
    { type: 'failure_probability' }
  >;
  const columns = ['hours', ...pre.tags];
  const rng = new Rng(HOLDOUT_SEED);
  const first = kind === 'pump' ? 0 : MACHINE_HELDOUT_RUNS;
  const samples: TelemetryHoldoutFile['samples'] = [];
  for (let i = 0; samples.length < count && i < MACHINE_HELDOUT_RUNS; i++) {
    const run = machineRun(kind, first + i);
    const ttf = run.values.map((r) => r[run.columns.indexOf('hours_to_failure')]!);
    const positive = i % 2 === 0;
    const ends = ttf
      .map((_, k) => k)
      .filter((k) => k >= pre.window - 1 && (positive ? ttf[k]! <= post.horizon : ttf[k]! > post.horizon));
    if (ends.length === 0) continue;
    const end = ends[rng.int(0, ends.length - 1)]!;
    samples.push({
      id: `${kind}-run${run.id}-h${end}-${positive ? 'failing' : 'running'}`,
      label: positive ? 1 : 0,
      rows: cut(run, columns, end, pre.window),
    });
  }
  return telemetryBuilt({
    description: `${samples.length} windows of held-out simulated ${kind} run-to-failure runs (seed ${MACHINE_HELDOUT_SEED}, as the model's evaluation); label 1: the ${kind} fails within ${post.horizon} ${post.unit} of the window's end`,
    columns,
    samples,
  });
}

/** The sensor faults of models/anomaly/pipeline/inject.py (FAULTS), in sensor units via sigma. */
const FAULTS = [
  { kind: 'spike', hours: 1, sigmas: 6, rate: 0 },
  { kind: 'stuck', hours: 12, sigmas: 0, rate: 0 },
  { kind: 'drift', hours: 24, sigmas: 0, rate: 0.25 },
] as const;

/** Alternately a normal window (0) and the same run with a sensor fault in the window (1). */
function anomalyHoldout(m: TelemetryManifest, count: number): Built {
  const pre = m.preprocessing;
  const columns = ['hours', ...pre.tags];
  const ranges = Object.fromEntries(PROFILES.pump.tags.map((t) => [t.name, [t.min, t.max] as const]));
  const rng = new Rng(HOLDOUT_SEED);
  const samples: TelemetryHoldoutFile['samples'] = [];
  for (let i = 0; samples.length < count && i < MACHINE_HELDOUT_RUNS; i++) {
    const run = machineRun('pump', i);
    // The run's rows before its degradation starts: normal behaviour (inject.py's healthy()).
    const healthy = run.states.findIndex((st) => st !== 'healthy');
    const raw = { ...run, values: run.values.slice(0, healthy < 0 ? run.values.length : healthy) };
    const lo = pre.window + 12;
    if (raw.values.length < lo + 24 + pre.window) continue;
    const end = rng.int(lo + 24, raw.values.length - 20);
    const anomalous = i % 2 === 1;
    if (!anomalous) {
      samples.push({
        id: `pump-run${run.id}-h${end}-normal`,
        label: 0,
        rows: cut(raw, columns, end, pre.window),
      });
      continue;
    }
    const fault = FAULTS[Math.floor(i / 2) % FAULTS.length]!;
    const tagIndex = rng.int(0, pre.tags.length - 1);
    const tag = pre.tags[tagIndex]!;
    const col = raw.columns.indexOf(tag);
    const sigma = pre.normalize.std[tagIndex]!;
    const sign = rng.sign();
    const t0 = end - rng.int(0, Math.min(fault.hours, pre.window) - 1);
    const values = raw.values.map((r) => [...r]);
    const stop = Math.min(values.length, t0 + fault.hours);
    const [min, max] = ranges[tag]!;
    for (let h = t0; h < stop; h++) {
      const v = values[h]!;
      if (fault.kind === 'spike') v[col] = v[col]! + sign * fault.sigmas * sigma;
      else if (fault.kind === 'stuck') v[col] = values[t0 - 1]![col]!;
      else v[col] = v[col]! + sign * fault.rate * sigma * (h - t0 + 1);
      v[col] = Math.min(max, Math.max(min, v[col]!));
    }
    samples.push({
      id: `pump-run${run.id}-h${end}-${fault.kind}-${tag}`,
      label: 1,
      rows: cut({ ...raw, values }, columns, end, pre.window),
    });
  }
  return telemetryBuilt({
    description: `${samples.length} windows of held-out simulated pump runs (seed ${MACHINE_HELDOUT_SEED}) in normal operation; in every other one a sensor fault as models/anomaly/pipeline/inject.py injects (spike 6 sigma, stuck 12 h, drift 0.25 sigma/h) overlaps the window; label 1: a fault is in the window`,
    columns,
    samples,
  });
}

// --- the command ---------------------------------------------------------------------------

async function build(m: Manifest, opts: ModelsHoldoutOptions): Promise<Built> {
  if (isImageManifest(m)) return cameraHoldout(m, 40);
  if (!isTelemetryManifest(m)) throw new Error(`${m.name} is neither an image nor a telemetry model`);
  const tags = m.preprocessing.tags;
  if (tags.includes('s1')) return cmapssHoldout(m, opts.cmapssDir ?? cmapssDir());
  if (m.postprocessing.type === 'anomaly') return anomalyHoldout(m, 40);
  return failureHoldout(m, tags.includes('load') ? 'spindle' : 'pump', 40);
}

export interface ModelsHoldoutOptions {
  checks?: string | undefined;
  cmapssDir?: string | undefined;
  /** Run the tests after writing (default true). */
  test?: boolean | undefined;
}

/** Builds, writes and (unless test is false) runs the acceptance tests; returns the exit code. */
export async function modelsHoldoutCommand(
  dir: string,
  opts: ModelsHoldoutOptions,
  say: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Promise<number> {
  const pkg = await loadModelPackage(dir);
  const signed = await isSignedPackage(pkg.dir);
  if (signed) {
    say(
      `${pkg.dir} is signed (${SIGNATURE_FILE}): writing the holdout would invalidate the signature. ` +
        'Build it before signing, or remove the signature, build it, and sign the package again.',
    );
    return 2;
  }
  const checksFile = opts.checks ?? path.join(path.dirname(path.dirname(pkg.dir)), 'acceptance.json');
  let declared: Record<string, unknown>;
  try {
    declared = JSON.parse(await readFile(checksFile, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    say(`cannot read the checks of ${pkg.dir} from ${checksFile}: ${errorMessage(err)}`);
    return 2;
  }
  const key = path.basename(pkg.dir);
  const entry = declared[key] as { checks?: unknown } | undefined;
  if (!entry?.checks) {
    say(`${checksFile} has no checks for '${key}' (an entry "${key}": { "checks": { ... } })`);
    return 2;
  }
  const started = Date.now();
  const m = pkg.manifest;
  say(`${m.name}@${m.version} (${key}): building the acceptance holdout`);
  const built = await build(m, opts);
  const acceptance = Acceptance.parse({ holdout: built.holdout, checks: entry.checks });

  // Written beside and swapped in: the package folder never holds half a holdout.
  const target = path.join(pkg.dir, HOLDOUT_DIR);
  const staging = `${target}.tmp`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  for (const [name, data] of built.files) await writeFile(path.join(staging, name), data);
  await rm(target, { recursive: true, force: true });
  await rename(staging, target);

  const file = path.join(pkg.dir, MANIFEST_FILE);
  const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  const files = Object.fromEntries(
    Object.entries(json['files'] as Record<string, string>).filter(([f]) => !f.startsWith(`${HOLDOUT_DIR}/`)),
  );
  for (const name of [...built.files.keys()].sort())
    files[`${HOLDOUT_DIR}/${name}`] = await sha256File(path.join(target, name));
  json['acceptance'] = acceptance;
  json['files'] = files;
  // The manifest must still be valid with the holdout in it.
  Manifest.parse(json);
  await writeFile(`${file}.tmp`, JSON.stringify(json, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
  await loadModelPackage(pkg.dir);
  const bytes = [...built.files.values()].reduce((a, b) => a + b.length, 0);
  say(
    `  wrote ${built.files.size} files (${(bytes / 1024).toFixed(0)} KiB) to ${target} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (opts.test === false) return 0;
  return modelsTestCommand(pkg.dir, {});
}
