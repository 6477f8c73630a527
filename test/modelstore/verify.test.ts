import { execFileSync } from 'node:child_process';
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManifestError, VigilError } from '../../runtime/errors.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { generateSigningKeys } from '../../runtime/model/signature.js';
import { refusalReason, verifyPackage } from '../../runtime/modelstore/verify.js';
import {
  PackageWorkshop,
  addUnlistedFile,
  corruptFile,
  editManifest,
  makeVersion,
  readManifest,
  sha256,
  signPackage,
  staleHash,
} from '../helpers/model-packages.js';

const shop = new PackageWorkshop();
afterEach(() => shop.cleanup());

async function refusal(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  return err as VigilError;
}

const OFF = { policy: 'off', publicKeys: [] } as const;

describe('verifyPackage on variants of the shipped package', () => {
  it('accepts the shipped package, unsigned under verify and signed under require', async () => {
    const dir = await shop.copy();
    const unsigned = await verifyPackage(dir, { policy: 'verify', publicKeys: [] });
    expect(unsigned.pkg.manifest.name).toBe('defect-cnn');
    expect(unsigned.signature).toEqual({ signed: false, present: false });
    const keys = await signPackage(dir);
    const signed = await verifyPackage(dir, { policy: 'require', publicKeys: [keys.publicKeyPem] });
    expect(signed.signature).toEqual({ signed: true, keyIndex: 0, present: true });
  });

  it('refuses a damaged model file as a sha256 mismatch naming the file', async () => {
    const dir = await shop.copy();
    const file = await corruptFile(dir);
    const err = await refusal(verifyPackage(dir, OFF));
    expect(err.code).toBe('VIGIL_ERR_MODEL_FILE_MISMATCH');
    expect(err.message).toContain(`'${file}'`);
    expect(err.detail).toMatchObject({ file, expected: (await readManifest(dir)).files[file] });
    expect(err.detail?.actual).toBe(await sha256(path.join(dir, file)));
    expect(refusalReason(err)).toBe('sha256_mismatch');
  });

  it('refuses a manifest whose sha256 is not the file’s', async () => {
    const dir = await shop.copy();
    const file = await staleHash(dir);
    const err = await refusal(verifyPackage(dir, OFF));
    expect(err.message).toContain(`sha256 of '${file}'`);
    expect(refusalReason(err)).toBe('sha256_mismatch');
  });

  it('refuses a signed package whose manifest was re-hashed to match a swapped model file', async () => {
    const dir = await shop.copy();
    const keys = await signPackage(dir);
    await corruptFile(dir);
    await editManifest(dir, () => undefined); // re-hash: the manifest now matches the files
    await expect(loadModelPackage(dir)).resolves.toBeDefined();
    const err = await refusal(verifyPackage(dir, { policy: 'verify', publicKeys: [keys.publicKeyPem] }));
    expect(refusalReason(err)).toBe('signature_invalid');
  });

  it('refuses unlisted files, in the top folder or below, as a bad package', async () => {
    for (const extra of ['notes.txt', 'lib/payload.so', 'vigil.json.sig.bak']) {
      const dir = await shop.copy();
      await addUnlistedFile(dir, extra);
      const err = await refusal(verifyPackage(dir, OFF));
      expect(err.code).toBe('VIGIL_ERR_MODEL_FILE_MISMATCH');
      expect(err.message).toContain(`unexpected file '${extra}' not listed in vigil.json`);
      expect(refusalReason(err)).toBe('bad_package');
    }
  });

  it.each([['../outside.bin'], ['/etc/passwd'], ['sub/../../x'], ['./model.onnx'], ['a//b'], ['..\\..\\x']])(
    'refuses the path-traversal entry %s in the manifest’s file list',
    async (entry) => {
      const dir = await shop.copy();
      await editManifest(
        dir,
        (m) => {
          m.files[entry] = '0'.repeat(64);
        },
        false,
      );
      const err = await refusal(verifyPackage(dir, OFF));
      expect(err).toBeInstanceOf(ManifestError);
      expect(err.message).toContain(`'${entry}' must be a plain relative path inside the package`);
      expect(refusalReason(err)).toBe('bad_package');
    },
  );

  it('refuses a listed file that is a symbolic link leaving the package, even with the right sha256', async () => {
    const outside = await shop.tempDir();
    const dir = await shop.copy();
    await rename(path.join(dir, 'model.onnx'), path.join(outside, 'model.onnx'));
    await symlink(path.join(outside, 'model.onnx'), path.join(dir, 'model.onnx'));
    const err = await refusal(verifyPackage(dir, OFF));
    expect(err).toBeInstanceOf(ManifestError);
    expect(err.message).toContain(
      `files.model.onnx: resolves to ${path.join(outside, 'model.onnx')}, outside`,
    );

    // The same through a linked folder.
    const dir2 = await shop.copy();
    await mkdir(path.join(outside, 'lib'));
    await writeFile(path.join(outside, 'lib', 'extra.bin'), 'x');
    await symlink(path.join(outside, 'lib'), path.join(dir2, 'lib'));
    await editManifest(dir2, (m) => {
      m.files['lib/extra.bin'] = '';
    });
    const err2 = await refusal(verifyPackage(dir2, OFF));
    expect(err2.message).toContain('files.lib/extra.bin: resolves to');
  });

  it('refuses an unlisted symbolic link, and a linked vigil.json or signature', async () => {
    const outside = await shop.tempDir();
    await writeFile(path.join(outside, 'secret'), 'x');
    const dir = await shop.copy();
    await symlink(path.join(outside, 'secret'), path.join(dir, 'link'));
    let err = await refusal(verifyPackage(dir, OFF));
    expect(err.message).toContain("unexpected file 'link'");

    const dir2 = await shop.copy();
    await rename(path.join(dir2, 'vigil.json'), path.join(outside, 'vigil.json'));
    await symlink(path.join(outside, 'vigil.json'), path.join(dir2, 'vigil.json'));
    err = await refusal(verifyPackage(dir2, OFF));
    expect(err.message).toContain('vigil.json is a symbolic link');
    expect(refusalReason(err)).toBe('bad_package');

    const dir3 = await shop.copy();
    const keys = generateSigningKeys();
    await signPackage(dir3, keys);
    await rename(path.join(dir3, 'vigil.json.sig'), path.join(outside, 'vigil.json.sig'));
    await symlink(path.join(outside, 'vigil.json.sig'), path.join(dir3, 'vigil.json.sig'));
    err = await refusal(verifyPackage(dir3, { policy: 'verify', publicKeys: [keys.publicKeyPem] }));
    expect(err.message).toContain('vigil.json.sig is a symbolic link');
  });

  it('refuses a listed entry that is a folder or a FIFO instead of a file, without hanging on the FIFO', async () => {
    const dir = await shop.copy();
    await mkdir(path.join(dir, 'weights'));
    await editManifest(dir, (m) => {
      m.files.weights = '0'.repeat(64);
    });
    let err = await refusal(verifyPackage(dir, OFF));
    expect(err.message).toContain("'weights' listed in vigil.json is not a regular file");

    const dir2 = await shop.copy();
    execFileSync('mkfifo', [path.join(dir2, 'pipe')]);
    await editManifest(
      dir2,
      (m) => {
        m.files.pipe = '0'.repeat(64);
      },
      false,
    );
    err = await refusal(verifyPackage(dir2, OFF));
    expect(err.message).toContain("'pipe' listed in vigil.json is not a regular file");
    expect(refusalReason(err)).toBe('bad_package');
  });

  it('tells versions made by makeVersion apart', async () => {
    const a = await shop.copy();
    const b = await shop.copy();
    await makeVersion(a, '7');
    await makeVersion(b, '8');
    expect((await verifyPackage(a, OFF)).pkg.manifest.version).toBe('7');
    expect(await sha256(path.join(a, 'payload.bin'))).not.toBe(await sha256(path.join(b, 'payload.bin')));
  });
});
