import { fastify, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { statusPageRoutes, type StatusPageViews } from './status-routes.js';
import { NOT_CONFIGURED_MESSAGE, isLoopback, requireTokenForChanges } from './auth.js';

/**
 * The operations HTTP server: liveness, readiness, Prometheus metrics, a small JSON API and the
 * status page (status-routes.ts). It only reads state through callbacks, so it knows nothing about how
 * models, sources or the store are built.
 */

export interface ModelHealth {
  /** The model's name under `models:` in the config. */
  name: string;
  /** Folder of the model package. */
  package?: string | undefined;
  /** Name from the package manifest; unknown while the model is not loaded. */
  model?: string | undefined;
  version?: string | undefined;
  backend?: string | undefined;
  provider?: string | undefined;
  /** The execution providers or delegate the config asked for, in order; `provider` is the one in use. */
  requested?: string[] | undefined;
  /** Asked-for providers that could not be used, with the runtime's reason. */
  fallbacks?: Array<{ provider: string; reason: string }> | undefined;
  /** Loaded and warmed up. */
  ready: boolean;
  /** Why it is not serving, when it failed to load. */
  error?: { code: string; message: string } | undefined;
}

export interface SourceHealth {
  name: string;
  type?: string | undefined;
  /** e.g. 'up', 'starting', 'failed'; free text shown as is. */
  state: string;
}

export interface HealthReport {
  /**
   * The caller's own verdict (e.g. false while shutting down or while a configured model is
   * missing). Readiness also requires every listed model to be ready and the store open.
   */
  ready?: boolean | undefined;
  models: ModelHealth[];
  sources: SourceHealth[];
  /** Absent means "not reported", taken as open. */
  store?: { open: boolean } | undefined;
  /** Reported, but not a readiness condition: alerts wait in the store while the broker is away. */
  mqtt: { connected: boolean };
}

export interface ApiHandlers {
  /** Body of GET /api/v1/status. */
  status(): unknown;
  /** Most recent alerts, newest first, at most `limit`. */
  alerts(limit: number): unknown[] | Promise<unknown[]>;
  /**
   * POST /api/v1/models/<name>/<action>: promote the candidate now, roll back to the previous
   * version, or check the registry now. Resolves with the HTTP status and a JSON body; absent
   * when the daemon has no rollout (404).
   */
  modelAction?(model: string, action: ModelAction): Promise<{ status: number; body: unknown }>;
}

export type ModelAction = 'promote' | 'rollback' | 'check';
const MODEL_ACTIONS: readonly ModelAction[] = ['promote', 'rollback', 'check'];

export interface OpsServerOptions {
  host: string;
  port: number;
  log: Logger;
  registry: Registry;
  health: () => HealthReport;
  api: ApiHandlers;
  /** Upper bound on close(). */
  closeTimeoutMs?: number;
  /** The status page's frame gallery and latency history; absent: the page shows neither. */
  statusPage?: StatusPageViews | undefined;
  /**
   * The ops token that every state-changing request (any method but GET and HEAD) must carry as
   * `Authorization: Bearer <token>`; undefined refuses them all (403). See auth.ts.
   */
  token?: string | undefined;
}

export interface OpsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_ALERT_LIMIT = 50;
export const MAX_ALERT_LIMIT = 1000;

/** Ready when the caller says so, every model is loaded and warmed, and the store is open. */
export function isReady(report: HealthReport): boolean {
  return report.ready !== false && report.store?.open !== false && report.models.every((m) => m.ready);
}

function parseLimit(raw: unknown): number | undefined {
  if (raw === undefined || raw === '') return DEFAULT_ALERT_LIMIT;
  if (typeof raw !== 'string' || !/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= 1 && n <= MAX_ALERT_LIMIT ? n : undefined;
}

function routes(app: FastifyInstance, options: OpsServerOptions): void {
  const { health, api, registry } = options;

  // Answering at all proves the process is alive and its event loop turns.
  app.get('/healthz', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', async (_request, reply) => {
    const report = health();
    const ready = isReady(report);
    reply.code(ready ? 200 : 503);
    return { status: ready ? 'ready' : 'not ready', ...report, ready };
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });

  app.get('/api/v1/status', async () => api.status());

  app.get('/api/v1/alerts', async (request, reply) => {
    const limit = parseLimit((request.query as Record<string, unknown>).limit);
    if (limit === undefined) {
      reply.code(400);
      return { error: `limit must be a whole number from 1 to ${MAX_ALERT_LIMIT}` };
    }
    return { alerts: await api.alerts(limit) };
  });

  app.post('/api/v1/models/:name/:action', async (request, reply) => {
    const { name, action } = request.params as { name: string; action: string };
    if (!MODEL_ACTIONS.includes(action as ModelAction)) {
      reply.code(404);
      return { error: `unknown action '${action}': use ${MODEL_ACTIONS.join(', ')}` };
    }
    if (!api.modelAction) {
      reply.code(404);
      return { error: 'this daemon follows no model registry (no registry: section in its config)' };
    }
    const outcome = await api.modelAction(name, action as ModelAction);
    reply.code(outcome.status);
    return outcome.body;
  });

  // The status page (GET /, /status.js, /api/v1/live, frame thumbnails): read-only.
  void app.register(statusPageRoutes, {
    health,
    isReady,
    status: () => api.status(),
    alerts: (limit: number) => api.alerts(limit),
    views: options.statusPage,
  });
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { host, port, log } = options;
  const closeTimeoutMs = options.closeTimeoutMs ?? 3_000;
  // Fastify's own logger is off: we log through our pino logger, in our format.
  const app = fastify({ logger: false, forceCloseConnections: true });
  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const statusCode = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (statusCode >= 500) log.error({ url: request.url, err: errorMessage(err) }, 'ops HTTP request failed');
    void reply
      .code(statusCode)
      .send({ error: statusCode >= 500 ? 'internal error, see the Vigil log' : err.message });
  });
  requireTokenForChanges(app, { token: options.token, registry: options.registry, log });
  routes(app, options);

  try {
    await app.listen({ host, port });
  } catch (err) {
    await app.close().catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new VigilError(
        'VIGIL_ERR_PORT_IN_USE',
        `HTTP port ${port} on ${host} is already in use by another program. ` +
          'Set http.port in the config to a free port (0 picks one), or stop the other program.',
        { cause: err, detail: { host, port, key: 'http.port' } },
      );
    }
    throw err;
  }

  const address = app.server.address();
  const actualPort = typeof address === 'object' && address !== null ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
  log.info({ url }, 'ops HTTP server listening');
  if (!isLoopback(host)) {
    log.warn(
      { url, host, tokenConfigured: options.token !== undefined },
      `ops HTTP server listens on ${host}, not loopback: every host that can reach port ${actualPort} can read metrics, status and alerts; ` +
        (options.token !== undefined
          ? 'requests that change state need the ops token'
          : 'requests that change state are refused, as no ops token is configured'),
    );
  }
  if (options.token === undefined)
    log.info(`promote, rollback and check over HTTP are refused: ${NOT_CONFIGURED_MESSAGE}`);

  let closing: Promise<void> | undefined;
  return {
    url,
    port: actualPort,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ url }, 'ops HTTP server did not close in time');
          resolve();
        }, closeTimeoutMs);
        app.close().then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          (err: unknown) => {
            clearTimeout(timer);
            log.warn({ err: errorMessage(err) }, 'ops HTTP server close failed');
            resolve();
          },
        );
      });
      return closing;
    },
  };
}
