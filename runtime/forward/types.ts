import type { Alert, Result } from '../pipeline/result.js';
import type { Reading } from '../telemetry/reading.js';

/**
 * The store-and-forward contract: what the store keeps for delivery upstream, in which order,
 * and what a receiver gets. docs/STORE-AND-FORWARD.md documents it for receivers; change it only
 * with a new `schema` version.
 */

/** The classes of stored data, highest delivery priority first. */
export const DATA_CLASSES = ['alerts', 'results', 'readings'] as const;
export type DataClass = (typeof DATA_CLASSES)[number];

/** Delivery priority: lower goes first (alerts before results before raw readings). */
export const CLASS_PRIORITY: Record<DataClass, number> = { alerts: 0, results: 1, readings: 2 };

/**
 * One forwarded row: the stored payload plus the keys a receiver orders and de-duplicates on.
 * Trace ids travel with it (docs/OBSERVABILITY.md, "Trace ids"): a reading's `traceId` (and the
 * `flags` of the expectations it broke), a frame result's `sampleId` and `payloadSha256`, a
 * telemetry result's `details.traceIds`; an alert is its published payload, which carries the same.
 * Fields absent from a row (rows stored before schema version 5) are left out, never null.
 */
export type UpstreamItem =
  | ({ id: string; seq: number } & Omit<Alert, 'id'>)
  | ({ id: string; seq: number } & Omit<Result, 'id'>)
  | ({ id: string; seq: number } & Reading);

/**
 * One MQTT message on `<prefix>/<device>/upstream/<class>`: a run of consecutive rows of one
 * class, oldest first. Ids:
 *  - alerts and results keep their own UUID `id`;
 *  - a reading's id is `<store>/<seq>`.
 * `seq` is the row's position in its class within this store (SQLite AUTOINCREMENT: it only
 * grows and is never reused, even after deletions). A new store (first start, or a damaged
 * database moved aside) has a new `store` id and starts its seqs again at 1, so receivers order
 * by (store, class, seq) and de-duplicate by `id`.
 */
export interface UpstreamMessage {
  schema: 'vigil.upstream.v1';
  device: string;
  /** The store's id: a UUID created with the database file. */
  store: string;
  class: DataClass;
  /** seq of the first and last item. Rows evicted under a quota leave gaps between messages. */
  first: number;
  last: number;
  /** When this message was (re)sent: ISO 8601. */
  sentAt: string;
  items: UpstreamItem[];
}

/** A row read for forwarding: its seq, when it was stored (ms), and the item to send. */
export interface QueuedRow {
  seq: number;
  /** When the row was stored or raised (ms since the epoch): the backlog's age is measured from it. */
  at: number;
  item: UpstreamItem;
}

export interface ClassBacklog {
  /** Rows stored and not yet acknowledged upstream. */
  rows: number;
  /** seq and time (ms) of the oldest undelivered row; null when nothing is waiting. */
  oldestSeq: number | null;
  oldestAt: number | null;
  /** Highest seq acknowledged by the upstream broker (0 before the first). */
  ackedSeq: number;
  /** When the last acknowledgement for this class came (ms); null before the first. */
  lastDeliveryAt: number | null;
}

/**
 * The part of the store the upstream forwarder needs (the Store implements it), so that the
 * forwarder does not depend on SQLite.
 */
export interface ForwardQueue {
  /** The store's id, sent in every message. */
  readonly storeId: string;
  /** Rows of `cls` with seq > afterSeq, oldest first, at most `limit`. */
  nextRows(cls: DataClass, afterSeq: number, limit: number): QueuedRow[];
  /**
   * Records that every row of `cls` up to `seq` was acknowledged by the upstream broker at `at`
   * (ms). Monotonic: a lower seq than already recorded is ignored. Durable once it returns.
   */
  markDelivered(cls: DataClass, seq: number, at: number): void;
  /** The persisted cursor and backlog of one class. */
  backlog(cls: DataClass): ClassBacklog;
  /** The highest seq ever given to a row of `cls` in this store (0 before the first). */
  lastSeq(cls: DataClass): number;
}
