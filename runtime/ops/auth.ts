import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { readSecret, type SecretOptions } from '../config/secrets.js';
import type { Logger } from '../log.js';

/**
 * The ops token: every request that can change the daemon's state (any method but GET and HEAD,
 * so an endpoint added later is covered without anyone remembering to) must carry it as
 * `Authorization: Bearer <token>`. Without a configured token such requests are refused outright,
 * so a daemon is never changeable by whoever can reach its port. Read-only requests stay open:
 * the server listens on loopback unless configured otherwise.
 */

/** Environment variable holding the ops token when http.tokenFile is not set. */
export const TOKEN_ENV = 'VIGIL_HTTP_TOKEN';

export type AuthFailureReason = 'missing' | 'wrong' | 'not_configured';
const REASONS: readonly AuthFailureReason[] = ['missing', 'wrong', 'not_configured'];

/** Methods that only read; everything else needs the token. */
const READ_ONLY_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD']);

/** At most one warning per this long, so that a scanner cannot flood the log; the metric counts all. */
const WARN_INTERVAL_MS = 10_000;

export const NOT_CONFIGURED_MESSAGE =
  `no ops token configured; set http.tokenFile or ${TOKEN_ENV} for the daemon, ` +
  'and send it as Authorization: Bearer <token> (docs/SECURITY.md)';

/** The daemon's ops token: the file named by http.tokenFile, else $VIGIL_HTTP_TOKEN; undefined when neither. */
export function opsToken(
  http: { tokenFile?: string | undefined },
  options: SecretOptions = {},
): string | undefined {
  return readSecret({ key: 'http.token', file: http.tokenFile, envName: TOKEN_ENV }, options);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The bearer token of an Authorization header, or undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return m?.[1];
}

/**
 * Why a request may not change state, or undefined when it may. Digests of equal length are
 * compared in constant time, so the answer time says nothing about how much of a guess was right.
 */
export function authFailure(
  header: string | undefined,
  expectedDigest: Buffer | undefined,
): AuthFailureReason | undefined {
  if (expectedDigest === undefined) return 'not_configured';
  const given = bearerToken(header);
  if (given === undefined) return 'missing';
  return timingSafeEqual(digest(given), expectedDigest) ? undefined : 'wrong';
}

function failureCounter(registry: Registry): Counter<'reason'> {
  const name = 'vigil_http_auth_failures_total';
  const existing = registry.getSingleMetric(name) as Counter<'reason'> | undefined;
  if (existing) return existing;
  const counter = new Counter({
    name,
    help: 'State-changing ops HTTP requests refused, by reason (missing: no bearer token; wrong: a token that does not match; not_configured: the daemon has no token)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // Present from the start, so that an alert rule on the rate sees a series before the first failure.
  for (const reason of REASONS) counter.inc({ reason }, 0);
  return counter;
}

export interface OpsAuthOptions {
  /** The token; undefined refuses every state-changing request. */
  token: string | undefined;
  registry: Registry;
  log: Logger;
}

/** Registers the check on every request of `app`; call it before the routes. */
export function requireTokenForChanges(app: FastifyInstance, options: OpsAuthOptions): void {
  const expected = options.token === undefined ? undefined : digest(options.token);
  const failures = failureCounter(options.registry);
  const { log } = options;
  let lastWarnAt = -Infinity;
  let suppressed = 0;
  const warn = (request: FastifyRequest, reason: AuthFailureReason) => {
    const now = Date.now();
    if (now - lastWarnAt < WARN_INTERVAL_MS) {
      suppressed++;
      return;
    }
    lastWarnAt = now;
    // The path only: a client may have put something secret in the query string.
    const route = request.url.split('?')[0];
    log.warn(
      { method: request.method, path: route, remote: request.ip, reason, suppressed },
      `ops HTTP ${request.method} ${route} from ${request.ip} refused: ${reason === 'missing' ? 'no bearer token' : reason === 'wrong' ? 'wrong token' : 'no ops token configured'}`,
    );
    suppressed = 0;
  };

  app.addHook('onRequest', async (request, reply) => {
    if (READ_ONLY_METHODS.has(request.method)) return;
    const reason = authFailure(request.headers.authorization, expected);
    if (reason === undefined) return;
    failures.inc({ reason });
    warn(request, reason);
    if (reason === 'not_configured') {
      void reply.code(403).send({ error: NOT_CONFIGURED_MESSAGE });
    } else if (reason === 'missing') {
      void reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="vigil"')
        .send({ error: 'this request changes state: send the ops token as Authorization: Bearer <token>' });
    } else {
      void reply
        .code(403)
        .send({ error: 'the ops token does not match the one the daemon was started with' });
    }
    return reply;
  });
}

/** Whether a listen address keeps the server private to this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
