import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VigilError } from '../../runtime/errors.js';
import {
  SignatureError,
  generateSigningKeys,
  loadPublicKeys,
  signManifest,
  verifyManifestSignature,
} from '../../runtime/model/signature.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { PackageWorkshop, editManifest, signPackage } from '../helpers/model-packages.js';

async function rejection(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  return err as VigilError;
}

describe('manifest signatures', () => {
  const shop = new PackageWorkshop();
  const trusted = generateSigningKeys();
  const stranger = generateSigningKeys();
  let signedDir: string;
  let unsignedDir: string;

  beforeAll(async () => {
    signedDir = await shop.copy();
    await signPackage(signedDir, trusted);
    unsignedDir = await shop.copy();
  });
  afterAll(() => shop.cleanup());

  it('verifies a signed package with the key that signed it, and says which key it was', async () => {
    const sig = await readFile(path.join(signedDir, 'vigil.json.sig'), 'utf8');
    expect(sig).toMatch(/^[A-Za-z0-9+/]{86}==\n$/);
    await expect(verifyManifestSignature(signedDir, [trusted.publicKeyPem], 'verify')).resolves.toEqual({
      signed: true,
      keyIndex: 0,
      present: true,
    });
    await expect(
      verifyManifestSignature(signedDir, [stranger.publicKeyPem, trusted.publicKeyPem], 'require'),
    ).resolves.toEqual({ signed: true, keyIndex: 1, present: true });
    // The signature file is part of a package: loading it is unaffected.
    await expect(loadModelPackage(signedDir)).resolves.toBeDefined();
  });

  it('accepts the signature with or without its trailing newline, and a CRLF one', async () => {
    const dir = await shop.copy(signedDir);
    const b64 = (await readFile(path.join(dir, 'vigil.json.sig'), 'utf8')).trim();
    for (const text of [b64, `${b64}\r\n`]) {
      await writeFile(path.join(dir, 'vigil.json.sig'), text);
      await expect(verifyManifestSignature(dir, [trusted.publicKeyPem], 'require')).resolves.toMatchObject({
        signed: true,
      });
    }
  });

  it('refuses an unsigned package only when signatures are required', async () => {
    await expect(verifyManifestSignature(unsignedDir, [trusted.publicKeyPem], 'verify')).resolves.toEqual({
      signed: false,
      present: false,
    });
    const err = await rejection(verifyManifestSignature(unsignedDir, [trusted.publicKeyPem], 'require'));
    expect(err).toBeInstanceOf(SignatureError);
    expect((err as SignatureError).reason).toBe('signature_missing');
    expect(err.detail?.reason).toBe('signature_missing');
    expect(err.message).toContain(unsignedDir);
    expect(err.message).toMatch(/no vigil\.json\.sig, and signatures are required/);
  });

  it('refuses a manifest changed after signing, even by whitespace alone', async () => {
    const edited = await shop.copy(signedDir);
    await editManifest(edited, (m) => {
      m.postprocessing.threshold = 0.99;
    });
    const reformatted = await shop.copy(signedDir);
    const bytes = await readFile(path.join(reformatted, 'vigil.json'), 'utf8');
    await writeFile(path.join(reformatted, 'vigil.json'), `${bytes}\n`);
    for (const dir of [edited, reformatted]) {
      for (const policy of ['verify', 'require'] as const) {
        const err = await rejection(verifyManifestSignature(dir, [trusted.publicKeyPem], policy));
        expect((err as SignatureError).reason).toBe('signature_invalid');
        expect(err.message).toMatch(/does not match vigil\.json with any of the 1 configured public key\b/);
        expect(err.message).toMatch(/altered after it was signed/);
      }
      // Whatever the file says, 'off' does not look.
      await expect(verifyManifestSignature(dir, [trusted.publicKeyPem], 'off')).resolves.toEqual({
        signed: false,
        present: true,
      });
    }
  });

  it('refuses a signature made with a key that is not trusted', async () => {
    const err = await rejection(
      verifyManifestSignature(
        signedDir,
        [stranger.publicKeyPem, generateSigningKeys().publicKeyPem],
        'verify',
      ),
    );
    expect((err as SignatureError).reason).toBe('signature_invalid');
    expect(err.message).toContain('any of the 2 configured public keys');
  });

  it.each([
    ['not base64 at all', 'this is not a signature\n'],
    ['an empty file', ''],
    ['63 bytes', `${Buffer.alloc(63, 7).toString('base64')}\n`],
    ['65 bytes', `${Buffer.alloc(65, 7).toString('base64')}\n`],
    ['base64url', `${Buffer.alloc(64, 0xfb).toString('base64url')}==\n`],
    [
      'two signatures',
      `${Buffer.alloc(64, 7).toString('base64')}\n${Buffer.alloc(64, 7).toString('base64')}\n`,
    ],
    ['64 zero bytes', `${Buffer.alloc(64).toString('base64')}\n`],
  ])('refuses a garbled signature file: %s', async (_what, text) => {
    const dir = await shop.copy(signedDir);
    await writeFile(path.join(dir, 'vigil.json.sig'), text);
    const err = await rejection(verifyManifestSignature(dir, [trusted.publicKeyPem], 'verify'));
    expect(err).toBeInstanceOf(SignatureError);
    expect((err as SignatureError).reason).toBe('signature_invalid');
  });

  it('passes a signed package unchecked under verify when no key is configured, and refuses require without keys', async () => {
    await expect(verifyManifestSignature(signedDir, [], 'verify')).resolves.toEqual({
      signed: false,
      present: true,
    });
    const err = await rejection(verifyManifestSignature(signedDir, [], 'require'));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect(err.message).toMatch(/policy is require, but no public key is configured/);
  });

  it('loads public keys from PEM files and names the file it cannot use', async () => {
    const dir = await shop.tempDir();
    await writeFile(path.join(dir, 'trusted.pem'), trusted.publicKeyPem);
    await writeFile(path.join(dir, 'garbage.pem'), 'hello\n');
    await writeFile(path.join(dir, 'private.pem'), trusted.privateKeyPem);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    await writeFile(path.join(dir, 'rsa.pem'), rsa.export({ type: 'spki', format: 'pem' }));

    const keys = await loadPublicKeys(['trusted.pem'], dir);
    await expect(verifyManifestSignature(signedDir, keys, 'require')).resolves.toMatchObject({ keyIndex: 0 });

    const cases: [string, RegExp][] = [
      ['missing.pem', /cannot be read .*ENOENT.*registry\.signatures\.publicKeys/],
      ['garbage.pem', /is not a PEM public key/],
      ['private.pem', /is a private key\. Give gateways only the public key/],
      ['rsa.pem', /is a rsa public key; package signatures use ed25519 public keys/],
    ];
    for (const [name, message] of cases) {
      const err = await rejection(loadPublicKeys(['trusted.pem', name], dir));
      expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
      expect(err.message).toContain(path.join(dir, name));
      expect(err.message).toMatch(message);
    }
    // PEM text handed in directly is checked the same way.
    const err = await rejection(verifyManifestSignature(signedDir, ['not a key'], 'verify'));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect(err.message).toMatch(/^public key 1 of 1 is not a PEM public key/);
  });

  it('signs only with an ed25519 private key', async () => {
    const dir = await shop.copy(unsignedDir);
    const err = await rejection(signManifest(dir, trusted.publicKeyPem));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const err2 = await rejection(signManifest(dir, rsa));
    expect(err2.message).toMatch(/rsa private key; an ed25519 private key is needed/);
  });
});
