import client from 'node-opcua-client';
import type { InputRejectReason } from '../../runtime/pipeline/source.js';
import type { Reading, ReadingQuality } from '../../runtime/telemetry/reading.js';

const { DataType, VariantArrayType } = client;
type DataValue = InstanceType<typeof client.DataValue>;
type StatusCode = InstanceType<typeof client.StatusCode>;

/**
 * From an OPC-UA DataValue to Vigil's one Reading: the status code decides the quality, the value
 * must be one number, and the timestamps are the server's, not ours.
 */

/** What a monitored node is mapped to. */
export interface ItemTarget {
  nodeId: string;
  asset: string;
  tag: string;
}

export type Converted =
  { ok: true; reading: Reading } | { ok: false; reason: InputRejectReason; message: string; origin: string };

/** The severity bits of a status code (Part 4, 7.34.1): 00 good, 01 uncertain, 10 and 11 bad. */
export function qualityOf(status: StatusCode): ReadingQuality {
  const severity = status.value >>> 30;
  if (severity === 0) return 'good';
  if (severity === 1) return 'uncertain';
  return 'bad';
}

/** The code's own name without info bits' decoration (`BadSensorFailure`, `UncertainLastUsableValue`). */
export function statusName(status: StatusCode): string {
  const name = status.name || `0x${status.value.toString(16).padStart(8, '0')}`;
  return name.split('#')[0] ?? name;
}

type Numeric = { kind: 'number'; value: number } | { kind: 'empty' } | { kind: 'not_a_number'; what: string };

const NUMERIC = new Set<number>([
  DataType.SByte,
  DataType.Byte,
  DataType.Int16,
  DataType.UInt16,
  DataType.Int32,
  DataType.UInt32,
  DataType.Float,
  DataType.Double,
]);

/** The one number a variant holds, if it holds one; Int64 arrives as [high, low] 32-bit words. */
function numericOf(dv: DataValue): Numeric {
  const variant = dv.value;
  if (!variant || variant.dataType === DataType.Null) return { kind: 'empty' };
  const typeName = DataType[variant.dataType] ?? `type ${variant.dataType}`;
  if (variant.arrayType !== undefined && variant.arrayType !== VariantArrayType.Scalar) {
    return { kind: 'not_a_number', what: `an array of ${typeName}` };
  }
  const v: unknown = variant.value;
  if (NUMERIC.has(variant.dataType) && typeof v === 'number') return { kind: 'number', value: v };
  if (variant.dataType === DataType.Boolean && typeof v === 'boolean')
    return { kind: 'number', value: v ? 1 : 0 };
  if ((variant.dataType === DataType.Int64 || variant.dataType === DataType.UInt64) && Array.isArray(v)) {
    const [high, low] = v as [number, number];
    const signedHigh = variant.dataType === DataType.Int64 ? high | 0 : high >>> 0;
    return { kind: 'number', value: signedHigh * 2 ** 32 + (low >>> 0) };
  }
  return { kind: 'not_a_number', what: `a ${typeName} value` };
}

/**
 * Good values must be finite numbers (a boolean counts as 0/1) or they are refused; uncertain ones
 * keep their number when they have one; bad ones never carry a value. Source time is the device's
 * timestamp when the server sends one, else the time Vigil received the value.
 */
export function toReading(source: string, target: ItemTarget, dv: DataValue, receivedAt: number): Converted {
  const quality = qualityOf(dv.statusCode);
  const origin = target.nodeId;
  const where = `${target.asset}/${target.tag} (${target.nodeId})`;
  const sourceTs = dv.sourceTimestamp?.getTime();
  const serverTs = dv.serverTimestamp?.getTime();
  const base = {
    source,
    asset: target.asset,
    tag: target.tag,
    sourceTime: sourceTs !== undefined && Number.isFinite(sourceTs) ? sourceTs : receivedAt,
    serverTime: serverTs !== undefined && Number.isFinite(serverTs) ? serverTs : null,
    receivedAt,
  };
  if (quality === 'bad') {
    return { ok: true, reading: { ...base, value: null, quality, status: statusName(dv.statusCode) } };
  }
  const n = numericOf(dv);
  if (quality === 'uncertain') {
    const value = n.kind === 'number' && Number.isFinite(n.value) ? n.value : null;
    return { ok: true, reading: { ...base, value, quality, status: statusName(dv.statusCode) } };
  }
  if (n.kind === 'empty') {
    return { ok: false, reason: 'not_a_number', message: `${where}: a good status but no value`, origin };
  }
  if (n.kind === 'not_a_number') {
    return { ok: false, reason: 'not_a_number', message: `${where}: ${n.what}, not a number`, origin };
  }
  if (!Number.isFinite(n.value)) {
    return {
      ok: false,
      reason: 'not_finite',
      message: `${where}: ${n.value} is not a finite number`,
      origin,
    };
  }
  const status = dv.statusCode.value === 0 ? undefined : statusName(dv.statusCode);
  return { ok: true, reading: { ...base, value: n.value, quality, ...(status ? { status } : {}) } };
}
