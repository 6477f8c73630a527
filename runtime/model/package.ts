import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { checkAcceptance } from '../acceptance/consistency.js';
import { ManifestError, VigilError, errorMessage, type Issue } from '../errors.js';
import { zodIssues } from '../validation.js';
import {
  Manifest,
  isImageManifest,
  isTelemetryManifest,
  type ImageManifest,
  type TelemetryManifest,
  type TensorSpec,
  SUMMARY_STATS,
} from './manifest.js';

/** A model package whose manifest is valid and whose files are exactly the ones it lists. */
export interface ModelPackage {
  /** Absolute path of the package folder. */
  dir: string;
  manifest: Manifest;
  /** Absolute path of the model file (manifest.file). */
  modelPath: string;
}

export const MANIFEST_FILE = 'vigil.json';
export const SIGNATURE_FILE = 'vigil.json.sig';

/**
 * Reads and verifies a model package folder: the manifest parses and is self-consistent, every
 * listed file is inside the folder and has the listed sha256, and nothing else is there. An
 * engine only ever loads a package that passed this.
 */
export async function loadModelPackage(dir: string): Promise<ModelPackage> {
  const root = path.resolve(dir);
  const manifest = await readManifest(root);
  const where = root;

  const pathIssues = checkFileEntries(manifest);
  if (pathIssues.length > 0) throw new ManifestError(where, pathIssues);
  const consistency = checkManifestConsistency(manifest);
  if (consistency.length > 0) throw new ManifestError(where, consistency);

  const realRoot = await realpath(root);
  await checkOwnFiles(root);
  for (const [name, expected] of Object.entries(manifest.files)) {
    const file = path.join(root, name);
    let real: string;
    try {
      real = await realpath(file);
    } catch (err) {
      throw new VigilError(
        'VIGIL_ERR_MODEL_FILE_MISMATCH',
        `model package ${root}: file '${name}' listed in vigil.json is missing (${errorMessage(err)}). ` +
          'The package is incomplete; pull or rebuild it.',
        { cause: err, detail: { package: root, file: name } },
      );
    }
    if (!isInside(realRoot, real)) {
      throw new ManifestError(where, [
        {
          path: `files.${name}`,
          message: `resolves to ${real}, outside the package folder (symbolic link?)`,
        },
      ]);
    }
    // A listed folder, FIFO or device is no model file, and reading a FIFO would never end.
    if (!(await stat(real)).isFile()) {
      throw new VigilError(
        'VIGIL_ERR_MODEL_FILE_MISMATCH',
        `model package ${root}: '${name}' listed in vigil.json is not a regular file. ` +
          'The package is damaged or was altered; pull or rebuild it.',
        { detail: { package: root, file: name } },
      );
    }
    const actual = await sha256File(real);
    if (actual !== expected) {
      throw new VigilError(
        'VIGIL_ERR_MODEL_FILE_MISMATCH',
        `model package ${root}: sha256 of '${name}' is ${actual}, but vigil.json says ${expected}. ` +
          'The package is damaged or was altered after it was built; pull it again or rebuild it, and do not run it as is.',
        { detail: { package: root, file: name, expected, actual } },
      );
    }
  }

  const extra = (await listFiles(root)).filter(
    (f) => f !== MANIFEST_FILE && f !== SIGNATURE_FILE && !Object.hasOwn(manifest.files, f),
  );
  if (extra.length > 0) {
    throw new VigilError(
      'VIGIL_ERR_MODEL_FILE_MISMATCH',
      `model package ${root}: unexpected file${extra.length > 1 ? 's' : ''} ${extra.map((f) => `'${f}'`).join(', ')} ` +
        'not listed in vigil.json. A package holds only the files its manifest lists; remove them, or pull or rebuild the package.',
      { detail: { package: root, extra } },
    );
  }

  return { dir: root, manifest, modelPath: path.join(root, manifest.file) };
}

/**
 * vigil.json and vigil.json.sig are plain files of the package itself: a link could make the
 * manifest that was checked (or signed) differ from the one an engine later reads.
 */
async function checkOwnFiles(root: string): Promise<void> {
  for (const name of [MANIFEST_FILE, SIGNATURE_FILE]) {
    let st;
    try {
      st = await lstat(path.join(root, name));
    } catch (err) {
      if (name === SIGNATURE_FILE && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if (!st.isFile()) {
      throw new VigilError(
        'VIGIL_ERR_MODEL_FILE_MISMATCH',
        `model package ${root}: ${name} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}. ` +
          `A package's ${name} is a plain file inside its folder; pull or rebuild the package.`,
        { detail: { package: root, file: name } },
      );
    }
  }
}

/**
 * What kind of model a package folder holds, from its vigil.json alone (unverified): lets the
 * daemon wire a pipeline whose model failed to load the way it will run once the model is
 * fixed. Undefined when the manifest cannot be read or says neither.
 */
export async function peekModelKind(dir: string): Promise<'image' | 'telemetry' | undefined> {
  try {
    const json = JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), 'utf8')) as unknown;
    const type = (json as { preprocessing?: { type?: unknown } } | null)?.preprocessing?.type;
    return type === 'image' || type === 'telemetry' ? type : undefined;
  } catch {
    return undefined;
  }
}

