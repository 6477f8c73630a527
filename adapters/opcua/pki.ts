import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { OPCUACertificateManager } from 'node-opcua-certificate-manager';

/**
 * Vigil's OPC-UA certificate folder, node-opcua's PKI layout:
 *
 *   <pkiFolder>/
 *     own/certs/client_certificate.pem   Vigil's certificate (created on first use; give it to the
 *                                        server's administrator if the server checks clients)
 *     own/private/private_key.pem        its private key (never leaves the gateway)
 *     trusted/certs/                     server certificates Vigil trusts (PEM or DER)
 *     trusted/crl/                       their revocation lists
 *     issuers/certs/, issuers/crl/       CA certificates that sign server certificates
 *     rejected/                          server certificates seen and refused: move one into
 *                                        trusted/certs/ to trust that server
 *
 * The trust lists are re-read before every connection attempt (no file watchers), so a
 * certificate moved into trusted/certs/ counts at the next retry without a restart. node-opcua
 * keeps refusing a certificate that is in rejected/ as well as in trusted/certs/ (copied rather
 * than moved), so such a leftover copy in rejected/ is removed first.
 */
export interface Pki {
  readonly folder: string;
  readonly manager: OPCUACertificateManager;
  /** Vigil's own certificate, to hand to the server's administrator. */
  readonly ownCertificateFile: string;
  readonly trustedFolder: string;
  readonly rejectedFolder: string;
  /**
   * Re-reads trusted/ and rejected/ from disk, after removing from rejected/ the certificates that
   * are also trusted; returns the files removed.
   */
  reload(): Promise<string[]>;
  /** The most recently refused certificate file, to name in a log line. */
  newestRejected(): Promise<string | undefined>;
  close(): Promise<void>;
}

export async function openPki(folder: string, options: { trustUnknownServer: boolean }): Promise<Pki> {
  const root = path.resolve(folder);
  await mkdir(root, { recursive: true });
  const manager = new OPCUACertificateManager({
    rootFolder: root,
    automaticallyAcceptUnknownCertificate: options.trustUnknownServer,
    disableFileWatchers: true,
  });
  await manager.initialize();
  const rejectedFolder = path.join(root, 'rejected');
  return {
    folder: root,
    manager,
    ownCertificateFile: path.join(root, 'own', 'certs', 'client_certificate.pem'),
    trustedFolder: path.join(root, 'trusted', 'certs'),
    rejectedFolder,
    reload: async () => {
      const trusted = path.join(root, 'trusted', 'certs');
      const trustedPrints = new Set<string>();
      for (const file of await listFiles(trusted)) {
        const print = await fingerprint(file);
        if (print) trustedPrints.add(print);
      }
      const removed: string[] = [];
      for (const file of await listFiles(rejectedFolder)) {
        const print = await fingerprint(file);
        if (print && trustedPrints.has(print)) {
          await unlink(file).then(
            () => removed.push(file),
            () => undefined,
          );
        }
      }
      await manager.reloadCertificates();
      return removed;
    },
    newestRejected: async () => {
      let best: { file: string; mtime: number } | undefined;
      for (const file of await listFiles(rejectedFolder)) {
        const s = await stat(file).catch(() => undefined);
        if (s?.isFile() && (!best || s.mtimeMs > best.mtime)) best = { file, mtime: s.mtimeMs };
      }
      return best?.file;
    },
    close: () => manager.dispose(),
  };
}

async function listFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => !n.startsWith('.')).map((n) => path.join(dir, n));
}

/** SHA-1 of a certificate's DER bytes, from a PEM or DER file; undefined when it is neither. */
async function fingerprint(file: string): Promise<string | undefined> {
  const bytes = await readFile(file).catch(() => undefined);
  if (!bytes) return undefined;
  const text = bytes.subarray(0, 64).toString('latin1');
  let der: Buffer = bytes;
  if (text.includes('-----BEGIN')) {
    const m = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(bytes.toString('latin1'));
    if (!m) return undefined;
    der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  }
  return createHash('sha1').update(der).digest('hex');
}
