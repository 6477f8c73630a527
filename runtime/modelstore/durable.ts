import { randomBytes } from 'node:crypto';
import { lstat, open, readdir, rename } from 'node:fs/promises';
import path from 'node:path';

/**
 * File operations that survive a power cut: data reaches the disk before the rename that makes
 * it visible, and the rename itself reaches the disk through an fsync of its folder.
 */

/** fsync one file or folder (folders open read-only on Linux, which is all fsync needs). */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsync every regular file and folder under `dir`, and `dir` itself. Symbolic links are left
 * alone (not followed): whether a package may hold one is the verifier's call, not ours.
 */
export async function fsyncTree(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await fsyncTree(p);
    else if (e.isFile()) await fsyncPath(p);
  }
  await fsyncPath(dir);
}

/** Replaces `file` with `data` all at once: temp file, fsync, rename, fsync of the folder. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await fsyncPath(path.dirname(file));
}

/** What writeFileAtomic puts between the file's name and its temp suffix; cleanup looks for it. */
export const TEMP_MARK = '.tmp-';

export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
