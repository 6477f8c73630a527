import client from 'node-opcua-client';
import type { BrowseResult, ClientSession, DataValue, ReferenceDescription } from 'node-opcua-client';
import {
  createClient,
  explainFailure,
  userIdentity,
  type FailureKind,
  type SecurityModeName,
  type SecurityPolicyName,
} from './client.js';
import { openPki } from './pki.js';
import { qualityOf, statusName } from './status.js';

const {
  AttributeIds,
  BrowseDirection,
  DataType,
  NodeClass,
  ReferenceTypeIds,
  VariantArrayType,
  resolveNodeId,
} = client;

/**
 * The address space walk behind `vigil opcua browse`: what an integrator needs to pick node ids
 * for a source's items (browse name, node id, class, and for variables the data type and value).
 */

export interface BrowseOptions {
  endpoint: string;
  securityMode?: SecurityModeName;
  securityPolicy?: SecurityPolicyName;
  username?: string;
  password?: string;
  /** Certificate folder, as for a source (own certificate, trusted/ and rejected/ servers). */
  pkiFolder: string;
  trustUnknownServer?: boolean;
  /** Levels below the start node to walk (default 6). */
  depth?: number;
  /** Where to start (default the Objects folder, i=85). */
  root?: string;
  /** Give up on a server that does not answer within this long (ms; default 15 000). */
  timeoutMs?: number;
  /** Also expand the OPC-UA standard's own nodes (namespace 0: Server, diagnostics); default false. */
  expandStandard?: boolean;
  /** Stop after this many nodes (default 5 000), so that a huge server does not flood the screen. */
  maxNodes?: number;
}

export interface BrowsedNode {
  browseName: string;
  nodeId: string;
  nodeClass: string;
  /** Variables only. */
  dataType?: string;
  /** Variables only: the current value, printable. */
  value?: string | number | boolean | null;
  /** Variables only, when the value's status is not good. */
  status?: string;
  children: BrowsedNode[];
  /** True when this node was not expanded (depth limit, the OPC-UA standard's own nodes, node limit). */
  collapsed?: boolean;
}

export class OpcUaBrowseError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
    this.name = 'OpcUaBrowseError';
  }
}

