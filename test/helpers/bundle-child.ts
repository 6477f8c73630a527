import { chmodSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Bundles a TypeScript entry (a path from the repository root, e.g. test/store/crash-writer.ts)
 * and the runtime code it imports into one ES module that plain `node` runs as a child process —
 * the crash tests SIGKILL such children. Packages stay imports of their installed files, by
 * absolute path, so that the bundle runs from a temporary folder; the folder and the file are
 * readable by every user, for children started under another uid.
 */
export async function bundleChild(entry: string): Promise<{ file: string; dir: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-child-'));
  chmodSync(dir, 0o755);
  const file = path.join(dir, `${path.basename(entry, '.ts')}.mjs`);
  const resolveFromRoot = createRequire(path.join(ROOT, 'package.json'));
  await build({
    entryPoints: [path.join(ROOT, entry)],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'silent',
    plugins: [
      {
        name: 'installed-packages',
        setup(b) {
          b.onResolve({ filter: /^[^./]/ }, (args) =>
            args.path.startsWith('node:')
              ? { path: args.path, external: true }
              : { path: resolveFromRoot.resolve(args.path), external: true },
          );
        },
      },
    ],
  });
  chmodSync(file, 0o644);
  return { file, dir };
}
