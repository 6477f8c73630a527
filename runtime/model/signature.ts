import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { lstat, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { VigilError, errorMessage, type VigilErrorCode } from '../errors.js';
import { MANIFEST_FILE, SIGNATURE_FILE } from './package.js';

/**
 * Detached ed25519 signatures of a model package's manifest. vigil.json lists the sha256 of every
 * file and loadModelPackage refuses anything else in the folder, so a valid signature over the
 * exact bytes of vigil.json vouches for the whole package. vigil.json.sig holds the base64
 * (standard alphabet, optional trailing newline) of the 64-byte signature; public keys are PEM
 * SPKI files.
 */

/**
 * Whether a package folder holds a detached signature: a tool that rewrites its manifest
 * (reference distributions, a holdout) would invalidate it.
 */
export function isSignedPackage(dir: string): Promise<boolean> {
  return stat(path.join(dir, SIGNATURE_FILE)).then(
    () => true,
    () => false,
  );
}

export type SignaturePolicy = 'off' | 'verify' | 'require';

/** Why a package's signature was refused; the same words as RolloutReason. */
export type SignatureFailure = 'signature_missing' | 'signature_invalid';

/** The code of a refused signature; SignatureError.reason says missing or invalid. */
const SIGNATURE_ERROR_CODE: VigilErrorCode = 'VIGIL_ERR_MODEL_SIGNATURE';

export class SignatureError extends VigilError {
  readonly reason: SignatureFailure;
  constructor(reason: SignatureFailure, message: string, detail: Record<string, unknown>) {
    super(SIGNATURE_ERROR_CODE, message, { detail: { ...detail, reason } });
    this.name = 'SignatureError';
    this.reason = reason;
  }
}

export interface SignatureCheck {
  /** A signature was checked and is valid. */
  signed: boolean;
  /** Which of the given public keys it verified with. */
  keyIndex?: number;
  /** The package has a vigil.json.sig (whether or not it was checked). */
  present: boolean;
}

/** A public key as a KeyObject or PEM text. */
export type PublicKeyInput = KeyObject | string;

const SIGNATURE_BYTES = 64;
/** 64 bytes are 88 base64 characters, the last two '=' padding. */
const SIGNATURE_TEXT = /^([A-Za-z0-9+/]{86}==)\r?\n?$/;

/**
 * Checks the package's signature under `policy`:
 * - off: nothing is read; `signed` is false.
 * - verify: a package without vigil.json.sig passes unsigned; one with it must verify with one of
 *   the keys. With no keys configured a signature cannot be checked and the package passes
 *   unsigned: refusing it would add nothing, since an unsigned package passes anyway.
 * - require: the package must carry a signature that verifies with one of the keys.
 * Throws SignatureError (reason signature_missing or signature_invalid), or VigilError
 * VIGIL_ERR_CONFIG_INVALID when a key is not an ed25519 public key or `require` has no key.
 */
export async function verifyManifestSignature(
  dir: string,
  publicKeys: readonly PublicKeyInput[],
  policy: SignaturePolicy,
): Promise<SignatureCheck> {
  const root = path.resolve(dir);
  if (policy === 'off') return { signed: false, present: await exists(path.join(root, SIGNATURE_FILE)) };
  const keys = publicKeys.map((k, i) => toPublicKey(k, `public key ${i + 1} of ${publicKeys.length}`));
  if (policy === 'require' && keys.length === 0) {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_INVALID',
      'registry.signatures.policy is require, but no public key is configured (registry.signatures.publicKeys), ' +
        'so no package can ever be accepted. Add the PEM file of the signing key, or set the policy to verify.',
    );
  }

  const sigText = await readOptional(path.join(root, SIGNATURE_FILE));
  if (sigText === undefined) {
    if (policy === 'require') {
      throw new SignatureError(
        'signature_missing',
        `model package ${root} has no ${SIGNATURE_FILE}, and signatures are required (registry.signatures.policy: require). ` +
          `Sign the package (the base64 ed25519 signature of ${MANIFEST_FILE} in ${SIGNATURE_FILE}) and register it again.`,
        { package: root },
      );
    }
    return { signed: false, present: false };
  }
  if (keys.length === 0) return { signed: false, present: true };

  const match = SIGNATURE_TEXT.exec(sigText.toString('latin1'));
  const sig = match ? Buffer.from(match[1]!, 'base64') : undefined;
  if (!sig || sig.length !== SIGNATURE_BYTES) {
    throw new SignatureError(
      'signature_invalid',
      `model package ${root}: ${SIGNATURE_FILE} is not a signature (expected the base64 of ${SIGNATURE_BYTES} bytes, ` +
        `got ${sigText.length} bytes of something else). The package is damaged or was altered; do not run it.`,
      { package: root },
    );
  }
  const manifest = await readFile(path.join(root, MANIFEST_FILE)).catch((err: unknown) => {
    throw new SignatureError(
      'signature_invalid',
      `model package ${root}: ${MANIFEST_FILE} cannot be read to check its signature (${errorMessage(err)}).`,
      { package: root },
    );
  });
  const keyIndex = keys.findIndex((k) => verify(null, manifest, k, sig));
  if (keyIndex < 0) {
    throw new SignatureError(
      'signature_invalid',
      `model package ${root}: the signature in ${SIGNATURE_FILE} does not match ${MANIFEST_FILE} with any of the ` +
        `${keys.length} configured public key${keys.length > 1 ? 's' : ''}. Either the package was altered after it was ` +
        'signed, or it was signed with a key this gateway does not trust (registry.signatures.publicKeys). Do not run it.',
      { package: root, keys: keys.length },
    );
  }
  return { signed: true, keyIndex, present: true };
}

