/**
 * The one typed reading every telemetry source produces, whatever the protocol: OPC-UA data
 * values, serial lines, Modbus registers, MQTT JSON fields and Sparkplug B metrics all end up
 * as this, so that the store, the metrics and (later) the windowing see one shape.
 */

/**
 * How far a value can be trusted, after the protocol's own status:
 * - `good`: a number a model may use;
 * - `uncertain`: the device says it may be wrong (OPC-UA Uncertain*, Sparkplug is_null with a
 *   stale flag...); stored and counted, never fed to a model;
 * - `bad`: no usable value (OPC-UA Bad*, a sensor failure, a node that went away); `value` is
 *   null; stored and counted, never fed to a model.
 */
export type ReadingQuality = 'good' | 'uncertain' | 'bad';

export interface Reading {
  /** The configured source name (`sources.<name>`). */
  source: string;
  /** The machine or asset the value belongs to (a pump, an engine unit). */
  asset: string;
  /** The signal's name on that asset, e.g. `temperature`, `s7`. */
  tag: string;
  /** The value; null when the quality is `bad` or the device sent no value. Always finite. */
  value: number | null;
  quality: ReadingQuality;
  /**
   * The protocol's own status when it is not plainly good, as the protocol names it (an
   * OPC-UA status code name such as `BadSensorFailure`, `UncertainLastUsableValue`); kept so
   * that an integrator can see why a value was not used.
   */
  status?: string | undefined;
  /** When the device measured the value (ms since the epoch), where the protocol says. */
  sourceTime: number | null;
  /** When an intermediate server stamped it (OPC-UA server timestamp), where there is one. */
  serverTime?: number | null | undefined;
  /** When Vigil received it (ms since the epoch, wall clock). */
  receivedAt: number;
  /**
   * The trace id of the message this reading arrived in (one MQTT message, one OPC-UA
   * notification batch, one serial line or Modbus poll): given at ingest (a UUIDv7), or taken
   * from the sender where the protocol carries one. Follows the reading into the store, the
   * window results built from it, data-quality alerts and the upstream messages.
   */
  traceId?: string | undefined;
  /**
   * The data expectations this reading broke (docs/DATA-QUALITY.md), by rule name: `range`,
   * `not_null`, `rate_of_change`, `allowed_values`. Absent or empty: it met every expectation
   * declared for its tag. Stored with the reading; the pipeline's policy decides what a model
   * sees of a flagged reading.
   */
  flags?: readonly ExpectationRule[] | undefined;
}

/**
 * The rules of a data expectation (docs/DATA-QUALITY.md). Per reading: `range`, `not_null`,
 * `rate_of_change`, `allowed_values`; per series over time: `stale`; per JSON payload:
 * `payload_fields` (expected fields missing) and `schema_drift` (the payload's fields changed
 * shape); per frame: `image`.
 */
export type ExpectationRule =
  | 'range'
  | 'not_null'
  | 'rate_of_change'
  | 'allowed_values'
  | 'stale'
  | 'payload_fields'
  | 'schema_drift'
  | 'image';
