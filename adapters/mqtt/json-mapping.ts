import type { MqttJsonSubscription } from '../../runtime/config/sources/mqtt.js';
import { TagName } from '../../runtime/config/sources/telemetry.js';
import type { InputRejectReason } from '../../runtime/pipeline/source.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { getPath } from '../../runtime/json-path.js';

// Re-exported for callers of this module; the one implementation is runtime/json-path.ts.
export { getPath };

/**
 * Turns one JSON payload received on a topic into readings, by a subscription's mapping. Pure:
 * no I/O, no clock (the receive time comes in), so that every rule here is unit-tested.
 *
 * Rules, per configured tag:
 * - a JSON number → a good reading; a number too big for a double (1e999 parses as Infinity) is
 *   refused as not_finite;
 * - true/false → 1/0;
 * - null → a bad reading (value null, status `NoValue`): the device says it has no value;
 * - a string is refused: "NaN", "Infinity" as not_finite, anything else as not_a_number; objects
 *   and arrays as not_a_number;
 * - a path absent from the message is skipped: devices often send only what changed.
 * Refusing one field does not refuse the others of the same message.
 */

export interface MappingRejection {
  reason: InputRejectReason;
  message: string;
}

export interface MappingOutcome {
  readings: Reading[];
  rejections: MappingRejection[];
  /** The parsed payload and its asset, once both could be read: for the payload expectations. */
  parsed?: { payload: unknown; asset: string } | undefined;
}

/**
 * Status of a reading whose device sent "no value" (a JSON null, a Sparkplug is_null metric): the
 * same name the serial line source gives an empty field, so that one query finds them all.
 */
export const NO_VALUE_STATUS = 'NoValue';

export interface CompiledJsonSubscription {
  config: MqttJsonSubscription;
  /** The asset template split into literal text and topic level indexes. */
  assetParts: Array<string | number> | undefined;
  tags: Array<{ tag: string; path: string; keys: string[] }>;
  /** Top-level keys that are not tags for allNumericFields (timestamp, asset, mapped paths). */
  reservedKeys: Set<string>;
}

export function compileSubscription(config: MqttJsonSubscription): CompiledJsonSubscription {
  const assetParts =
    config.asset === undefined
      ? undefined
      : config.asset
          .split(/(\{\d+\})/)
          .filter((p) => p !== '')
          .map((p) => (/^\{\d+\}$/.test(p) ? Number(p.slice(1, -1)) : p));
  const tags = Object.entries(config.tags ?? {}).map(([tag, path]) => ({ tag, path, keys: path.split('.') }));
  const reservedKeys = new Set<string>();
  for (const p of [config.timestampField, config.assetField, ...tags.map((t) => t.path)]) {
    if (p !== undefined) reservedKeys.add(p.split('.')[0]!);
  }
  return { config, assetParts, tags, reservedKeys };
}

/** An asset or tag id taken from a device: non-empty, bounded, printable. */
export function usableId(s: string): boolean {
  return s.length > 0 && s.length <= 200 && ![...s].some(isControl);
}

function isControl(ch: string): boolean {
  const c = ch.charCodeAt(0);
  return c < 0x20 || c === 0x7f;
}

/** A few printable characters of what was received, for a message a person reads. */
export function preview(text: string, max = 40): string {
  const clean = [...text.slice(0, max)].map((ch) => (isControl(ch) ? '?' : ch)).join('');
  return JSON.stringify(text.length > max ? `${clean}…` : clean);
}

const NOT_FINITE_WORD = /^\s*[-+]?(nan|inf|infinity)\s*$/i;
const NUMERIC_LOOKING = /^\s*[-+]?(\d|\.\d|nan\b|inf)/i;

type Value =
  | { kind: 'number'; value: number }
  | { kind: 'null' }
  | { kind: 'absent' }
  | { kind: 'refused'; reason: InputRejectReason; why: string };

/** What a payload field means as a tag value (see the rules at the top). */
export function fieldValue(raw: unknown): Value {
  if (raw === undefined) return { kind: 'absent' };
  if (raw === null) return { kind: 'null' };
  if (typeof raw === 'number') {
    return Number.isFinite(raw)
      ? { kind: 'number', value: raw }
      : { kind: 'refused', reason: 'not_finite', why: `is ${raw} (too large for a number)` };
  }
  if (typeof raw === 'boolean') return { kind: 'number', value: raw ? 1 : 0 };
  if (typeof raw === 'string') {
    return NOT_FINITE_WORD.test(raw)
      ? { kind: 'refused', reason: 'not_finite', why: `is the string ${preview(raw)}, not a finite number` }
      : { kind: 'refused', reason: 'not_a_number', why: `is the string ${preview(raw)}, not a JSON number` };
  }
  return {
    kind: 'refused',
    reason: 'not_a_number',
    why: `is ${Array.isArray(raw) ? 'an array' : 'an object'}, not a number`,
  };
}

