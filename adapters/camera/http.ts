import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import type { CameraHttpSource as CameraHttpSourceSchema } from '../../runtime/config/schema.js';
import { VigilError, errorMessage } from '../../runtime/errors.js';
import type { InputRejectReason, Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import { sniffImageType } from '../../runtime/pipeline/preprocess.js';
import { STORE_PROBE_INTERVAL_MS } from '../../runtime/store/write-guard.js';
import { pickTraceId } from '../trace-id.js';

export type CameraHttpConfig = z.infer<typeof CameraHttpSourceSchema>;

/** Media types a camera may declare; octet-stream (and none at all) is sniffed. */
const ACCEPTED_TYPES = new Set([
  'image/jpeg',
  'image/jpg',
  'image/pjpeg',
  'image/png',
  'application/octet-stream',
  '',
]);

/** Longest origin name taken from a client; longer ones are cut, so logs and rows stay sane. */
const MAX_ORIGIN_LENGTH = 200;

/** How long stop() waits for requests in progress before it cuts their sockets. */
const STOP_GRACE_MS = 1000;
/** Retry-After of a 503 while the store refuses writes: when the store is probed again. */
const STORE_RETRY_AFTER_S = STORE_PROBE_INTERVAL_MS / 1000;
const STORE_REFUSING_MESSAGE =
  'the gateway cannot store results right now (is its disk full?); send the frame again later';

/**
 * Frames POSTed over HTTP: `POST <path>` with the encoded JPEG or PNG as the body. Answers 202
 * with the sample id once the frame is handed to the pipelines; every refusal answers with a JSON
 * `{error, code}` naming the problem and is counted through ctx.reject. A client that names its
 * frame (X-Request-Id, or the trace id of a W3C traceparent header) gets that name as the sample
 * id, so that its own logs, Vigil's logs, the stored result and the alert share one id.
 */
export class HttpCameraSource implements Source {
  readonly type = 'camera-http';
  private readonly log: SourceContext['log'];
  private server: Server | undefined;
  private boundPort: number | undefined;
  private current: SourceState = 'stopped';
  private stopping: Promise<void> | undefined;
  private requestCount = 0;

  constructor(
    readonly name: string,
    private readonly config: CameraHttpConfig,
    private readonly ctx: SourceContext,
  ) {
    this.log = ctx.log.child({ source: name });
  }

  /** The TCP port actually listened on (the OS's pick when the config says 0); set after start(). */
  get port(): number | undefined {
    return this.boundPort;
  }

  state(): SourceState {
    return this.current;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.server) return;
    this.stopping = undefined;
    this.current = 'starting';
    const server = createServer((req, res) => this.handle(req, res));
    // A camera that stalls half-way through an upload must not hold a socket for ever.
    server.requestTimeout = 60_000;
    server.headersTimeout = 20_000;
    this.server = server;
    const { host, port } = this.config.listen;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.server = undefined;
        this.current = 'down';
        if (err.code === 'EADDRINUSE') {
          reject(
            new VigilError(
              'VIGIL_ERR_PORT_IN_USE',
              `camera source '${this.name}' cannot listen on ${host}:${port}: the port is already in use by another ` +
                `program. Stop that program or choose another port in sources.${this.name}.listen.port`,
              { cause: err, detail: { host, port } },
            ),
          );
        } else {
          reject(
            new VigilError(
              'VIGIL_ERR_LISTEN',
              `camera source '${this.name}' cannot listen on ${host}:${port} (${err.code ?? err.message}); ` +
                `check sources.${this.name}.listen`,
              { cause: err, detail: { host, port } },
            ),
          );
        }
      };
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err: errorMessage(err) }, 'camera HTTP server error'));
    this.boundPort = (server.address() as AddressInfo).port;
    this.current = 'up';
    this.log.info({ host, port: this.boundPort, path: this.config.path }, 'camera HTTP ingest listening');
    if (signal.aborted) await this.stop();
    else signal.addEventListener('abort', () => void this.stop(), { once: true });
  }

  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const server = this.server;
    this.server = undefined;
    this.current = 'stopped';
    if (!server) return (this.stopping = Promise.resolve());
    this.stopping = new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // Bounded: uploads still in progress get a moment, then their sockets are cut.
      setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS).unref();
    });
    return this.stopping;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const n = ++this.requestCount;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://camera.invalid');
    } catch {
      // Node's parser accepts request targets that URL does not (e.g. `http://[/frames`); a
      // scanner or a broken camera must get a 400, never take the daemon down.
      const origin = `${req.socket.remoteAddress ?? 'unknown'}#${n}`;
      return this.refuse(
        req,
        res,
        400,
        'bad_request',
        `malformed request target ${JSON.stringify(req.url)}`,
        origin,
      );
    }
    const origin = originOf(req, url, n);

    if (url.pathname !== this.config.path) {
      return this.refuse(
        req,
        res,
        404,
        'bad_request',
        `no frame endpoint at ${url.pathname}; POST frames to ${this.config.path}`,
        origin,
      );
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return this.refuse(
        req,
        res,
        405,
        'bad_request',
        `${req.method ?? '?'} is not supported here; POST the frame bytes`,
        origin,
      );
    }
    if (this.ctx.storeRefusing?.()) {
      // A frame taken now could only be dropped: the camera keeps it and sends it again.
      res.setHeader('Retry-After', String(STORE_RETRY_AFTER_S));
      return this.refuse(req, res, 503, 'store_unavailable', STORE_REFUSING_MESSAGE, origin);
    }
    const mediaType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (!ACCEPTED_TYPES.has(mediaType)) {
      return this.refuse(
        req,
        res,
        415,
        'bad_request',
        `Content-Type ${mediaType} is not accepted; send the raw frame as image/jpeg, image/png or application/octet-stream`,
        origin,
      );
    }
    const max = this.config.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > max) {
      return this.refuse(
        req,
        res,
        413,
        'too_large',
        `frame of ${declared} bytes is over the limit of ${max} (maxBodyBytes)`,
        origin,
      );
    }

    const chunks: Buffer[] = [];
    let received = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      received += chunk.length;
      if (received > max) {
        refused = true;
        chunks.length = 0; // do not keep a byte more than the limit
        this.refuse(
          req,
          res,
          413,
          'too_large',
          `frame is over the limit of ${max} bytes (maxBodyBytes)`,
          origin,
        );
        return;
      }
      chunks.push(chunk);
    });
    req.on('close', () => {
      if (refused || req.complete) return;
      refused = true;
      this.ctx.reject('incomplete', `upload of ${origin} was cut off after ${received} bytes`, origin);
    });
    req.on('end', () => {
      if (refused) return;
      const arrivedAt = performance.now();
      const data = Buffer.concat(chunks, received);
      if (data.length === 0)
        return this.refuse(req, res, 400, 'empty', 'the request body is empty; POST the frame bytes', origin);
      const type = sniffImageType(data);
      if (!type) {
        return this.refuse(
          req,
          res,
          400,
          'not_an_image',
          'the body is not a JPEG or PNG image (unrecognised first bytes)',
          origin,
        );
      }
      // The store may have failed while the body was arriving.
      if (this.ctx.storeRefusing?.()) {
        res.setHeader('Retry-After', String(STORE_RETRY_AFTER_S));
        return this.refuse(req, res, 503, 'store_unavailable', STORE_REFUSING_MESSAGE, origin);
      }
      const given = clientId(req);
      const id = given ?? uuidv7();
      if (this.log.isLevelEnabled('debug')) {
        this.log.debug(
          { sampleId: id, origin, bytes: data.length, idFromClient: given !== undefined },
          'frame received',
        );
      }
      this.ctx.emit({
        kind: 'frame',
        id,
        source: this.name,
        receivedAt: Date.now(),
        arrivedAt,
        data,
        origin,
        contentType:
          mediaType === '' || mediaType === 'application/octet-stream' ? `image/${type}` : mediaType,
      });
      res.setHeader('X-Request-Id', id);
      sendJson(res, 202, { id });
    });
  }

  private refuse(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    reason: InputRejectReason,
    message: string,
    origin: string,
  ): void {
    this.ctx.reject(reason, message, origin);
    const bodyLeft = !req.complete;
    if (bodyLeft) {
      // Do not read (or buffer) the rest of a refused upload: answer and close the connection.
      res.setHeader('Connection', 'close');
      req.pause();
    }
    sendJson(res, status, { error: message, code: reason });
    if (bodyLeft) res.on('finish', () => setTimeout(() => req.socket.destroy(), 50).unref());
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return (Array.isArray(value) ? value[0] : value)?.trim();
}

/**
 * The client's id for the frame: X-Request-Id when it is a sane id (else ignored, and the frame
 * gets one of ours), else the trace id of a traceparent header.
 */
function clientId(req: IncomingMessage): string | undefined {
  return pickTraceId({ requestId: header(req, 'x-request-id'), traceparent: header(req, 'traceparent') });
}

/** The client's name for the frame (X-Frame-Origin or ?origin=), else `<remote address>#<n>`. */
function originOf(req: IncomingMessage, url: URL, n: number): string {
  const header = req.headers['x-frame-origin'];
  const given = (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('origin') ?? '';
  // Control characters would let a client forge log lines; drop them.
  const clean = [...given]
    .filter((ch) => ch.charCodeAt(0) >= 0x20 && ch.charCodeAt(0) !== 0x7f)
    .join('')
    .trim()
    .slice(0, MAX_ORIGIN_LENGTH);
  return clean || `${req.socket.remoteAddress ?? 'unknown'}#${n}`;
}
