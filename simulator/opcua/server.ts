import { mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import client from 'node-opcua-client';
import server from 'node-opcua-server';
import { OPCUACertificateManager } from 'node-opcua-certificate-manager';
import type { MachineSnapshot, SimMachine, TagValue } from '../machines/types.js';
import { quietNodeOpcua } from './quiet.js';

const { DataType, DataValue, MessageSecurityMode, SecurityPolicy, StatusCodes, Variant } = client;
const { OPCUAServer } = server;
type StatusCode = InstanceType<typeof client.StatusCode>;

/**
 * The simulator's OPC-UA server: the machines of a simulated plant as a PLC or an OPC-UA gateway
 * would expose them. It is the outside world, so it imports nothing from Vigil's runtime.
 *
 * Address space (namespace 1, `urn:vigil:simulator` ):
 *
 *   Objects/
 *     Plant/                         (folder, ns=1;s=Plant)
 *       <asset>/                     (object, ns=1;s=<asset>)
 *         <tag>                      (Double AnalogItem, ns=1;s=<asset>.<tag>, EURange = the
 *                                     tag's min..max)
 *
 * e.g. `ns=1;s=pump-1.temperature`. Each read or sampling takes the machine's snapshot: the value,
 * the status (a TagValue status such as `BadSensorFailure` becomes that real StatusCode; a bad or
 * uncertain quality without one becomes plain Bad / Uncertain) and the source timestamp
 * (snapshot.time). A bad value carries no number (a Null variant), as a PLC reports a broken
 * sensor.
 *
 * With `plantNamespace` the plant lives in a namespace of that URI instead, registered after
 * `extraNamespaces`: its index then depends on the configuration, as on a gateway whose namespace
 * table is built from the modules it loads.
 */

export type SimSecurityMode = 'None' | 'Sign' | 'SignAndEncrypt';

export interface SimOpcUaServerOptions {
  /** TCP port; 0 picks a free one at the first start, which later restarts keep. */
  port: number;
  machines: readonly SimMachine[];
  /** Security modes offered; default all three. Sign and SignAndEncrypt use Basic256Sha256 and the AES policies. */
  securityModes?: readonly SimSecurityMode[];
  /** When given, anonymous sessions are refused and only these users (name -> password) may log in. */
  users?: Record<string, string>;
  /**
   * PKI folder of the server (own/ certificate and key, trusted/ and rejected/ client
   * certificates). Created on the first start with a self-signed certificate; restarts reuse it so
   * that clients that trusted the server keep trusting it.
   */
  pkiFolder: string;
  /**
   * Accept any client certificate (default true: the simulator is for tests and demos). When false
   * a client certificate must be in `<pkiFolder>/trusted/certs`.
   */
  trustAllClients?: boolean;
  /**
   * URI of a namespace of its own for the plant, registered after the server's own namespace (1)
   * and after `extraNamespaces`; clients then name the nodes `nsu=<uri>;s=<asset>.<tag>`. Default:
   * the plant is in namespace 1, `urn:vigil:simulator`.
   */
  plantNamespace?: string;
  /**
   * Empty namespaces registered before the plant's own, each one moving `plantNamespace` one index
   * further: a server restarted with this list changed renumbers the plant's nodes.
   */
  extraNamespaces?: readonly string[];
  /** Fastest sampling the variables allow, in ms (default 50). */
  minimumSamplingIntervalMs?: number;
  log?: (line: string) => void;
}

/** The node id of a machine's tag, as clients configure it. */
export function simNodeId(asset: string, tag: string): string {
  return `ns=1;s=${asset}.${tag}`;
}

const SECURITY_MODE = {
  None: MessageSecurityMode.None,
  Sign: MessageSecurityMode.Sign,
  SignAndEncrypt: MessageSecurityMode.SignAndEncrypt,
} as const;

export class SimOpcUaServer {
  private server: InstanceType<typeof OPCUAServer> | undefined;
  private certificateManager: OPCUACertificateManager | undefined;
  private userCertificateManager: OPCUACertificateManager | undefined;
  private port: number;
  private readonly log: (line: string) => void;
  /** One snapshot per machine for a few ms, so that sampling many tags does not step the physics per tag. */
  private readonly snapshots = new Map<string, MachineSnapshot>();

  constructor(private readonly options: SimOpcUaServerOptions) {
    this.port = options.port;
    this.log = options.log ?? (() => undefined);
    quietNodeOpcua();
  }

  get endpointUrl(): string {
    return `opc.tcp://127.0.0.1:${this.port}`;
  }

  /** The server's own certificate file (PEM), for a client's trusted/ folder. */
  get certificateFile(): string {
    return path.join(this.options.pkiFolder, 'own', 'certs', 'certificate.pem');
  }

  /** The server's certificate as PEM text (after the first start). */
  certificatePem(): string {
    return readFileSync(this.certificateFile, 'utf8');
  }

  async start(): Promise<{ endpointUrl: string }> {
    if (this.server) return { endpointUrl: this.endpointUrl };
    await mkdir(this.options.pkiFolder, { recursive: true });
    const certificateManager = new OPCUACertificateManager({
      rootFolder: this.options.pkiFolder,
      automaticallyAcceptUnknownCertificate: this.options.trustAllClients ?? true,
    });
    await certificateManager.initialize();
    // The trust lists as they are on disk now (a test or an operator may have moved files).
    await certificateManager.reloadCertificates();
    this.certificateManager = certificateManager;
    // X.509 user tokens are not offered, but node-opcua would otherwise keep this trust list in
    // the user's home folder; keep everything of the simulator in its own folder.
    const userCertificateManager = new OPCUACertificateManager({
      rootFolder: path.join(this.options.pkiFolder, 'users'),
      automaticallyAcceptUnknownCertificate: false,
    });
    await userCertificateManager.initialize();
    this.userCertificateManager = userCertificateManager;

    const modes = this.options.securityModes ?? ['None', 'Sign', 'SignAndEncrypt'];
    const secure = modes.some((m) => m !== 'None');
    const users = this.options.users;
    const opcua = new OPCUAServer({
      port: this.port,
      hostname: '127.0.0.1',
      alternateHostname: ['localhost'],
      resourcePath: '',
      serverCertificateManager: certificateManager,
      userCertificateManager,
      securityModes: modes.map((m) => SECURITY_MODE[m]),
      securityPolicies: [
        ...(modes.includes('None') ? [SecurityPolicy.None] : []),
        ...(secure
          ? [
              SecurityPolicy.Basic256Sha256,
              SecurityPolicy.Aes128_Sha256_RsaOaep,
              SecurityPolicy.Aes256_Sha256_RsaPss,
            ]
          : []),
      ],
      allowAnonymous: users === undefined,
      ...(users
        ? {
            userManager: {
              isValidUser: (user: string, password: string) =>
                Object.hasOwn(users, user) && users[user] === password,
            },
          }
        : {}),
      serverInfo: { applicationUri: 'urn:vigil:simulator', productUri: 'urn:vigil:simulator' },
      buildInfo: { productName: 'Vigil simulator', manufacturerName: 'Vigil' },
      // Quick restarts in tests: do not wait for sessions to say goodbye.
      timeout: 10_000,
    });
    await opcua.initialize();
    this.populate(opcua);
    await opcua.start();
    this.server = opcua;
    const address = opcua.endpoints[0]?.port;
    if (typeof address === 'number' && address > 0) this.port = address;
    this.log(`OPC-UA simulator listening on ${this.endpointUrl} (${modes.join(', ')})`);
    return { endpointUrl: this.endpointUrl };
  }

  /** Stops listening and drops every session and subscription, as a PLC that is switched off. */
  async stop(): Promise<void> {
    const opcua = this.server;
    this.server = undefined;
    if (opcua) {
      await opcua.shutdown(0);
      opcua.dispose();
      this.log('OPC-UA simulator stopped');
    }
    for (const cm of [this.certificateManager, this.userCertificateManager]) await cm?.dispose();
    this.certificateManager = undefined;
    this.userCertificateManager = undefined;
  }

  /** A new server process on the same port and PKI, with no memory of the sessions before. */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  private populate(opcua: InstanceType<typeof OPCUAServer>): void {
    const addressSpace = opcua.engine.addressSpace;
    if (!addressSpace) throw new Error('OPC-UA simulator: the address space was not created');
    for (const uri of this.options.extraNamespaces ?? []) addressSpace.registerNamespace(uri);
    const namespace = this.options.plantNamespace
      ? addressSpace.registerNamespace(this.options.plantNamespace)
      : addressSpace.getOwnNamespace();
    const plant = namespace.addFolder(addressSpace.rootFolder.objects, {
      nodeId: 's=Plant',
      browseName: 'Plant',
    });
    const minimumSamplingInterval = this.options.minimumSamplingIntervalMs ?? 50;
    for (const machine of this.options.machines) {
      const asset = namespace.addObject({
        organizedBy: plant,
        nodeId: `s=${machine.asset}`,
        browseName: machine.asset,
      });
      for (const tag of machine.tags) {
        // AnalogItemType with the sensor's range as EURange, as PLCs expose measurements: it is
        // what a percent deadband is computed against.
        namespace.addAnalogDataItem({
          componentOf: asset,
          nodeId: `s=${machine.asset}.${tag.name}`,
          browseName: tag.name,
          description: tag.description,
          dataType: 'Double',
          engineeringUnitsRange: { low: tag.min, high: tag.max },
          minimumSamplingInterval,
          value: { timestamped_get: () => this.read(machine, tag.name) },
        });
      }
    }
  }

  private read(machine: SimMachine, tag: string): InstanceType<typeof DataValue> {
    const snapshot = this.snapshot(machine);
    const tv: TagValue | undefined = snapshot.values[tag];
    const sourceTimestamp = new Date(snapshot.time);
    if (!tv) {
      return new DataValue({
        statusCode: StatusCodes.BadNoData,
        sourceTimestamp,
        serverTimestamp: new Date(),
      });
    }
    const statusCode = statusOf(tv);
    const withValue = tv.quality !== 'bad' && Number.isFinite(tv.value);
    return new DataValue({
      value: withValue
        ? new Variant({ dataType: DataType.Double, value: tv.value })
        : new Variant({ dataType: DataType.Null }),
      statusCode,
      sourceTimestamp,
      serverTimestamp: new Date(),
    });
  }

  private snapshot(machine: SimMachine): MachineSnapshot {
    const cached = this.snapshots.get(machine.asset);
    const now = Date.now();
    if (cached && now - cached.time < 5) return cached;
    const fresh = machine.snapshot();
    this.snapshots.set(machine.asset, fresh);
    return fresh;
  }
}

/** The StatusCode a TagValue stands for: its named status when OPC-UA knows it, else plain Bad/Uncertain. */
export function statusOf(tv: TagValue): StatusCode {
  if (tv.quality === 'good') return StatusCodes.Good;
  const named = tv.status
    ? (StatusCodes as unknown as Record<string, StatusCode | undefined>)[tv.status]
    : undefined;
  if (named && typeof named === 'object') return named;
  return tv.quality === 'bad' ? StatusCodes.Bad : StatusCodes.Uncertain;
}
