import { chmodSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { pino, type Logger } from 'pino';
import type { Reading } from '../../runtime/telemetry/reading.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A logger that keeps every line it logs, parsed, for assertions on what the store said. */
export function captureLogger(): {
  log: Logger;
  lines: { level: number; msg: string; [k: string]: unknown }[];
} {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

export const LEVEL = { info: 30, warn: 40, error: 50 } as const;

/** `n` readings of one asset, tags t0..t(n-1), received at `receivedAt`. */
export function readings(
  n: number,
  opts: { source?: string; receivedAt?: number; tag?: string } = {},
): Reading[] {
  const receivedAt = opts.receivedAt ?? 1_764_000_000_000;
  return Array.from({ length: n }, (_, i) => ({
    source: opts.source ?? 'opc',
    asset: 'pump-1',
    tag: opts.tag ?? `t${i}`,
    value: i,
    quality: 'good' as const,
    sourceTime: receivedAt - 3,
    serverTime: null,
    receivedAt,
  }));
}

/**
 * Bundles a TypeScript entry under test/store (and the runtime code it imports) into one ES
 * module that plain `node` runs as a child process; packages stay imports of their installed
 * files, by absolute path, so that the bundle runs from a temporary folder. The folder is
 * readable by every user, for children started under another uid.
 */
export async function bundleChild(entry: string): Promise<{ file: string; dir: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-store-child-'));
  chmodSync(dir, 0o755);
  const file = path.join(dir, `${path.basename(entry, '.ts')}.mjs`);
  const resolveFromRoot = createRequire(path.join(ROOT, 'package.json'));
  await build({
    entryPoints: [path.join(ROOT, 'test/store', entry)],
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