/**
 * Reads ed25519 public keys from PEM files (relative paths resolve against `baseDir`). Throws
 * VIGIL_ERR_CONFIG_INVALID naming the file that cannot be read or holds something else.
 */
export async function loadPublicKeys(
  files: readonly string[],
  baseDir = process.cwd(),
): Promise<KeyObject[]> {
  const keys: KeyObject[] = [];
  for (const f of files) {
    const file = path.resolve(baseDir, f);
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `signature public key ${file} cannot be read (${errorMessage(err)}); check registry.signatures.publicKeys.`,
        { cause: err, detail: { file } },
      );
    }
    keys.push(toPublicKey(pem, file));
  }
  return keys;
}

/**
 * Signs the package's vigil.json with an ed25519 private key (PEM PKCS#8 or KeyObject) and writes
 * vigil.json.sig. Returns the signature file's path.
 */
export async function signManifest(dir: string, privateKey: string | KeyObject): Promise<string> {
  const root = path.resolve(dir);
  const key = typeof privateKey === 'string' ? parsePrivateKey(privateKey) : privateKey;
  if (key.asymmetricKeyType !== 'ed25519' || key.type !== 'private') {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_INVALID',
      `signing key is a ${key.asymmetricKeyType ?? 'secret'} ${key.type} key; an ed25519 private key is needed`,
    );
  }
  const manifest = await readFile(path.join(root, MANIFEST_FILE));
  const sig = sign(null, manifest, key);
  const file = path.join(root, SIGNATURE_FILE);
  // Written beside and renamed, so that a package is never seen with half a signature.
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${sig.toString('base64')}\n`);
  await rename(tmp, file);
  return file;
}

/** A fresh ed25519 key pair as PEM text (SPKI public, PKCS#8 private). */
export function generateSigningKeys(): { publicKeyPem: string; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function toPublicKey(input: PublicKeyInput, where: string): KeyObject {
  let key: KeyObject;
  if (typeof input === 'string') {
    // createPublicKey would quietly derive the public half of a private key: a private key
    // has no business on a gateway, so say so instead.
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(input)) {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `${where} is a private key. Give gateways only the public key (openssl pkey -pubout), and keep the private key ` +
          'where packages are signed.',
        { detail: { key: where } },
      );
    }
    try {
      key = createPublicKey({ key: input, format: 'pem' });
    } catch (err) {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `${where} is not a PEM public key (${errorMessage(err)}); expected an ed25519 SPKI key ` +
          '(-----BEGIN PUBLIC KEY-----).',
        { cause: err, detail: { key: where } },
      );
    }
  } else {
    key = input;
  }
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519') {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_INVALID',
      `${where} is a ${key.asymmetricKeyType ?? 'secret'} ${key.type} key; package signatures use ed25519 public keys.`,
      { detail: { key: where } },
    );
  }
  return key;
}

function parsePrivateKey(pem: string): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_INVALID',
      `signing key is not a PEM private key (${errorMessage(err)})`,
      { cause: err },
    );
  }
}

async function readOptional(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SignatureError(
      'signature_invalid',
      `${file} cannot be read (${errorMessage(err)}); the package is damaged.`,
      { file },
    );
  }
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}
