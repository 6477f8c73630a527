import type { Logger } from '../log.js';
import type { Reading } from '../telemetry/reading.js';
import type { Sample } from './sample.js';
import type { PayloadQualityHook } from '../quality/payload.js';

/**
 * The one interface an adapter implements to bring the outside world in. The runtime defines it;
 * adapters/ implement it; the composition root wires them together.
 */
export interface Source {
  readonly name: string;
  readonly type: string;
  /**
   * Starts taking input. `signal` is the daemon's lifetime: it is aborted when the daemon stops,
   * which must end a start still in progress (a slow connect) and everything the source runs.
   */
  start(signal: AbortSignal): Promise<void>;
  /** Releases everything start() took: watchers, sockets, timers. Idempotent. */
  stop(): Promise<void>;
  /** Connection / readiness state, for /readyz and metrics. */
  state(): SourceState;
}

export type SourceState = 'starting' | 'up' | 'down' | 'stopped';

/** Why an input was refused before it became a sample; each is counted in metrics. */
export type InputRejectReason =
  // frames
  | 'empty'
  | 'too_large'
  | 'not_an_image'
  | 'incomplete'
  | 'read_error'
  | 'bad_request'
  // the store refuses writes (a full disk): the camera is told to send again later (HTTP 503)
  | 'store_unavailable'
  // telemetry: the payload or line could not be parsed at all (bad JSON, a garbage line,
  // a protobuf that does not decode)
  | 'malformed'
  // a field that must be a number is a string, an object, a boolean where none is allowed
  | 'not_a_number'
  // NaN, Infinity or -Infinity
  | 'not_finite'
  // outside the configured plausible range of the tag (`limits`)
  | 'out_of_range'
  // a source timestamp too far in the future or the past (`telemetry.maxClockSkewSeconds`,
  // `telemetry.maxAgeSeconds`)
  | 'bad_timestamp'
  // a payload field or node the mapping does not know, or a Sparkplug alias never born
  | 'unknown_tag'
  // a frame whose checksum does not match (Modbus RTU CRC)
  | 'crc_error'
  // a device that did not answer in time (Modbus poll)
  | 'timeout'
  // a Sparkplug message out of sequence (a gap triggers a rebirth request)
  | 'sequence_gap'
  // the device answered with a protocol exception (Modbus exception code, OPC-UA service fault)
  | 'device_error';

export interface SourceContext {
  log: Logger;
  /** Resolves a file path from the source's config (certificates, PKI folders) against the config file's folder. */
  resolvePath(p: string): string;
  /** Hand a sample to the pipelines that read this source. Never throws. */
  emit(sample: Sample): void;
  /** Count and log an input that never became a sample. Never throws. */
  reject(reason: InputRejectReason, message: string, origin: string): void;
  /**
   * Hand telemetry readings to the runtime. The runtime checks each (finite value, range
   * limits, timestamps), counts and logs the ones it refuses, and stores the rest in batches.
   * Sources pass readings of any quality: bad and uncertain ones are stored and counted too.
   * Never throws. Frame sources never call it.
   */
  readings(batch: readonly Reading[]): void;
  /**
   * As readings(), for sources that acknowledge their input (MQTT QoS 1): resolves once the
   * accepted readings of the batch are committed to the store (or, when none was accepted, at
   * once), so that the source acknowledges only what a power cut can no longer lose. With a
   * `mark`, the batch is recorded under it in the same transaction, and a redelivered batch whose
   * mark is already recorded (or queued) is not stored twice: `duplicate` is then true. Never
   * rejects; while the store refuses writes it stays pending (the source stops acknowledging, and
   * its broker keeps the messages).
   */
  readingsDurable(batch: readonly Reading[], mark?: IngestMark): Promise<{ duplicate: boolean }>;
  /** Count a re-established connection (after the first), for `vigil_source_reconnects_total`. */
  reconnected(): void;
  /**
   * The payload expectations of this source (MQTT JSON: required fields, schema drift;
   * docs/DATA-QUALITY.md), when it declares any. A context without them checks nothing.
   */
  payloadQuality?: PayloadQualityHook | undefined;
  /**
   * Whether a pipeline this source feeds has just failed to store a result (a full disk): a
   * source that can tell its sender to come back later (HTTP 503) refuses new frames meanwhile,
   * instead of accepting frames that could only be dropped. Absent: always false.
   */
  storeRefusing?: (() => boolean) | undefined;
}

/**
 * Identifies one delivery of input that its sender may deliver again after a crash or a lost
 * acknowledgement (an MQTT QoS 1 message redelivered with DUP set). `key` names the delivery slot
 * (the MQTT packet id, which the broker reuses once acknowledged), `hash` its content; only a
 * redelivery (`redelivered`) is compared with the recorded mark of the same key.
 */
export interface IngestMark {
  key: string;
  hash: string;
  redelivered: boolean;
}

/** An IngestMark as the store records it: with the source it came from. */
export interface SourceIngestMark extends IngestMark {
  source: string;
}
