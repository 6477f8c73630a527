import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../helpers/daemon.js';
import { runCommand } from './chroot.js';

/**
 * What the install test needs before it starts, each cached under ~/.cache/vigil so that only the
 * first run pays for it: a minimal Debian root (debootstrap) and the offline bundle of the tree
 * as it is (dist/ must be built: `npm run build`, as for every test that runs the CLI).
 */

export const CACHE = path.join(process.env.VIGIL_CACHE_DIR ?? path.join(os.homedir(), '.cache/vigil'));

/** Fails with what to do when the test cannot run here; it is never skipped. */
export function requireInstallTools(): void {
  if (process.getuid?.() !== 0)
    throw new Error(
      'the install test must run as root: it creates a Debian root with debootstrap, mounts /proc ' +
        'and /dev into it and installs Vigil there with chroot (run the test suite as root, e.g. in CI)',
    );
  const missing = [
    ['debootstrap', ['/usr/sbin/debootstrap']],
    ['chroot', ['/usr/sbin/chroot', '/usr/bin/chroot']],
    ['python3', ['/usr/bin/python3', '/usr/local/bin/python3']],
  ]
    .filter(([, paths]) => !(paths as string[]).some((p) => existsSync(p)))
    .map(([name]) => name as string);
  if (missing.length > 0)
    throw new Error(
      `the install test needs ${missing.join(', ')}: apt-get install ${missing.join(' ').replace('chroot', 'coreutils')}`,
    );
  if (!existsSync(path.join(ROOT, 'dist/runtime/cli/main.js')))
    throw new Error('dist/ is not built: run npm run build first');
}

/** The cached debootstrap root tarball for the suite and this machine's architecture. */
export async function debianRootTarball(suite = 'bookworm'): Promise<string> {
  const r = await runCommand(
    'bash',
    [
      path.join(ROOT, 'test/install/debootstrap-root.sh'),
      '--suite',
      suite,
      '--cache',
      path.join(CACHE, 'debootstrap'),
    ],
    {},
    900_000,
  );
  if (r.code !== 0) throw new Error(`debootstrap-root.sh failed (${r.code}):\n${r.stderr}`);
  return r.stdout.trim().split('\n').pop()!;
}

/**
 * The x64 offline bundle of this tree, built by deploy/bundle/build.sh and kept as long as
 * nothing that goes into it changed: the files package.json ships (npm pack's list, with their
 * contents), the lockfile, .npmrc, the build script and the Node.js version.
 */
export async function offlineBundle(): Promise<{ file: string; built: boolean }> {
  const pack = await runCommand('npm', ['pack', '--dry-run', '--json', '--silent'], { cwd: ROOT });
  if (pack.code !== 0) throw new Error(`npm pack --dry-run failed: ${pack.stderr}`);
  const files = (JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map(
    (f) => f.path,
  );
  const hash = createHash('sha256').update(process.version);
  for (const f of [...files.sort(), 'package-lock.json', '.npmrc', 'deploy/bundle/build.sh']) {
    const file = path.join(ROOT, f);
    hash.update(`\0${f}\0`);
    if (existsSync(file)) hash.update(await readFile(file));
  }
  const key = hash.digest('hex').slice(0, 16);
  const dir = path.join(CACHE, 'install-test');
  const file = path.join(dir, `vigil-${key}-linux-x64.tar.gz`);
  if (existsSync(file)) return { file, built: false };

  await mkdir(dir, { recursive: true });
  const part = `${file}.part`;
  const r = await runCommand(
    'bash',
    [path.join(ROOT, 'deploy/bundle/build.sh'), '--arch', 'x64', '--no-compile', '--out', part],
    { cwd: ROOT },
    900_000,
  );
  if (r.code !== 0) throw new Error(`deploy/bundle/build.sh failed (${r.code}):\n${r.stderr}`);
  await rename(part, file);
  // Keep only the bundle of the current tree.
  for (const old of await readdir(dir))
    if (old !== path.basename(file)) await rm(path.join(dir, old), { force: true });
  return { file, built: true };
}
