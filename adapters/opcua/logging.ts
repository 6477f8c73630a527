import { format } from 'node:util';
import client from 'node-opcua-client';
import type { Logger } from '../../runtime/log.js';

/**
 * node-opcua prints its warnings and errors with console.log, on stdout, where the CLI prints its
 * results; and some of them (a reconnection attempt that failed, a certificate it had to create)
 * are useful when looking into a problem. So they go to Vigil's logger at debug level, never to
 * stdout. The loggers are process-wide: the most recent source (or command) to ask gets them.
 * Installed when this module loads, before node-opcua's own start-up checks print anything.
 */
const CLAIM = Symbol.for('vigil.node-opcua.loggers');

let sink: Logger | undefined;

interface CallerContext {
  filename?: string;
  callerline?: number;
}

function forward(level: 'warning' | 'error' | 'debug') {
  return (context?: unknown, ...args: unknown[]): void => {
    const log = sink;
    if (!log || !log.isLevelEnabled('debug')) return;
    const where = context as CallerContext | undefined;
    log.debug({ nodeOpcua: level, at: where?.filename }, format(...args));
  };
}

function install(): void {
  (globalThis as Record<symbol, unknown>)[CLAIM] = 'adapter';
  client.setWarningLogger(forward('warning'));
  client.setErrorLogger(forward('error'));
  client.setDebugLogger(forward('debug'));
}

install();

/** Sends node-opcua's own messages to `log` (at debug level) from now on. */
export function routeNodeOpcuaLogs(log: Logger): void {
  sink = log;
  install();
}
