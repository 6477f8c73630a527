import { describe, expect, it } from 'vitest';
import {
  describeMoves,
  movedNamespaces,
  namespaceUriOf,
  resolveAgainst,
  usesNamespaceUris,
} from '../../../adapters/opcua/namespaces.js';

/** `nsu=` node ids against a server's namespace table, and what a renumbered table means. */

const STANDARD = 'http://opcfoundation.org/UA/';
const before = [STANDARD, 'urn:plc:server', 'urn:plc:line1', 'urn:plc:line2'];
// The same server after a restart with a module more: line1 and line2 move up one index.
const after = [STANDARD, 'urn:plc:server', 'urn:plc:diagnostics', 'urn:plc:line1', 'urn:plc:line2'];

describe('OPC-UA namespace URIs in node ids', () => {
  it('splits nsu= node ids and leaves index-based ones alone', () => {
    expect(namespaceUriOf('nsu=urn:plc:line1;s=Pump.Temp')).toEqual({
      uri: 'urn:plc:line1',
      rest: 's=Pump.Temp',
    });
    expect(namespaceUriOf('ns=2;s=Pump.Temp')).toBeUndefined();
    expect(usesNamespaceUris(['ns=2;i=5', 'i=2258'])).toBe(false);
    expect(usesNamespaceUris(['ns=2;i=5', 'nsu=urn:plc:line2;i=7'])).toBe(true);
  });

  it('resolves each URI to its index in the table it is given', () => {
    const ids = [
      'nsu=urn:plc:line1;s=Pump.Temp',
      'nsu=urn:plc:line2;i=7',
      'ns=1;s=Other',
      'nsu=urn:nope;i=1',
    ];
    const show = (table: string[]) =>
      resolveAgainst(ids, table).map((r) => (r.ok ? r.nodeId.toString() : `missing ${r.missingUri}`));
    expect(show(before)).toEqual(['ns=2;s=Pump.Temp', 'ns=3;i=7', 'ns=1;s=Other', 'missing urn:nope']);
    expect(show(after)).toEqual(['ns=3;s=Pump.Temp', 'ns=4;i=7', 'ns=1;s=Other', 'missing urn:nope']);
  });

  it('finds the namespaces that moved, and only those the items use', () => {
    expect(movedNamespaces(['nsu=urn:plc:line1;s=A', 'nsu=urn:plc:line1;s=B'], before, after)).toEqual([
      { uri: 'urn:plc:line1', before: 2, after: 3 },
    ]);
    // The table changed, but not where the items point: nothing to rebuild.
    expect(movedNamespaces(['nsu=urn:plc:server;s=A', 'ns=2;s=B'], before, after)).toEqual([]);
    expect(movedNamespaces(['nsu=urn:plc:line1;s=A'], before, [...before])).toEqual([]);
    // A namespace that appeared or went away counts as moved.
    const gone = movedNamespaces(['nsu=urn:plc:line2;s=A', 'nsu=urn:plc:diagnostics;s=B'], before, [
      STANDARD,
      'urn:plc:server',
      'urn:plc:line1',
      'urn:plc:diagnostics',
    ]);
    expect(gone).toEqual([
      { uri: 'urn:plc:line2', before: 3, after: -1 },
      { uri: 'urn:plc:diagnostics', before: -1, after: 3 },
    ]);
    expect(describeMoves(gone)).toBe(
      'urn:plc:line2 was ns=3, now missing; urn:plc:diagnostics was missing, now ns=3',
    );
  });
});
