/**
 * Trace ids a sender gives its input (docs/OBSERVABILITY.md, "Trace ids"): the same rules for
 * every protocol that can carry one, so that an id Vigil takes is always safe in a log line, a
 * JSON field, an MQTT topic and SQL. An id that breaks them is ignored, and the input gets an id
 * of Vigil's own (a UUIDv7), never refused for it.
 */

/** A sender's id (X-Request-Id style): 1 to 128 letters, digits, `.`, `_`, `:`, `-`, from a letter or digit. */
const SENDER_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** W3C trace context: version-traceid-parentid-flags; the trace id names the input. */
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The id as given when it is a sane sender id, else undefined. */
export function senderId(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const id = value.trim();
  return SENDER_ID.test(id) ? id : undefined;
}

/** The 32-hex-digit trace id of a W3C `traceparent` value (not the invalid all-zero one). */
export function traceparentId(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const trace = TRACEPARENT.exec(value.trim())?.[1];
  return trace !== undefined && !/^0+$/.test(trace) ? trace : undefined;
}

/**
 * The trace id a sender put on its message, by precedence: an explicit request id (X-Request-Id,
 * an MQTT user property `x-request-id`), then the trace id of a W3C traceparent, then a
 * protocol's own correlation field (MQTT 5 correlation data, the Sparkplug payload uuid).
 */
export function pickTraceId(given: {
  requestId?: unknown;
  traceparent?: unknown;
  correlation?: unknown;
}): string | undefined {
  return senderId(given.requestId) ?? traceparentId(given.traceparent) ?? senderId(given.correlation);
}
