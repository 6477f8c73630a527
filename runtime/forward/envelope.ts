import { topicLevel } from '../publish/topics.js';
import type { DataClass, QueuedRow, UpstreamMessage } from './types.js';

/** `<prefix>/<device>/upstream/<class>` (docs/STORE-AND-FORWARD.md). */
export function upstreamTopic(prefix: string, deviceId: string, cls: DataClass): string {
  return `${prefix.replace(/\/+$/, '')}/${topicLevel(deviceId)}/upstream/${cls}`;
}

/** One message of consecutive rows of one class, oldest first (at least one row). */
export function buildMessage(
  device: string,
  store: string,
  cls: DataClass,
  rows: readonly QueuedRow[],
  sentAt: Date = new Date(),
): UpstreamMessage {
  if (rows.length === 0) throw new Error('an upstream message needs at least one row');
  return {
    schema: 'vigil.upstream.v1',
    device,
    store,
    class: cls,
    first: rows[0]!.seq,
    last: rows[rows.length - 1]!.seq,
    sentAt: sentAt.toISOString(),
    items: rows.map((r) => r.item),
  };
}
