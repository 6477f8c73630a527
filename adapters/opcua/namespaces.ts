import client from 'node-opcua-client';
import type { NodeId as NodeIdObject } from 'node-opcua-client';
import type { OpcUaSession } from './client.js';

const { AttributeIds, NodeId, VariableIds, resolveNodeId } = client;

/**
 * Node ids written with the namespace URI (`nsu=urn:plc;s=x`) instead of an index: the index is
 * the server's to choose and may change when it restarts with another configuration, so it is
 * looked up in the server's namespace table each time a session is built, and checked again after
 * node-opcua repaired a connection on its own (it re-creates the items with the indexes it had).
 */

/** The URI and the rest of an `nsu=` node id; undefined for any other form. */
export function namespaceUriOf(nodeId: string): { uri: string; rest: string } | undefined {
  const m = /^nsu=([^;]+);(.*)$/.exec(nodeId);
  return m ? { uri: m[1]!, rest: m[2]! } : undefined;
}

export function usesNamespaceUris(nodeIds: readonly string[]): boolean {
  return nodeIds.some((id) => namespaceUriOf(id) !== undefined);
}

/** The node id as a session needs it, or the URI that the table lacks. */
export type Resolved = { ok: true; nodeId: NodeIdObject } | { ok: false; missingUri: string };

/** Each node id against this namespace table (a node id without `nsu=` is taken as it is). */
export function resolveAgainst(nodeIds: readonly string[], table: readonly string[]): Resolved[] {
  return nodeIds.map((id) => {
    const nsu = namespaceUriOf(id);
    if (!nsu) return { ok: true, nodeId: resolveNodeId(id) };
    const index = table.indexOf(nsu.uri);
    if (index < 0) return { ok: false, missingUri: nsu.uri };
    return { ok: true, nodeId: resolveNodeId(`ns=${index};${nsu.rest}`) };
  });
}

/** A node id no server has, for an item whose namespace is missing: it reports BadNodeIdUnknown. */
export function unknownNamespaceNodeId(uri: string): NodeIdObject {
  return new NodeId(NodeId.NodeIdType.STRING, `vigil-unknown-namespace:${uri}`, 0);
}

export interface MovedNamespace {
  uri: string;
  /** Index in the table the items were created with; -1 when it was missing. */
  before: number;
  /** Index in the server's table now; -1 when it is gone. */
  after: number;
}

/**
 * The URIs named by these node ids whose index differs between two namespace tables: empty when
 * the items still point where they should, however the rest of the table changed.
 */
export function movedNamespaces(
  nodeIds: readonly string[],
  before: readonly string[],
  after: readonly string[],
): MovedNamespace[] {
  const uris = new Set(nodeIds.map((id) => namespaceUriOf(id)?.uri).filter((u) => u !== undefined));
  return [...uris]
    .map((uri) => ({ uri, before: before.indexOf(uri), after: after.indexOf(uri) }))
    .filter((m) => m.before !== m.after);
}

/** `urn:plc was ns=2, now ns=3`, for a log line. */
export function describeMoves(moves: readonly MovedNamespace[]): string {
  const at = (i: number) => (i < 0 ? 'missing' : `ns=${i}`);
  return moves.map((m) => `${m.uri} was ${at(m.before)}, now ${at(m.after)}`).join('; ');
}

/**
 * The server's NamespaceArray as it is now. Read directly, not through the session's
 * readNamespaceArray(), which answers from a cache filled at the first call and so would never see
 * a restarted server's new table.
 */
export async function readNamespaceTable(session: OpcUaSession): Promise<string[]> {
  const dv = await session.read({
    nodeId: resolveNodeId(VariableIds.Server_NamespaceArray),
    attributeId: AttributeIds.Value,
  });
  const value: unknown = dv.value?.value;
  if (!dv.statusCode.isGood() || !Array.isArray(value)) {
    throw new Error(`the server's NamespaceArray cannot be read (${dv.statusCode.name})`);
  }
  return value.map(String);
}
