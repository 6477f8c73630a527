import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import { loadModelPackage } from '../model/package.js';
import { repoRoot } from './simulate/defaults.js';

/** Folders under `dir` (three levels deep) that hold a vigil.json. */
async function findPackages(dir: string, depth = 3): Promise<string[]> {
  const found: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  if (entries.some((e) => e.isFile() && e.name === 'vigil.json')) found.push(dir);
  if (depth > 0) {
    for (const e of entries) {
      if (e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules') {
        found.push(...(await findPackages(path.join(dir, e.name), depth - 1)));
      }
    }
  }
  return found;
}

/** `vigil models list [DIR]`: every package found, verified, with its size. */
export async function modelsListCommand(dir?: string): Promise<void> {
  const base = path.resolve(dir ?? path.join(repoRoot(), 'models'));
  const dirs = await findPackages(base);
  if (dirs.length === 0) {
    console.log(`no model packages (folders with a vigil.json) under ${base}`);
    return;
  }
  for (const d of dirs.sort()) {
    const rel = path.relative(process.cwd(), d) || '.';
    try {
      const pkg = await loadModelPackage(d);
      const m = pkg.manifest;
      const size = (await stat(pkg.modelPath)).size;
      const i = m.inputs[0]!;
      const post = m.postprocessing;
      const decides =
        post.type === 'classification'
          ? `labels ${post.labels.join(',')}  threshold ${post.threshold}`
          : `${post.type} ${post.alertKind} ${post.alert.direction} ${post.alert.raise}`;
      console.log(
        `${m.name} ${m.version}  ${m.format}  ${i.dtype}[${i.shape.join('x')}]  ${(size / 1024).toFixed(0)} KiB  ${decides}  verified  ${rel}`,
      );
    } catch (err) {
      console.log(`INVALID  ${rel}: ${errorMessage(err).split('\n').join('; ')}`);
      process.exitCode = 1;
    }
  }
}