async function readManifest(root: string): Promise<Manifest> {
  const file = path.join(root, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ManifestError(root, [
      {
        path: MANIFEST_FILE,
        message: missing
          ? `not found; ${root} is not a model package (a package folder holds vigil.json and the model file)`
          : `cannot be read: ${errorMessage(err)}`,
      },
    ]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(root, [{ path: '(root)', message: `not valid JSON: ${errorMessage(err)}` }]);
  }
  const parsed = Manifest.safeParse(json);
  if (!parsed.success) throw new ManifestError(root, zodIssues(parsed.error));
  return parsed.data;
}

/** Every file entry is a plain relative path that stays inside the package, and the model is one of them. */
function checkFileEntries(m: Manifest): Issue[] {
  const issues: Issue[] = [];
  const names = [...Object.keys(m.files), m.file];
  for (const name of new Set(names)) {
    const parts = name.split(/[\\/]/);
    if (
      path.isAbsolute(name) ||
      path.win32.isAbsolute(name) ||
      parts.includes('..') ||
      parts.includes('.') ||
      parts.includes('')
    ) {
      issues.push({
        path: name === m.file ? 'file' : `files.${name}`,
        message: `'${name}' must be a plain relative path inside the package (no '..', '.', empty or absolute parts)`,
      });
    }
  }
  if (!Object.hasOwn(m.files, m.file)) {
    issues.push({
      path: 'file',
      message: `'${m.file}' is not listed in files, so its sha256 cannot be checked`,
    });
  }
  for (const reserved of [MANIFEST_FILE, SIGNATURE_FILE]) {
    if (Object.hasOwn(m.files, reserved)) {
      issues.push({ path: `files.${reserved}`, message: `${reserved} cannot be listed in its own files` });
    }
  }
  return issues;
}

/**
 * The manifest agrees with itself: quantized tensors say how, postprocessing points at an output
 * that has what it reads, and preprocessing produces the input's shape. Image and telemetry
 * models each have their own rules.
 */
export function checkManifestConsistency(m: Manifest): Issue[] {
  const issues: Issue[] = [];
  const tensors = [
    ...m.inputs.map((t, i) => ({ t, where: `inputs.${i}` })),
    ...m.outputs.map((t, i) => ({ t, where: `outputs.${i}` })),
  ];
  for (const { t, where } of tensors) {
    if ((t.dtype === 'int8' || t.dtype === 'uint8') && !t.quantization) {
      issues.push({
        path: `${where}.quantization`,
        message: `required for ${t.dtype} tensor '${t.name}' (scale and zeroPoint)`,
      });
    }
    if (
      t.quantization &&
      t.dtype === 'int8' &&
      (t.quantization.zeroPoint < -128 || t.quantization.zeroPoint > 127)
    ) {
      issues.push({ path: `${where}.quantization.zeroPoint`, message: 'must be within -128..127 for int8' });
    }
    if (
      t.quantization &&
      t.dtype === 'uint8' &&
      (t.quantization.zeroPoint < 0 || t.quantization.zeroPoint > 255)
    ) {
      issues.push({ path: `${where}.quantization.zeroPoint`, message: 'must be within 0..255 for uint8' });
    }
  }
  const outputNames = m.outputs.map((o) => o.name);
  if (new Set(outputNames).size !== outputNames.length) {
    issues.push({ path: 'outputs', message: 'output names must be unique' });
  }

  const post = m.postprocessing;
  const out = m.outputs.find((o) => o.name === post.output);
  if (!out) {
    issues.push({
      path: 'postprocessing.output',
      message: `'${post.output}' is not one of the outputs (${outputNames.map((n) => `'${n}'`).join(', ')})`,
    });
  }
  if (isImageManifest(m)) issues.push(...checkImage(m, out));
  else if (isTelemetryManifest(m)) issues.push(...checkTelemetry(m, out));
  else {
    issues.push({
      path: 'postprocessing.type',
      message:
        `'${post.type}' does not go with '${m.preprocessing.type}' preprocessing: image models use ` +
        "'classification'; telemetry models use 'rul', 'failure_probability' or 'anomaly'",
    });
  }
  issues.push(...checkAcceptance(m));
  return issues;
}

function checkImage(m: ImageManifest, out: TensorSpec | undefined): Issue[] {
  const issues: Issue[] = [];
  const post = m.postprocessing;
  if (out) {
    const last = out.shape[out.shape.length - 1]!;
    if (post.labels.length !== last) {
      issues.push({
        path: 'postprocessing.labels',
        message: `${post.labels.length} labels, but output '${out.name}' has ${last} scores (last dimension of [${out.shape.join(', ')}])`,
      });
    }
  }
  if (!post.labels.includes(post.okLabel)) {
    issues.push({ path: 'postprocessing.okLabel', message: `'${post.okLabel}' is not one of the labels` });
  }

  const pre = m.preprocessing;
  const input = m.inputs[0]!;
  const channels = pre.colorSpace === 'grayscale' ? 1 : 3;
  const layout = input.layout ?? 'NHWC';
  if (input.shape.length !== 4 || (layout !== 'NHWC' && layout !== 'NCHW')) {
    issues.push({
      path: 'inputs.0',
      message: `an image model needs a 4-dimensional NHWC or NCHW input, got ${layout} [${input.shape.join(', ')}]`,
    });
  } else {
    const [, a, b, c] = input.shape as [number, number, number, number];
    const [h, w, ch] = layout === 'NHWC' ? [a, b, c] : [b, c, a];
    const expected =
      layout === 'NHWC' ? [1, pre.height, pre.width, channels] : [1, channels, pre.height, pre.width];
    if (h !== pre.height || w !== pre.width || ch !== channels || input.shape[0] !== 1) {
      issues.push({
        path: 'inputs.0.shape',
        message:
          `[${input.shape.join(', ')}] does not match preprocessing (${pre.width}x${pre.height}, ${pre.colorSpace}, ` +
          `${channels} channel${channels > 1 ? 's' : ''}): expected ${layout} [${expected.join(', ')}]`,
      });
    }
  }
  for (const key of ['mean', 'std'] as const) {
    const n = pre.normalize[key].length;
    if (n !== 1 && n !== channels) {
      issues.push({
        path: `preprocessing.normalize.${key}`,
        message: `needs 1 or ${channels} entries, got ${n}`,
      });
    }
  }
  return issues;
}

function checkTelemetry(m: TelemetryManifest, out: TensorSpec | undefined): Issue[] {
  const issues: Issue[] = [];
  const pre = m.preprocessing;
  const post = m.postprocessing;
  const nTags = pre.tags.length;

  const seen = new Set<string>();
  pre.tags.forEach((t, i) => {
    if (seen.has(t)) issues.push({ path: `preprocessing.tags.${i}`, message: `'${t}' is listed twice` });
    seen.add(t);
  });
  if (pre.axis.type === 'counter' && seen.has(pre.axis.tag)) {
    issues.push({
      path: 'preprocessing.axis.tag',
      message: `'${pre.axis.tag}' is the axis and cannot also be a feature tag`,
    });
  }
  for (const key of ['mean', 'std'] as const) {
    const n = pre.normalize[key].length;
    if (n !== nTags) {
      issues.push({
        path: `preprocessing.normalize.${key}`,
        message: `needs one entry per tag (${nTags}), got ${n}`,
      });
    }
  }

  const input = m.inputs[0]!;
  const expected = pre.features === 'window' ? [1, pre.window, nTags] : [1, nTags * SUMMARY_STATS];
  const layout = pre.features === 'window' ? 'NTC' : 'NC';
  if (input.shape.length !== expected.length || input.shape.some((d, i) => d !== expected[i])) {
    issues.push({
      path: 'inputs.0.shape',
      message:
        pre.features === 'window'
          ? `[${input.shape.join(', ')}] does not match preprocessing (window of ${pre.window} steps, ${nTags} tags): expected NTC [${expected.join(', ')}]`
          : `[${input.shape.join(', ')}] does not match preprocessing (summary: ${SUMMARY_STATS} statistics of ${nTags} tags): expected NC [${expected.join(', ')}]`,
    });
  }
  if (input.layout !== undefined && input.layout !== layout) {
    issues.push({
      path: 'inputs.0.layout',
      message: `'${input.layout}' does not match features '${pre.features}': expected ${layout}`,
    });
  }

  if (out && (post.type === 'failure_probability' || post.type === 'anomaly')) {
    const last = out.shape[out.shape.length - 1]!;
    if (post.index >= last) {
      issues.push({
        path: 'postprocessing.index',
        message: `${post.index} is out of range: output '${out.name}' has ${last} value${last > 1 ? 's' : ''} (last dimension of [${out.shape.join(', ')}])`,
      });
    }
  }
  const a = post.alert;
  if (a.direction === 'above' ? a.clear > a.raise : a.clear < a.raise) {
    issues.push({
      path: 'postprocessing.alert.clear',
      message:
        a.direction === 'above'
          ? `${a.clear} must not be above raise (${a.raise}): an alert raised at or above ${a.raise} clears once the score is back below clear`
          : `${a.clear} must not be below raise (${a.raise}): an alert raised at or below ${a.raise} clears once the score is back above clear`,
    });
  }
  if (post.type === 'failure_probability') {
    for (const key of ['raise', 'clear'] as const) {
      if (a[key] < 0 || a[key] > 1)
        issues.push({
          path: `postprocessing.alert.${key}`,
          message: `${a[key]} is not a probability (0..1)`,
        });
    }
  }
  return issues;
}

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** Streams the file through sha256, so that a large model never has to sit in memory twice. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every file under root, as a relative path with '/' separators. */
async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}
