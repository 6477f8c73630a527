import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * The lock on released schema versions: docs/schemas/SHA256SUMS lists every file of every
 * released version folder with its SHA-256 (the format `sha256sum` writes and `sha256sum -c`
 * reads). A released folder is frozen: a file changed, removed or added there is a broken
 * promise to every consumer who validates against it. A folder not in the list is a draft.
 */

export const SUMS_FILE = 'SHA256SUMS';

/** Relative path (`v1/status.schema.json`) -> sha256, from the text of SHA256SUMS. */
export function parseSums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([0-9a-f]{64}) [ *](\S+)$/.exec(line);
    if (!m) throw new Error(`${SUMS_FILE} line ${i + 1} is not '<sha256>  <version>/<file>': ${line}`);
    sums.set(m[2]!, m[1]!);
  }
  return sums;
}

/** The version folders the list covers: the released ones. */
export function releasedVersions(sums: ReadonlyMap<string, string>): string[] {
  return [...new Set([...sums.keys()].map((f) => f.split('/')[0]!))].sort();
}

function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(path.join(dir, name)).isDirectory()) out.push(...filesUnder(path.join(dir, name), rel));
    else out.push(rel);
  }
  return out;
}

function frozenMessage(version: string, what: string): string {
  const major = version.split('.')[0]!;
  const nextMajor = `v${Number(major.slice(1)) + 1}`;
  return (
    `${what}: ${version} is released and frozen. Put the change in a new version folder ` +
    `(${major}.<n> for a compatible addition, ${nextMajor} for a breaking change) and document it in ` +
    `docs/CONTRACTS.md ("Versioning").`
  );
}

/** What breaks the lock, one readable line per file; empty when every released folder is intact. */
export function lockProblems(schemasDir: string, sums: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const version of releasedVersions(sums)) {
    const dir = path.join(schemasDir, version);
    const listed = [...sums.keys()].filter((f) => f.startsWith(`${version}/`));
    for (const rel of listed) {
      const file = path.join(schemasDir, rel);
      if (!existsSync(file)) {
        problems.push(frozenMessage(version, `docs/schemas/${rel} was removed`));
        continue;
      }
      // LF line endings, as committed: a checkout that turns them into CRLF changes nothing that matters.
      const text = readFileSync(file, 'utf8').replaceAll('\r\n', '\n');
      const hash = createHash('sha256').update(text).digest('hex');
      if (hash !== sums.get(rel)) problems.push(frozenMessage(version, `docs/schemas/${rel} changed`));
    }
    if (!existsSync(dir)) continue;
    for (const rel of filesUnder(dir).map((f) => `${version}/${f}`))
      if (!sums.has(rel)) problems.push(frozenMessage(version, `docs/schemas/${rel} was added`));
  }
  return problems;
}
