import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import {
  OpcUaSource as OpcUaSourceSchema,
  type OpcUaSourceConfig,
} from '../../../runtime/config/sources/opcua.js';
import { Recorder } from '../recorder.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A Recorder that also keeps the source's log lines, to check what an integrator would read. */
export class LogRecorder extends Recorder {
  readonly lines: LogLine[] = [];
  override readonly log: Logger = pino(
    { level: 'debug' },
    { write: (line: string) => void this.lines.push(JSON.parse(line) as LogLine) },
  );

  constructor(base: string) {
    super();
    this.resolvePath = (p: string) => path.resolve(base, p);
  }

  /** Lines at `level` or above (pino levels: 30 info, 40 warn, 50 error) whose message matches. */
  logged(pattern: RegExp, minLevel = 30): LogLine[] {
    return this.lines.filter((l) => l.level >= minLevel && pattern.test(l.msg));
  }

  text(): string {
    return this.lines.map((l) => `${l.level} ${l.msg}`).join('\n');
  }
}

export function opcuaConfig(fields: Record<string, unknown>): OpcUaSourceConfig {
  return OpcUaSourceSchema.parse({
    type: 'opcua',
    reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
    subscription: { publishingIntervalMs: 100, maxKeepAliveCount: 10, lifetimeCount: 100 },
    ...fields,
  });
}

export async function tempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Polls until `check` holds; fails with `what` and the given context otherwise. */
export async function eventually(
  what: string,
  check: () => boolean,
  context: () => string = () => '',
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A TCP relay between a client and a server that can go silent without closing anything, as a
 * network path does when a switch or a firewall drops packets: the case only timeouts can detect.
 */
export interface FreezableRelay {
  port: number;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<FreezableRelay> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (frozen) return; // accepted, never answered
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (d) => {
      if (!frozen) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!frozen) client.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    freeze: () => (frozen = true),
    thaw: () => (frozen = false),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
