import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSigningKeys, signManifest } from '../../runtime/model/signature.js';

/**
 * Variants of a shipped model package, built in temporary folders: a damaged file, a stale
 * sha256, an extra file, a path that leaves the package, a new version. Signing goes through
 * runtime/model/signature.ts (signManifest), as a data scientist's tooling would.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The shipped int8 ONNX defect package: small (80 KB), and what gateways actually run. */
export const SHIPPED_PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');

/** vigil.json as tests edit it: any shape, so that they can also write invalid manifests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
export type ManifestJson = any;

/** Temporary folders of one test file; cleanup() removes every one. */
export class PackageWorkshop {
  private readonly temps: string[] = [];

  async tempDir(prefix = 'vigil-pkgs-'): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
    this.temps.push(dir);
    return dir;
  }

  /** A writable copy of a package at `dest`, or in a fresh temporary folder. */
  async copy(src = SHIPPED_PACKAGE, dest?: string): Promise<string> {
    const to = dest ?? path.join(await this.tempDir(), path.basename(src));
    await copyPackage(src, to);
    return to;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.temps.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  }
}

export async function copyPackage(src: string, dest: string): Promise<void> {
  await rm(dest, { recursive: true, force: true });
  await cp(src, dest, { recursive: true });
}

export async function readManifest(dir: string): Promise<ManifestJson> {
  return JSON.parse(await readFile(path.join(dir, 'vigil.json'), 'utf8')) as ManifestJson;
}

export async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/**
 * Rewrites vigil.json through `edit`; with `rehash`, every listed file that exists gets its
 * real sha256 again, so that only the edit differs.
 */
export async function editManifest(
  dir: string,
  edit: (m: ManifestJson) => void,
  rehash = true,
): Promise<void> {
  const m = await readManifest(dir);
  edit(m);
  if (rehash) {
    for (const name of Object.keys(m.files as Record<string, string>)) {
      m.files[name] = await sha256(path.join(dir, name)).catch(() => m.files[name] as string);
    }
  }
  await writeFile(path.join(dir, 'vigil.json'), `${JSON.stringify(m, null, 2)}\n`);
}

/** Flips one bit of a file (the model file by default), leaving vigil.json as it was. */
export async function corruptFile(dir: string, name?: string): Promise<string> {
  const file = name ?? ((await readManifest(dir)).file as string);
  const p = path.join(dir, file);
  const bytes = await readFile(p);
  bytes[bytes.length >> 1] ^= 0x10;
  await writeFile(p, bytes);
  return file;
}

/** Puts a file in the package that vigil.json does not list. */
export async function addUnlistedFile(dir: string, rel: string, content = 'extra'): Promise<void> {
  await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
  await writeFile(path.join(dir, rel), content);
}

/** Lists a file in vigil.json with a sha256 that is not its own (the file itself unchanged). */
export async function staleHash(dir: string, name?: string): Promise<string> {
  const m = await readManifest(dir);
  const file = name ?? (m.file as string);
  await editManifest(
    dir,
    (mm) => {
      mm.files[file] = createHash('sha256').update('something else').digest('hex');
    },
    false,
  );
  return file;
}

/**
 * Makes the package version `version`: the manifest says so, and a listed payload file of
 * `payloadBytes` bytes derived from the version makes its files differ from every other
 * version's, so that a mix of two versions can never pass as either.
 */
export async function makeVersion(dir: string, version: string, payloadBytes = 64 * 1024): Promise<void> {
  const payload = Buffer.alloc(payloadBytes, createHash('sha256').update(version).digest());
  await writeFile(path.join(dir, 'payload.bin'), payload);
  await editManifest(dir, (m) => {
    m.version = version;
    m.files['payload.bin'] = '';
  });
}

/** Signs the package with a fresh key pair (or `keys`) and returns the pair. */
export async function signPackage(
  dir: string,
  keys = generateSigningKeys(),
): Promise<{ publicKeyPem: string; privateKeyPem: string }> {
  await signManifest(dir, keys.privateKeyPem);
  return keys;
}
