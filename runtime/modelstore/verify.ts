import { VigilError } from '../errors.js';
import { loadModelPackage, type ModelPackage } from '../model/package.js';
import {
  SignatureError,
  verifyManifestSignature,
  type PublicKeyInput,
  type SignatureCheck,
  type SignaturePolicy,
} from '../model/signature.js';
import type { RolloutReason } from '../rollout/types.js';

export interface PackageVerification {
  pkg: ModelPackage;
  signature: SignatureCheck;
}

/**
 * Everything checked before a downloaded package may be installed: the manifest's signature
 * under the policy, then the manifest itself, the sha256 of every file and that nothing else is
 * there. The function to hand to ModelStore.install.
 */
export async function verifyPackage(
  dir: string,
  signatures: { policy: SignaturePolicy; publicKeys: readonly PublicKeyInput[] },
): Promise<PackageVerification> {
  const signature = await verifyManifestSignature(dir, signatures.publicKeys, signatures.policy);
  const pkg = await loadModelPackage(dir);
  return { pkg, signature };
}

/**
 * The rollout reason for a package that verifyPackage refused; undefined for errors that say
 * nothing about the package (a key that cannot be read, a disk error).
 */
export function refusalReason(err: unknown): RolloutReason | undefined {
  if (err instanceof SignatureError) return err.reason;
  if (!(err instanceof VigilError)) return undefined;
  if (err.code === 'VIGIL_ERR_MODEL_FILE_MISMATCH') {
    return typeof err.detail?.expected === 'string' && typeof err.detail?.actual === 'string'
      ? 'sha256_mismatch'
      : 'bad_package';
  }
  if (err.code === 'VIGIL_ERR_MANIFEST_INVALID') return 'bad_package';
  return undefined;
}