/** Connects, walks the tree below `root` and disconnects. Failures throw OpcUaBrowseError with an actionable message. */
export async function browseAddressSpace(options: BrowseOptions): Promise<BrowsedNode> {
  const securityMode = options.securityMode ?? 'None';
  const pki = await openPki(options.pkiFolder, { trustUnknownServer: options.trustUnknownServer ?? false });
  const timeoutMs = options.timeoutMs ?? 15_000;
  const opcua = createClient({
    endpoint: options.endpoint,
    securityMode,
    securityPolicy: options.securityPolicy ?? 'Basic256Sha256',
    pki,
    requestTimeoutMs: timeoutMs,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = (async () => {
      await opcua.connect(options.endpoint);
      const session = await opcua.createSession(
        userIdentity(
          options.username ? { username: options.username, password: options.password ?? '' } : undefined,
        ),
      );
      try {
        return await walk(session, options);
      } finally {
        await session.close().catch(() => undefined);
      }
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout: no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([work, timeout]);
  } catch (err) {
    const explained = await explainFailure(err, {
      endpoint: options.endpoint,
      username: options.username,
      pki,
      securityMode,
      securityPolicy: options.securityPolicy ?? 'Basic256Sha256',
      audience: 'cli',
    });
    throw new OpcUaBrowseError(explained.kind, explained.message);
  } finally {
    clearTimeout(timer);
    await opcua.disconnect().catch(() => undefined);
    await pki.close().catch(() => undefined);
  }
}

async function walk(session: ClientSession, options: BrowseOptions): Promise<BrowsedNode> {
  const depth = options.depth ?? 6;
  const maxNodes = options.maxNodes ?? 5000;
  const rootId = resolveNodeId(options.root ?? 'i=85');
  const [rootName, rootClass] = await session.read([
    { nodeId: rootId, attributeId: AttributeIds.BrowseName },
    { nodeId: rootId, attributeId: AttributeIds.NodeClass },
  ]);
  if (rootClass!.statusCode.value >>> 30 !== 0) {
    throw new Error(
      `the start node ${rootId.toString()} does not exist on this server (${statusName(rootClass!.statusCode)})`,
    );
  }
  const root: BrowsedNode = {
    browseName: (rootName!.value.value as { name?: string } | null)?.name ?? rootId.toString(),
    nodeId: rootId.toString(),
    nodeClass: NodeClass[rootClass!.value.value as number] ?? 'Unknown',
    children: [],
  };
  let count = 1;
  let frontier: BrowsedNode[] = [root];
  for (let level = 0; level < depth && frontier.length > 0; level++) {
    const results = await browseAll(
      session,
      frontier.map((n) => n.nodeId),
    );
    const next: BrowsedNode[] = [];
    const variables: BrowsedNode[] = [];
    frontier.forEach((parent, i) => {
      for (const ref of results[i] ?? []) {
        if (count >= maxNodes) {
          parent.collapsed = true;
          break;
        }
        const child: BrowsedNode = {
          browseName: ref.browseName.name ?? '',
          nodeId: ref.nodeId.toString(),
          nodeClass: NodeClass[ref.nodeClass] ?? String(ref.nodeClass),
          children: [],
        };
        count++;
        parent.children.push(child);
        if (ref.nodeClass === NodeClass.Variable) variables.push(child);
        // The standard's own nodes (Server, its diagnostics, types) are listed but not expanded:
        // hundreds of them, and never what an integrator is looking for.
        if (ref.nodeId.namespace === 0 && !options.expandStandard) child.collapsed = true;
        else next.push(child);
      }
    });
    await describeVariables(session, variables);
    frontier = next;
  }
  for (const n of frontier) if (n.nodeClass !== 'Variable') n.collapsed = true;
  return root;
}

/** Browses forward hierarchical references of many nodes at once, following continuation points. */
async function browseAll(session: ClientSession, nodeIds: string[]): Promise<ReferenceDescription[][]> {
  const out: ReferenceDescription[][] = [];
  const chunk = 100;
  for (let i = 0; i < nodeIds.length; i += chunk) {
    const part = nodeIds.slice(i, i + chunk);
    const results: BrowseResult[] = await session.browse(
      part.map((nodeId) => ({
        nodeId,
        browseDirection: BrowseDirection.Forward,
        referenceTypeId: ReferenceTypeIds.HierarchicalReferences,
        includeSubtypes: true,
        nodeClassMask: 0,
        resultMask: 0x3f,
      })),
    );
    for (const result of results) {
      const refs = [...(result.references ?? [])];
      let cp = result.continuationPoint;
      while (cp && cp.length > 0) {
        const more = await session.browseNext(cp, false);
        refs.push(...(more.references ?? []));
        cp = more.continuationPoint;
      }
      out.push(refs);
    }
  }
  return out;
}

/** Reads data type and value of variables in one request, and names the non-builtin data types. */
async function describeVariables(session: ClientSession, variables: BrowsedNode[]): Promise<void> {
  if (variables.length === 0) return;
  const values: DataValue[] = await session.read(
    variables.flatMap((v) => [
      { nodeId: v.nodeId, attributeId: AttributeIds.DataType },
      { nodeId: v.nodeId, attributeId: AttributeIds.Value },
    ]),
  );
  const typeIds = variables.map(
    (_, i) => values[2 * i]!.value.value as { namespace: number; value: unknown } | null,
  );
  const custom = [
    ...new Set(
      typeIds
        .filter(
          (t) => t && !(t.namespace === 0 && typeof t.value === 'number' && DataType[t.value] !== undefined),
        )
        .map((t) => String(t)),
    ),
  ];
  const names = new Map<string, string>();
  if (custom.length > 0) {
    const read = await session.read(
      custom.map((nodeId) => ({ nodeId, attributeId: AttributeIds.BrowseName })),
    );
    custom.forEach((id, i) => names.set(id, (read[i]!.value.value as { name?: string } | null)?.name ?? id));
  }
  variables.forEach((v, i) => {
    const t = typeIds[i];
    if (t) {
      v.dataType =
        t.namespace === 0 && typeof t.value === 'number' && DataType[t.value] !== undefined
          ? DataType[t.value]
          : (names.get(String(t)) ?? String(t));
    }
    const dv = values[2 * i + 1]!;
    if (qualityOf(dv.statusCode) !== 'good') v.status = statusName(dv.statusCode);
    v.value = printable(dv);
  });
}

function printable(dv: DataValue): string | number | boolean | null {
  const variant = dv.value;
  if (!variant || variant.dataType === DataType.Null) return null;
  if (variant.arrayType !== undefined && variant.arrayType !== VariantArrayType.Scalar) {
    const length = (variant.value as { length?: number } | null)?.length ?? 0;
    return `[${length} ${DataType[variant.dataType] ?? 'values'}]`;
  }
  const v: unknown = variant.value;
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'string') return v.length > 80 ? `${v.slice(0, 77)}...` : v;
  if (v instanceof Date) return v.toISOString();
  if (v === null || v === undefined) return null;
  // Structures (a Range, an EUInformation): their fields on one line.
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The tree as an integrator reads it: one node per line, node ids where they can be copied. */
export function formatTree(root: BrowsedNode): string {
  const lines: string[] = [];
  const line = (n: BrowsedNode, prefix: string, branch: string) => {
    let text = `${prefix}${branch}${n.browseName}  ${n.nodeId}  ${n.nodeClass}`;
    if (n.nodeClass === 'Variable') {
      text += `  ${n.dataType ?? '?'}`;
      if (n.status) text += `  ${n.status}`;
      if (n.value !== undefined && n.value !== null)
        text += ` = ${typeof n.value === 'string' ? JSON.stringify(n.value) : String(n.value)}`;
    }
    if (n.collapsed && n.children.length === 0 && n.nodeClass !== 'Variable') text += '  …';
    lines.push(text);
  };
  const visit = (n: BrowsedNode, prefix: string) => {
    n.children.forEach((c, i) => {
      const last = i === n.children.length - 1;
      line(c, prefix, last ? '└─ ' : '├─ ');
      visit(c, prefix + (last ? '   ' : '│  '));
    });
  };
  line(root, '', '');
  visit(root, '');
  return lines.join('\n') + '\n';
}
