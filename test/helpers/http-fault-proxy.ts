import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { freePort } from './ports.js';

/**
 * A small HTTP reverse proxy in front of a real server (the MLflow tracking server in the
 * registry tests), to put the faults of a factory network between it and the gateway: the
 * server answering 500, answering late, a transfer slowed down or cut in the middle, a
 * connection reset. Everything else passes through unchanged, so the gateway still talks to the
 * real server. When the server is down the proxy answers 502, as nginx in front of MLflow would.
 * Every request is recorded, so that tests can see what the gateway asked for and when.
 */

export type Fault =
  | { kind: 'pass' }
  /** Answers this status without asking the server (default body: MLflow's JSON error shape). */
  | { kind: 'status'; status: number; body?: string }
  /** Holds the request this long, then forwards it (a client that gave up meanwhile is not). */
  | { kind: 'delay'; ms: number }
  /** Streams the server's response body at about this rate. */
  | { kind: 'throttle'; bytesPerSecond: number }
  /** Forwards the status, headers and this many body bytes, then resets the connection. */
  | { kind: 'cut'; afterBytes: number }
  /** Closes the connection without an answer. */
  | { kind: 'reset' };

export interface FaultRule {
  /** Tested against the request's path with its query; absent: every request. */
  match?: RegExp;
  fault: Fault;
  /** Applies to this many matching requests, then no longer; absent: to all of them. */
  times?: number;
}

export interface ProxiedRequest {
  method: string;
  /** Path and query as the client sent them. */
  path: string;
  /** The client's Range header, if any. */
  range?: string;
  fault: Fault['kind'];
  /** Date.now() when the request arrived, and when its exchange ended. */
  at: number;
  finishedAt?: number;
  /** The status the client got (the server's, or the fault's). */
  status?: number;
  /** Response body bytes written to the client so far. */
  bodyBytes: number;
  outcome: 'pending' | 'answered' | 'client_gone' | 'cut' | 'reset' | 'upstream_down';
}

export interface FaultProxy {
  url: string;
  port: number;
  /** Every request so far, oldest first. */
  readonly requests: ProxiedRequest[];
  /** Replaces the rules; a request takes the first rule that matches (none: pass). */
  setRules(rules: FaultRule[]): void;
  /** Shorthand for one rule. */
  setFault(fault: Fault, match?: RegExp): void;
  /** Back to passing everything through. */
  pass(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port that forwards to `target` (http://host:port). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const port = await freePort();
  let rules: Array<FaultRule & { used: number }> = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  function finish(rec: ProxiedRequest, outcome: ProxiedRequest['outcome']): void {
    if (rec.outcome !== 'pending') return;
    rec.outcome = outcome;
    rec.finishedAt = Date.now();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? '/';
    const rule = rules.find(
      (r) => (!r.match || r.match.test(path)) && (r.times === undefined || r.used < r.times),
    );
    if (rule) rule.used += 1;
    const fault: Fault = rule?.fault ?? { kind: 'pass' };
    const rec: ProxiedRequest = {
      method: req.method ?? 'GET',
      path,
      ...(typeof req.headers.range === 'string' ? { range: req.headers.range } : {}),
      fault: fault.kind,
      at: Date.now(),
      bodyBytes: 0,
      outcome: 'pending',
    };
    requests.push(rec);
    res.once('close', () => finish(rec, 'client_gone'));

    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);

    if (fault.kind === 'reset') {
      finish(rec, 'reset');
      req.socket.destroy();
      return;
    }
    if (fault.kind === 'status') {
      const text =
        fault.body ??
        JSON.stringify({ error_code: 'INTERNAL_ERROR', message: `injected fault: status ${fault.status}` });
      rec.status = fault.status;
      res.writeHead(fault.status, {
        'content-type': fault.body === undefined ? 'application/json' : 'text/plain',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text, () => finish(rec, 'answered'));
      return;
    }
    if (fault.kind === 'delay') {
      await sleep(fault.ms);
      if (res.destroyed || rec.outcome !== 'pending') return;
    }

    const headers = { ...req.headers, host: upstream.host };
    const up = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path,
      headers,
      agent: false,
    });
    res.once('close', () => up.destroy());
    let answer: IncomingMessage;
    try {
      const answered = once(up, 'response') as Promise<[IncomingMessage]>;
      up.end(body);
      [answer] = await answered;
    } catch (err) {
      if (res.destroyed) return;
      const text = `502 Bad Gateway: ${upstream.host} did not answer (${(err as Error).message})`;
      rec.status = 502;
      res.writeHead(502, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
      res.end(text, () => finish(rec, 'upstream_down'));
      return;
    }

    rec.status = answer.statusCode ?? 502;
    res.writeHead(rec.status, answer.headers);
    const slice =
      fault.kind === 'throttle'
        ? Math.max(1, Math.round(fault.bytesPerSecond / 20))
        : Number.MAX_SAFE_INTEGER;
    try {
      for await (const chunk of answer as AsyncIterable<Buffer>) {
        for (let off = 0; off < chunk.length; off += slice) {
          let part = chunk.subarray(off, Math.min(chunk.length, off + slice));
          if (fault.kind === 'cut' && rec.bodyBytes + part.length >= fault.afterBytes) {
            part = part.subarray(0, Math.max(0, fault.afterBytes - rec.bodyBytes));
            if (part.length > 0) await write(res, part);
            rec.bodyBytes += part.length;
            finish(rec, 'cut');
            // Let the bytes reach the client before the connection goes.
            await sleep(20);
            res.socket?.destroy();
            up.destroy();
            return;
          }
          if (res.destroyed) return;
          await write(res, part);
          rec.bodyBytes += part.length;
          if (fault.kind === 'throttle') await sleep(50);
        }
      }
    } catch {
      // The server or the client went away mid-body: the client sees the connection end.
      res.socket?.destroy();
      return;
    }
    res.end(() => finish(rec, 'answered'));
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    setRules(next) {
      rules = next.map((r) => ({ ...r, used: 0 }));
    },
    setFault(fault, match) {
      rules = [{ fault, ...(match ? { match } : {}), used: 0 }];
    },
    pass() {
      rules = [];
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

async function write(res: ServerResponse, chunk: Buffer): Promise<void> {
  if (res.write(chunk)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
