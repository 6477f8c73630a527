import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FrameGallery } from './frame-gallery.js';
import type { PipelineHistory } from './history.js';
import type { HealthReport } from './http.js';
import { liveView } from './status-page/live.js';
import { FAVICON_SVG, STATUS_HTML } from './status-page/page.js';
import { STATUS_JS } from './status-page/script.js';
import { STATUS_CSS } from './status-page/style.js';

/** What the status page shows beyond health and status: given by the daemon, absent in bare servers. */
export interface StatusPageViews {
  gallery?: FrameGallery | undefined;
  history?: PipelineHistory | undefined;
}

export interface StatusRoutesOptions {
  health: () => HealthReport;
  isReady: (report: HealthReport) => boolean;
  status: () => unknown;
  alerts: (limit: number) => unknown[] | Promise<unknown[]>;
  views?: StatusPageViews | undefined;
  /**
   * How long one status() is reused across polls (default 5 s). status() takes every pipeline's
   * snapshot, which sorts all the latencies it keeps: not something to do every second and a
   * half for every open browser; when one status() takes longer than statusMaxAgeMs / 100, it is
   * reused for 100 times as long. Frames, history, alerts and health are read fresh each poll.
   */
  statusMaxAgeMs?: number | undefined;
  /** Alerts listed on the page (default 20). */
  alertLimit?: number | undefined;
}

/**
 * Strict: the page runs only its own script and stylesheet, loads images and JSON only from the
 * gateway, and cannot be framed. Together with text-only DOM writes, a name from the outside
 * world (a file name, a device id) cannot become markup or script.
 */
export const STATUS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

function asset(type: string, text: string): Asset {
  const body = Buffer.from(text, 'utf8');
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 20)}"`;
  return { type, body, gzip: gzipSync(body, { level: 9 }), etag };
}

/** The page's files, made once per process (they are constants; ~40 KB in all). */
let assets: Record<string, Asset> | undefined;
export function statusAssets(): Record<string, Asset> {
  assets ??= {
    '/': asset('text/html; charset=utf-8', STATUS_HTML),
    '/status.js': asset('text/javascript; charset=utf-8', STATUS_JS),
    '/status.css': asset('text/css; charset=utf-8', STATUS_CSS),
    '/favicon.svg': asset('image/svg+xml', FAVICON_SVG),
  };
  return assets;
}

const acceptsGzip = (request: FastifyRequest) =>
  /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));

/** A body sent gzip-compressed when the client takes it and it is worth it. */
function sendBody(request: FastifyRequest, reply: FastifyReply, body: Buffer, gzip?: Buffer): Buffer {
  reply.header('vary', 'accept-encoding');
  if (acceptsGzip(request) && body.length > 1024) {
    reply.header('content-encoding', 'gzip');
    return gzip ?? gzipSync(body, { level: 6 });
  }
  return body;
}

const RESULT_FILE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jpg$/;

/**
 * The status page (GET /), its script and stylesheet, the JSON it polls (GET /api/v1/live) and
 * the thumbnails of kept frames (GET /api/v1/frames/<pipeline>/<result id>.jpg). Read-only: every
 * route is a GET and changes nothing on the gateway.
 */
export async function statusPageRoutes(app: FastifyInstance, options: StatusRoutesOptions): Promise<void> {
  const statusMaxAgeMs = options.statusMaxAgeMs ?? 5_000;
  const alertLimit = options.alertLimit ?? 20;
  const views = options.views ?? {};
  let cached: { at: number; wall: number; maxAgeMs: number; value: unknown } | undefined;

  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
  });

  for (const [url, a] of Object.entries(statusAssets())) {
    app.get(url, async (request, reply) => {
      reply.header('content-type', a.type);
      reply.header('etag', a.etag);
      // Revalidated on every load (a 304 costs a few bytes), so an upgrade shows at once.
      reply.header('cache-control', 'no-cache');
      if (url === '/') {
        reply.header('content-security-policy', STATUS_CSP);
        reply.header('x-frame-options', 'DENY');
      }
      if (request.headers['if-none-match'] === a.etag) {
        reply.code(304);
        return reply.send();
      }
      return reply.send(sendBody(request, reply, a.body, a.gzip));
    });
  }

  app.get('/api/v1/live', async (request, reply) => {
    const raw = (request.query as Record<string, unknown>).since;
    let since: number | undefined;
    if (raw !== undefined && raw !== '') {
      if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) {
        reply.code(400);
        return { error: 'since must be a time in milliseconds since the epoch, as the last point received' };
      }
      since = Number(raw);
    }
    const started = performance.now();
    if (!cached || started - cached.at > cached.maxAgeMs) {
      const value = options.status();
      // Where status() has become expensive (pipelines holding many latencies), it is read less
      // often: the page never takes more than about 1% of the event loop for it.
      const maxAgeMs = Math.max(statusMaxAgeMs, (performance.now() - started) * 100);
      cached = { at: started, wall: Date.now(), maxAgeMs, value };
    }
    const afterStatus = performance.now();
    const alerts = await options.alerts(alertLimit);
    const afterAlerts = performance.now();
    const health = options.health();
    const view = liveView({
      now: Date.now(),
      statusAt: cached.wall,
      health,
      ready: options.isReady(health),
      status: cached.value,
      alerts,
      frames: views.gallery?.view(),
      history: views.history?.view(since),
    });
    const body = Buffer.from(JSON.stringify(view), 'utf8');
    const done = performance.now();
    // What each poll costs the gateway, visible in the browser's developer tools.
    reply.header(
      'server-timing',
      `status;dur=${(afterStatus - started).toFixed(2)}, alerts;dur=${(afterAlerts - afterStatus).toFixed(2)}, ` +
        `total;dur=${(done - started).toFixed(2)}`,
    );
    reply.header('content-type', 'application/json; charset=utf-8');
    reply.header('cache-control', 'no-store');
    return reply.send(sendBody(request, reply, body));
  });

  app.get('/api/v1/frames/:pipeline/:file', async (request, reply) => {
    const { pipeline, file } = request.params as { pipeline: string; file: string };
    const id = RESULT_FILE.exec(file)?.[1];
    const thumb = id ? views.gallery?.thumbnail(pipeline, id) : undefined;
    if (!thumb) {
      reply.code(404);
      return {
        error:
          `no kept frame ${file} in pipeline ${pipeline}: the status page keeps only the last few frames ` +
          'of each pipeline, for a short while',
      };
    }
    const jpeg = await thumb;
    reply.header('content-type', 'image/jpeg');
    // A result id names one frame for ever.
    reply.header('cache-control', 'private, max-age=86400, immutable');
    return reply.send(jpeg);
  });
}
