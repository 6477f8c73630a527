import client from 'node-opcua-client';

/**
 * node-opcua writes its warnings with console.log, i.e. on stdout, which is where the CLI prints
 * results and reports. The loggers are process-wide: whoever installs a sink last wins, so the
 * simulator only installs its silent one when nobody (Vigil's OPC-UA adapter) has claimed them.
 */
const CLAIM = Symbol.for('vigil.node-opcua.loggers');

export function quietNodeOpcua(): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[CLAIM]) return;
  g[CLAIM] = 'simulator';
  const drop = (): void => undefined;
  client.setWarningLogger(drop);
  client.setErrorLogger(drop);
  client.setDebugLogger(drop);
}

quietNodeOpcua();