/** The measurement time in ms since the epoch, or why it cannot be read. */
function readTimestamp(
  payload: unknown,
  sub: MqttJsonSubscription,
): { ok: true; time: number | undefined } | { ok: false; why: string } {
  const field = sub.timestampField;
  if (field === undefined) return { ok: true, time: undefined };
  const raw = getPath(payload, field.split('.'));
  if (raw === undefined || raw === null) return { ok: false, why: `has no timestamp field '${field}'` };
  const shown = typeof raw === 'string' ? preview(raw) : JSON.stringify(raw);
  if (sub.timestampFormat === 'iso') {
    if (
      typeof raw !== 'string' ||
      !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(raw)
    ) {
      return {
        ok: false,
        why: `timestamp field '${field}' is ${shown}, not an ISO 8601 time with a zone such as 2024-05-01T12:00:00Z`,
      };
    }
    const t = Date.parse(raw);
    return Number.isFinite(t)
      ? { ok: true, time: t }
      : { ok: false, why: `timestamp field '${field}' is ${shown}, not a valid date` };
  }
  const unit = sub.timestampFormat === 's' ? 'seconds' : 'milliseconds';
  if (typeof raw !== 'number' || !Number.isFinite(raw)) {
    return {
      ok: false,
      why: `timestamp field '${field}' is ${shown}, not a number of ${unit} since the epoch`,
    };
  }
  return { ok: true, time: sub.timestampFormat === 's' ? Math.round(raw * 1000) : raw };
}

function resolveAsset(
  compiled: CompiledJsonSubscription,
  topic: string,
  payload: unknown,
): { ok: true; asset: string } | { ok: false; why: string } {
  let asset: string;
  if (compiled.assetParts) {
    const levels = topic.split('/');
    const parts: string[] = [];
    for (const p of compiled.assetParts) {
      if (typeof p === 'string') parts.push(p);
      else if (levels[p] === undefined)
        return {
          ok: false,
          why: `the topic has no level ${p} for the asset template ${compiled.config.asset}`,
        };
      else parts.push(levels[p]);
    }
    asset = parts.join('');
  } else {
    const field = compiled.config.assetField!;
    const raw = getPath(payload, field.split('.'));
    if (typeof raw === 'number' && Number.isFinite(raw)) asset = String(raw);
    else if (typeof raw === 'string') asset = raw;
    else
      return {
        ok: false,
        why: `asset field '${field}' is ${raw === undefined ? 'missing' : 'not a string'}`,
      };
  }
  if (!usableId(asset))
    return { ok: false, why: `the asset id ${preview(asset)} is empty, too long or not printable` };
  return { ok: true, asset };
}

export interface JsonMessage {
  source: string;
  topic: string;
  payload: Buffer;
  receivedAt: number;
  maxPayloadBytes: number;
}

/** Maps one message; never throws. */
export function mapJsonMessage(compiled: CompiledJsonSubscription, msg: JsonMessage): MappingOutcome {
  const refuse = (reason: InputRejectReason, message: string): MappingOutcome => ({
    readings: [],
    rejections: [{ reason, message }],
  });
  const size = msg.payload.length;
  if (size > msg.maxPayloadBytes) {
    return refuse(
      'too_large',
      `payload of ${size} bytes is over the limit of ${msg.maxPayloadBytes} (maxPayloadBytes)`,
    );
  }
  if (size === 0) return refuse('empty', 'empty payload (0 bytes)');
  const text = msg.payload.toString('utf8');
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    return refuse(
      'malformed',
      `payload is not JSON (${(err as Error).message}); it starts with ${preview(text)}`,
    );
  }
  const sub = compiled.config;
  const ts = readTimestamp(payload, sub);
  if (!ts.ok) return refuse('bad_timestamp', `payload ${ts.why}`);
  const asset = resolveAsset(compiled, msg.topic, payload);
  if (!asset.ok) return refuse('malformed', `cannot tell the asset: ${asset.why}`);

  const readings: Reading[] = [];
  const rejections: MappingRejection[] = [];
  const sourceTime = ts.time ?? msg.receivedAt;
  const taken = new Set<string>();
  const add = (tag: string, field: string, raw: unknown) => {
    const v = fieldValue(raw);
    if (v.kind === 'absent') return;
    taken.add(tag);
    if (v.kind === 'refused') {
      rejections.push({
        reason: v.reason,
        message: `field '${field}' (tag ${tag}, asset ${asset.asset}) ${v.why}`,
      });
      return;
    }
    const base = { source: msg.source, asset: asset.asset, tag, sourceTime, receivedAt: msg.receivedAt };
    readings.push(
      v.kind === 'null'
        ? { ...base, value: null, quality: 'bad', status: NO_VALUE_STATUS }
        : { ...base, value: v.value, quality: 'good' },
    );
  };

  for (const t of compiled.tags) add(t.tag, t.path, getPath(payload, t.keys));

  const parsed = { payload, asset: asset.asset };
  if (sub.allNumericFields) {
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      return {
        ...refuse('malformed', 'payload is not a JSON object, so allNumericFields finds no fields'),
        parsed,
      };
    }
    for (const [key, raw] of Object.entries(payload)) {
      if (compiled.reservedKeys.has(key) || taken.has(key)) continue;
      // Text fields (a state, a serial number) are not measurements; but a number sent as a
      // string is a device bug worth counting, not something to drop silently.
      const counts =
        typeof raw === 'number' || raw === null || (typeof raw === 'string' && NUMERIC_LOOKING.test(raw));
      if (!counts) continue;
      if (!TagName.safeParse(key).success) {
        rejections.push({
          reason: 'unknown_tag',
          message: `field ${preview(key)} cannot be a tag name (allNumericFields)`,
        });
        continue;
      }
      add(key, key, raw);
    }
  }

  if (readings.length === 0 && rejections.length === 0) {
    const wanted = compiled.tags.map((t) => t.path);
    return {
      ...refuse(
        'unknown_tag',
        wanted.length > 0
          ? `none of the mapped fields (${wanted.join(', ')}) is in the payload ${preview(text)}`
          : `the payload ${preview(text)} has no numeric top-level field (allNumericFields)`,
      ),
      parsed,
    };
  }
  return { readings, rejections, parsed };
}
