import tahuProto from 'sparkplug-payload/lib/sparkplugPayloadProto.js';

/**
 * Decoding of Sparkplug B payloads with Eclipse Tahu's generated protobuf code (sparkplug-payload),
 * one level lower than its decodePayload(): that helper reads a metric's value by the datatype
 * carried in the same metric, but Sparkplug 3.0 says DATA messages should leave the datatype
 * out (it is known from the birth), and the helper then returns null. Here the decoder keeps
 * which value field was set, and the value is read later with the datatype from the birth.
 */

const { Payload } = tahuProto.org.eclipse.tahu.protobuf;

/** Sparkplug B datatype codes (spec 3.0, 6.4.16). */
export const DataType = {
  Unknown: 0,
  Int8: 1,
  Int16: 2,
  Int32: 3,
  Int64: 4,
  UInt8: 5,
  UInt16: 6,
  UInt32: 7,
  UInt64: 8,
  Float: 9,
  Double: 10,
  Boolean: 11,
  String: 12,
  DateTime: 13,
  Text: 14,
} as const;

const TYPE_NAMES = [
  'Unknown',
  'Int8',
  'Int16',
  'Int32',
  'Int64',
  'UInt8',
  'UInt16',
  'UInt32',
  'UInt64',
  'Float',
  'Double',
  'Boolean',
  'String',
  'DateTime',
  'Text',
  'UUID',
  'DataSet',
  'Bytes',
  'File',
  'Template',
  'PropertySet',
  'PropertySetList',
];

export function typeName(datatype: number): string {
  return TYPE_NAMES[datatype] ?? `type ${datatype}`;
}

/** Datatypes that hold one number (Boolean as 0/1): the ones that become readings. */
export function isNumericType(datatype: number): boolean {
  return datatype >= DataType.Int8 && datatype <= DataType.Boolean;
}

/** The value field set in a metric, as the wire has it (64-bit integers as Long-like objects). */
export type RawValue =
  | { field: 'intValue'; value: number }
  | { field: 'longValue'; value: LongLike | number }
  | { field: 'floatValue'; value: number }
  | { field: 'doubleValue'; value: number }
  | { field: 'booleanValue'; value: boolean }
  | { field: 'other'; value: string };

export interface LongLike {
  toNumber(): number;
  toString(): string;
  toSigned?(): LongLike;
  toUnsigned?(): LongLike;
}

export interface SparkplugMetric {
  name: string | undefined;
  /** uint64 alias as a decimal string, so that it can key a Map exactly. */
  alias: string | undefined;
  /** 0 (Unknown) when the message leaves it out. */
  datatype: number;
  isNull: boolean;
  isHistorical: boolean;
  /** ms since the epoch. */
  timestamp: number | undefined;
  raw: RawValue | undefined;
}

export interface SparkplugPayload {
  timestamp: number | undefined;
  seq: number | undefined;
  /** The payload's optional uuid (spec 3.0, 6.4.1): the edge node's own name for the message. */
  uuid?: string | undefined;
  metrics: SparkplugMetric[];
}

function isLong(v: unknown): v is LongLike {
  return typeof v === 'object' && v !== null && typeof (v as LongLike).toNumber === 'function';
}

/** A uint64 from the wire as a plain number (exact up to 2^53). */
export function longToNumber(v: unknown, signed = false): number {
  if (isLong(v)) return (signed && v.toSigned ? v.toSigned() : v).toNumber();
  return Number(v);
}

const has = (o: object, k: string) => Object.hasOwn(o, k);

/**
 * Decodes a Sparkplug B payload; throws (with protobufjs's message) when the bytes are not a
 * Sparkplug payload.
 */
export function decodeSparkplugPayload(buf: Uint8Array): SparkplugPayload {
  const p = Payload.decode(buf);
  const metrics = (p.metrics ?? []).map((m): SparkplugMetric => {
    let raw: RawValue | undefined;
    if (has(m, 'intValue')) raw = { field: 'intValue', value: m.intValue as number };
    else if (has(m, 'longValue')) raw = { field: 'longValue', value: m.longValue as LongLike | number };
    else if (has(m, 'floatValue')) raw = { field: 'floatValue', value: m.floatValue as number };
    else if (has(m, 'doubleValue')) raw = { field: 'doubleValue', value: m.doubleValue as number };
    else if (has(m, 'booleanValue')) raw = { field: 'booleanValue', value: m.booleanValue as boolean };
    else {
      const other = ['stringValue', 'bytesValue', 'datasetValue', 'templateValue', 'extensionValue'].find(
        (k) => has(m, k),
      );
      if (other) raw = { field: 'other', value: other };
    }
    return {
      name: has(m, 'name') ? (m.name ?? undefined) : undefined,
      alias: has(m, 'alias') ? String(m.alias) : undefined,
      datatype: has(m, 'datatype') ? (m.datatype ?? DataType.Unknown) : DataType.Unknown,
      isNull: has(m, 'isNull') && m.isNull === true,
      isHistorical: has(m, 'isHistorical') && m.isHistorical === true,
      timestamp: has(m, 'timestamp') ? longToNumber(m.timestamp) : undefined,
      raw,
    };
  });
  return {
    timestamp: has(p, 'timestamp') ? longToNumber(p.timestamp) : undefined,
    seq: has(p, 'seq') ? longToNumber(p.seq) : undefined,
    uuid: has(p, 'uuid') && typeof p.uuid === 'string' && p.uuid !== '' ? p.uuid : undefined,
    metrics,
  };
}

export type MetricNumber =
  | { kind: 'number'; value: number }
  | { kind: 'null' }
  | { kind: 'not_numeric'; type: string }
  | { kind: 'not_finite'; value: number }
  | { kind: 'no_value' };

/** Sign-extends an n-bit two's complement value. */
function signExtend(v: number, bits: number): number {
  const shift = 32 - bits;
  return (v << shift) >> shift;
}

/**
 * The number a metric holds, read with `datatype` (the metric's own, else its birth's). Int8 and
 * Int16 are accepted both sign-extended to 32 bits (as Tahu's JavaScript writes them) and as
 * plain 8/16-bit two's complement (as the 3.0 spec's examples do).
 */
export function metricNumber(metric: SparkplugMetric, datatype: number): MetricNumber {
  if (datatype !== DataType.Unknown && !isNumericType(datatype))
    return { kind: 'not_numeric', type: typeName(datatype) };
  if (metric.isNull) return { kind: 'null' };
  const raw = metric.raw;
  if (raw === undefined) return { kind: 'no_value' };
  let value: number;
  switch (raw.field) {
    case 'intValue': {
      const u = raw.value >>> 0;
      if (datatype === DataType.Int8) value = u <= 0xff ? signExtend(u, 8) : u | 0;
      else if (datatype === DataType.Int16) value = u <= 0xffff ? signExtend(u, 16) : u | 0;
      else if (datatype === DataType.Int32) value = u | 0;
      else value = u;
      break;
    }
    case 'longValue': {
      const signed =
        datatype === DataType.Int64 ||
        datatype === DataType.Int32 ||
        datatype === DataType.Int16 ||
        datatype === DataType.Int8;
      value = longToNumber(raw.value, signed);
      break;
    }
    case 'floatValue':
    case 'doubleValue':
      value = raw.value;
      break;
    case 'booleanValue':
      value = raw.value ? 1 : 0;
      break;
    case 'other':
      return { kind: 'not_numeric', type: raw.value.replace(/Value$/, '') };
  }
  return Number.isFinite(value) ? { kind: 'number', value } : { kind: 'not_finite', value };
}
