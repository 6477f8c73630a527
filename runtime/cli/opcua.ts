import { browseAddressSpace, formatTree, OpcUaBrowseError } from '../../adapters/opcua/browse.js';
import { routeNodeOpcuaLogs } from '../../adapters/opcua/logging.js';
import { OpcUaSecurityMode, OpcUaSecurityPolicy } from '../config/sources/opcua.js';
import { errorMessage } from '../errors.js';
import { createLogger } from '../log.js';

export interface OpcUaBrowseCliOptions {
  depth?: number;
  root?: string;
  securityMode?: string;
  securityPolicy?: string;
  user?: string;
  password?: string;
  pki?: string;
  trustServer?: boolean;
  all?: boolean;
  json?: boolean;
  timeout?: number;
}

interface Output {
  write(text: string): unknown;
}

/**
 * `vigil opcua browse ENDPOINT`: prints the server's address space (below Objects by default) so
 * that an integrator can copy node ids into a source's items. Returns the exit code: 0 ok, 1 the
 * server could not be browsed, 2 bad arguments.
 */
export async function opcuaBrowseCommand(
  endpoint: string,
  opts: OpcUaBrowseCliOptions,
  io: { out: Output; err: Output } = { out: process.stdout, err: process.stderr },
): Promise<number> {
  const fail = (code: number, message: string) => {
    io.err.write(`vigil opcua browse: ${message}\n`);
    return code;
  };
  if (!/^opc\.tcp:\/\/[^\s/:]+(:\d{1,5})?(\/\S*)?$/.test(endpoint)) {
    return fail(2, `'${endpoint}' is not an OPC-UA endpoint URL; write it like opc.tcp://192.168.0.10:4840`);
  }
  const mode = OpcUaSecurityMode.safeParse(opts.securityMode ?? 'None');
  if (!mode.success) return fail(2, `--security-mode must be one of ${OpcUaSecurityMode.options.join(', ')}`);
  const policy = OpcUaSecurityPolicy.safeParse(opts.securityPolicy ?? 'Basic256Sha256');
  if (!policy.success) {
    return fail(2, `--security-policy must be one of ${OpcUaSecurityPolicy.options.join(', ')}`);
  }
  // node-opcua's own warnings would otherwise land on stdout, in the middle of the tree.
  routeNodeOpcuaLogs(createLogger({ level: process.env.VIGIL_LOG_LEVEL ?? 'warn' }));
  const password = opts.password ?? process.env.VIGIL_OPCUA_PASSWORD;
  try {
    const tree = await browseAddressSpace({
      endpoint,
      securityMode: mode.data,
      securityPolicy: policy.data,
      ...(opts.user ? { username: opts.user, password: password ?? '' } : {}),
      pkiFolder: opts.pki ?? 'vigil-data/pki/opcua',
      trustUnknownServer: opts.trustServer ?? false,
      ...(opts.depth !== undefined ? { depth: opts.depth } : {}),
      ...(opts.root ? { root: opts.root } : {}),
      ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout * 1000 } : {}),
      expandStandard: opts.all ?? false,
    });
    io.out.write(opts.json ? JSON.stringify(tree, null, 2) + '\n' : formatTree(tree));
    return 0;
  } catch (err) {
    return fail(1, err instanceof OpcUaBrowseError ? err.message : errorMessage(err));
  }
}
