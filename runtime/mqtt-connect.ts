/**
 * Small pieces every MQTT client of Vigil needs (the alert publisher and the telemetry
 * sources), kept in one place so that a refused login or a stuck disconnect is handled alike.
 */

/** CONNACK codes that mean "your credentials or identity are not accepted" (v3.1.1 and v5). */
export const REFUSAL_CODES: ReadonlySet<number> = new Set([2, 4, 5, 133, 134, 135, 138]);

/** The CONNACK code of an mqtt.js error when it is a refusal of credentials or identity. */
export function refusalCode(err: Error): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' && REFUSAL_CODES.has(code) ? code : undefined;
}

/**
 * A URL for logs and messages: without its user name and password (user:password@host), so that
 * no credential written into a URL ever reaches a log line, an error message or a status page.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    // Not a URL to Node, but it may still carry credentials: cut everything before the last '@'
    // of the authority.
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1');
  }
}

/**
 * Settles like `promise`, or rejects with `onTimeout()` after `ms`; the timer never outlives
 * the promise, so that a quick disconnect does not keep the process alive.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error = () => new Error(`timed out after ${ms} ms`),
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
