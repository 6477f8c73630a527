import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SimError } from './errors.js';
import { repoRoot } from './paths.js';

/**
 * NASA's C-MAPSS turbofan run-to-failure data (training splits FD001 and FD003), read from the
 * shared datasets folder, never copied into the repository. Each file is parsed once per process.
 */

export const CMAPSS_DATASETS = ['FD001', 'FD003'] as const;
export type CmapssDataset = (typeof CMAPSS_DATASETS)[number];

/** Column names in NASA's order after `unit`: cycle, 3 operational settings, 21 sensors. */
export const CMAPSS_COLUMNS: readonly string[] = [
  'cycle',
  'setting1',
  'setting2',
  'setting3',
  ...Array.from({ length: 21 }, (_, i) => `s${i + 1}`),
];

/** One engine's trajectory: rows of CMAPSS_COLUMNS values, cycle 1 first, failing after the last. */
export interface CmapssUnit {
  unit: number;
  rows: ReadonlyArray<Float64Array>;
}

export interface CmapssData {
  dataset: CmapssDataset;
  file: string;
  units: ReadonlyMap<number, CmapssUnit>;
}

export const CMAPSS_ENV = 'VIGIL_CMAPSS_DIR';

/** Folders searched for the data, in order (after VIGIL_CMAPSS_DIR). */
export function cmapssCandidates(): string[] {
  return [path.resolve(repoRoot(), '..', 'shared', 'datasets', 'cmapss'), '/work/shared/datasets/cmapss'];
}

/**
 * The folder with train_FD001.txt and train_FD003.txt: $VIGIL_CMAPSS_DIR if set, else the first
 * that exists of <repo>/../shared/datasets/cmapss and /work/shared/datasets/cmapss.
 */
export function cmapssDir(candidates: readonly string[] = cmapssCandidates()): string {
  const fromEnv = process.env[CMAPSS_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!existsSync(fromEnv))
      throw new SimError(
        'SIM_ERR_DATASET_MISSING',
        `${CMAPSS_ENV} is set to ${fromEnv}, which does not exist; point it at the folder holding train_FD001.txt and train_FD003.txt`,
      );
    return path.resolve(fromEnv);
  }
  const tried = candidates;
  const found = tried.find((d) => existsSync(d));
  if (found) return found;
  throw new SimError(
    'SIM_ERR_DATASET_MISSING',
    `the NASA C-MAPSS data was not found; looked in ${tried.join(' and ')}. ` +
      `Put train_FD001.txt and train_FD003.txt in one of them, or set ${CMAPSS_ENV} to their folder.`,
  );
}

const cache = new Map<string, CmapssData>();

/** Parses one training file; throws a SimError naming the file and line when a row is malformed. */
export function parseCmapss(text: string, file: string, dataset: CmapssDataset): CmapssData {
  const units = new Map<number, { unit: number; rows: Float64Array[] }>();
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === '') return;
    const fields = trimmed.split(/\s+/);
    const where = `${file} line ${i + 1}`;
    if (fields.length !== CMAPSS_COLUMNS.length + 1)
      throw new SimError(
        'SIM_ERR_DATASET_INVALID',
        `${where}: expected ${CMAPSS_COLUMNS.length + 1} space-separated numbers, found ${fields.length}`,
      );
    const numbers = fields.map(Number);
    if (numbers.some((n) => !Number.isFinite(n)))
      throw new SimError('SIM_ERR_DATASET_INVALID', `${where}: a field is not a number`);
    const unit = numbers[0]!;
    let entry = units.get(unit);
    if (!entry) units.set(unit, (entry = { unit, rows: [] }));
    if (numbers[1] !== entry.rows.length + 1)
      throw new SimError(
        'SIM_ERR_DATASET_INVALID',
        `${where}: unit ${unit} jumps to cycle ${numbers[1]} after cycle ${entry.rows.length}`,
      );
    entry.rows.push(Float64Array.from(numbers.slice(1)));
  });
  if (units.size === 0) throw new SimError('SIM_ERR_DATASET_INVALID', `${file} holds no rows`);
  return { dataset, file, units };
}

/** Loads (once) `train_<dataset>.txt` from `dir` (cmapssDir() by default). */
export function loadCmapss(dataset: CmapssDataset, dir: string = cmapssDir()): CmapssData {
  const file = path.join(dir, `train_${dataset}.txt`);
  const hit = cache.get(file);
  if (hit) return hit;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SimError(
      'SIM_ERR_DATASET_MISSING',
      `cannot read the C-MAPSS file ${file}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const data = parseCmapss(text, file, dataset);
  cache.set(file, data);
  return data;
}
