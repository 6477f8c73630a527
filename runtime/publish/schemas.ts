/**
 * The `schema` field of every message Vigil publishes: it names the JSON Schema the message
 * follows (docs/CONTRACTS.md; the files are in docs/schemas/<version>/). The value carries the
 * major version only: a message keeps it through compatible additions and changes it with a
 * breaking change, when both versions are published side by side for a transition.
 *
 * The publisher only stamps the id; messages are never validated on the publish path (the
 * contract tests in test/contracts/ validate real messages against the files).
 */
export const MESSAGE_SCHEMAS = {
  /** `<prefix>/<device>/alerts/<kind>` */
  alert: 'vigil.alert.v1',
  /** `<prefix>/<device>/status`, the online status and the offline status (also the last will) */
  status: 'vigil.status.v1',
  /** `<prefix>/<device>/results/<pipeline>` */
  result: 'vigil.result.v1',
  /** `<prefix>/<device>/rollout/<model>` (set by the rollout controller, runtime/rollout/types.ts) */
  rollout: 'vigil.rollout.v1',
  /** `<prefix>/<device>/upstream/<class>` on the upstream broker (runtime/forward/types.ts) */
  upstream: 'vigil.upstream.v1',
} as const;

export type MessageSchemaId = (typeof MESSAGE_SCHEMAS)[keyof typeof MESSAGE_SCHEMAS];

/** Where the schema files live in the repository, relative to its root. */
export const SCHEMA_FOLDER = 'docs/schemas';

/**
 * The JSON text of a message with its `schema` field first. It builds on the message's own JSON
 * rather than copying the object, so stamping costs no more than the serialising that publishing
 * needs anyway. The message must not have a `schema` field of its own.
 */
export function withSchema(id: MessageSchemaId, message: object & { schema?: never }): string {
  const body = JSON.stringify(message);
  return body === '{}' ? `{"schema":"${id}"}` : `{"schema":"${id}",${body.slice(1)}`;
}
