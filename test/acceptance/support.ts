import { execFile } from 'node:child_process';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AcceptanceReport } from '../../runtime/acceptance/types.js';
import { CLI, ROOT } from '../helpers/daemon.js';
import { editManifest, type ManifestJson, type PackageWorkshop } from '../helpers/model-packages.js';

/** Every shipped package: each carries a holdout and checks, and must pass them. */
export const SHIPPED = [
  'models/defect/packages/defect-fp32-onnx',
  'models/defect/packages/defect-int8-onnx',
  'models/defect/packages/defect-int8-tflite',
  'models/engine-rul/packages/engine-rul-fp32-onnx',
  'models/engine-rul/packages/engine-rul-int8-onnx',
  'models/engine-rul/packages/engine-rul-int8-tflite',
  'models/engine-rul/packages/engine-rul-rf-onnx',
  'models/machine-failure/packages/pump-failure-gbt',
  'models/machine-failure/packages/spindle-failure-gbt',
  'models/anomaly/packages/pump-anomaly-iforest',
].map((p) => path.join(ROOT, p));

export const shipped = (name: string): string => SHIPPED.find((p) => path.basename(p) === name)!;

/** The fp32 defect classifier without its final Softmax (test/acceptance/fixtures/build.py). */
export const LOGITS_MODEL = path.join(ROOT, 'test/acceptance/fixtures/defect-logits.onnx');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `vigil ARGS` as a user runs it: the compiled CLI in its own process. */
export function vigil(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `vigil models test DIR --json`, parsed. */
export async function testJson(dir: string): Promise<{ run: CliRun; report: AcceptanceReport }> {
  const run = await vigil('models', 'test', dir, '--json');
  return { run, report: JSON.parse(run.stdout) as AcceptanceReport };
}

/** A copy of a shipped package whose vigil.json `edit` changed (files rehashed). */
export async function variant(
  workshop: PackageWorkshop,
  name: string,
  edit: (m: ManifestJson, dir: string) => void | Promise<void>,
): Promise<string> {
  const dir = await workshop.copy(shipped(name));
  // The edit may change holdout files: apply it first, rehash after.
  const m = JSON.parse(await readFile(path.join(dir, 'vigil.json'), 'utf8')) as ManifestJson;
  await edit(m, dir);
  await writeFile(path.join(dir, 'vigil.json'), JSON.stringify(m, null, 2) + '\n');
  await editManifest(dir, () => undefined);
  return dir;
}

/** A copy of the shipped fp32 defect package whose model outputs logits (no Softmax). */
export async function logitsPackage(workshop: PackageWorkshop, version = '1.1.0'): Promise<string> {
  return variant(workshop, 'defect-fp32-onnx', async (m, dir) => {
    await copyFile(LOGITS_MODEL, path.join(dir, 'model.onnx'));
    m.version = version;
    m.description = 'the fp32 defect classifier exported without its final Softmax: it outputs logits';
  });
}
