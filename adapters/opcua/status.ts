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

/**
 * The info bits of a data value's status (Part 4, 7.34.1, bits 0-15) that a person should see:
 * `Overflow` means the server's queue for the item was full and older samples were thrown away,
 * the limit bits say the value is pinned at a limit of its source. They qualify the code without
 * changing its severity, so a good value stays good, but they must not be dropped.
 */
const INFO_TYPE_MASK = 0x0c00;
const INFO_TYPE_DATA_VALUE = 0x0400;
const OVERFLOW_BIT = 0x0080;
const LIMIT_NAMES: Record<number, string | undefined> = {
  0x0100: 'LimitLow',
  0x0200: 'LimitHigh',
  0x0300: 'LimitConstant',
};

/**
 * The names of the info bits that are set. Servers are to flag them with InfoType DataValue; a
 * reserved InfoType means the bits carry something Vigil cannot know and are ignored, but a bit
 * without any InfoType (node-opcua's own `makeStatusCode(Good, 'Overflow')` does that) still counts.
 */
export function infoBitNames(status: StatusCode): string[] {
  const bits = status.value & 0xffff;
  const names: string[] = [];
  if (bits & 0x8000) names.push('StructureChanged');
  if (bits & 0x4000) names.push('SemanticsChanged');
  const infoType = bits & INFO_TYPE_MASK;
  if (infoType === 0 || infoType === INFO_TYPE_DATA_VALUE) {
    const limit = LIMIT_NAMES[bits & 0x0300];
    if (limit) names.push(limit);
    if (bits & OVERFLOW_BIT) names.push('Overflow');
  }
  return names;
}

/** Whether the server had to throw samples of this item away since the last notification. */
export function hasOverflow(status: StatusCode): boolean {
  return infoBitNames(status).includes('Overflow');
}

/**
 * The code's name with the info bits that matter after a `#`: `BadSensorFailure`,
 * `UncertainLastUsableValue`, `Good#Overflow`, `GoodClamped#LimitHigh`. Not node-opcua's own
 * decoration, which also names the InfoType marker and spells a constant limit three times.
 */
export function statusName(status: StatusCode): string {
  const base = (status.value & 0xffff0000) >>> 0;
  const name = status.name.split('#')[0] || `0x${base.toString(16).padStart(8, '0')}`;
  const info = infoBitNames(status);
  return info.length > 0 ? `${name}#${info.join('|')}` : name;
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
  // Good with info bits (an overflow, a value at its limit) keeps them: the number is fine, but a
  // person must be able to see that samples were lost on the way.
  const status = dv.statusCode.value === 0 ? undefined : statusName(dv.statusCode);
  return { ok: true, reading: { ...base, value: n.value, quality, ...(status ? { status } : {}) } };
}
