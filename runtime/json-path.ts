/**
 * Dotted paths into parsed JSON (`data.temp`, `values.0`), as MQTT JSON subscriptions and the
 * payload expectations write them. One implementation, so that a path the mapping reads a tag
 * from is exactly the path a required-field check looks for.
 */

/** Looks a dotted path up: object keys (own ones only), array indexes as digits. */
export function getPath(root: unknown, keys: readonly string[]): unknown {
  let at: unknown = root;
  for (const k of keys) {
    if (Array.isArray(at)) {
      if (!/^\d+$/.test(k)) return undefined;
      at = at[Number(k)];
    } else if (typeof at === 'object' && at !== null) {
      // Own keys only: `constructor` or `__proto__` in a path must not reach the prototype.
      if (!Object.hasOwn(at, k)) return undefined;
      at = (at as Record<string, unknown>)[k];
    } else {
      return undefined;
    }
  }
  return at;
}
