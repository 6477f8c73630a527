import { v7 as uuidv7 } from 'uuid';
import { getPath } from '../json-path.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { SourceContext } from '../pipeline/source.js';
import type { ExpectationRule } from '../telemetry/reading.js';
import type { PayloadExpectations } from './config.js';
import type { DataQualityMonitor, DqSeries } from './monitor.js';

/** One JSON message, parsed, as a JSON source hands it to its payload checks. */
export interface PayloadMessage {
  /** The subscription's topic filter: payload shapes are tracked per filter and asset. */
  subscription: string;
  topic: string;
  asset: string;
  payload: unknown;
  receivedAt: number;
  /** The message's trace id, when the sender gave one (else the checks give one to a message that broke them). */
  traceId?: string | undefined;
}

/** What a message broke of its payload expectations. */
export interface PayloadFindings {
  /** The message's trace id (the sender's, or one given here): the alert names it. */
  traceId: string;
  /** The rules it broke: payload_fields, schema_drift or both. */
  rules: ExpectationRule[];
}

/**
 * What a JSON source may call for every message it parsed: the payload expectations of its
 * config. Returns what the message broke, or undefined when it met them (the common case). The
 * source gives every reading of such a message that trace id and those rules as its `flags`, so
 * that the alert and the stored readings name the same message, and each pipeline's
 * dataQuality policy decides what its model sees of them, as for any flagged reading.
 */
export interface PayloadQualityHook {
  checkPayload(msg: PayloadMessage): PayloadFindings | undefined;
}

/**
 * The payload checks of a source, from its context: the daemon builds the contexts; one handed a
 * plain context (a test, a tool) simply checks nothing.
 */
export function payloadQualityOf(ctx: SourceContext): PayloadQualityHook | undefined {
  return ctx.payloadQuality;
}

/** JSON types of payload fields, as schema drift compares them. */
export type JsonType = 'number' | 'string' | 'boolean' | 'null' | 'object' | 'array';

/** Fields of one payload shape at most, and how deep objects are followed. */
const MAX_FIELDS = 500;
const MAX_DEPTH = 16;
/** Subscription and asset pairs whose last shape is kept (bounded memory); the oldest go first. */
const MAX_SHAPES = 5_000;
/** A shape change of one subscription and asset is logged at most this often; counted every time. */
const LOG_EVERY_MS = 10_000;

interface Shape {
  /** Field path -> JSON type; a null field keeps the type it had before (null is not a type change). */
  types: Map<string, JsonType>;
  /** The fields and types as one string: unchanged payloads compare in one step. */
  signature: string;
  loggedAt: number;
  suppressed: number;
}

export interface ShapeChange {
  added: string[];
  removed: string[];
  changed: string[];
}

/**
 * The payload expectations of one MQTT JSON source (docs/DATA-QUALITY.md): required fields
 * (`payload_fields`) and schema drift (`schema_drift`): the set of leaf fields of each payload and
 * their JSON types, tracked per subscription and asset, compared with the previous payload's; a
 * change is logged with the field names, counted, and reported to the monitor. Per asset as well
 * as per topic filter, because one filter (plant/+/telemetry) often carries machines of several
 * kinds whose payloads differ for good. Arrays are leaves (their length varies); a field that is
 * null keeps its previous type, since a device saying "no value" is a not_null matter.
 */
export class PayloadChecker implements PayloadQualityHook {
  private readonly required: Array<{ path: string; keys: string[] }>;
  private readonly shapes = new Map<string, Shape>();
  private readonly series = new Map<string, DqSeries>();

  constructor(
    readonly source: string,
    private readonly cfg: PayloadExpectations,
    private readonly monitor: DataQualityMonitor,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.required = cfg.requiredFields.map((path) => ({ path, keys: path.split('.') }));
  }

  checkPayload(msg: PayloadMessage): PayloadFindings | undefined {
    const now = Date.now();
    let traceId = msg.traceId;
    let broken: ExpectationRule[] | undefined;
    const dq = () => this.seriesOf(msg.asset);
    if (this.required.length > 0) {
      let missing: string[] | undefined;
      for (const f of this.required)
        if (getPath(msg.payload, f.keys) === undefined) (missing ??= []).push(f.path);
      if (missing) {
        traceId ??= uuidv7();
        (broken ??= []).push('payload_fields');
        this.monitor.violation(
          dq(),
          {
            rule: 'payload_fields',
            message: `payload on ${msg.topic} (asset ${msg.asset}) lacks the required field${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
            traceId,
            origin: msg.topic,
            receivedAt: msg.receivedAt,
          },
          now,
        );
      }
    }
    if (this.cfg.schemaDrift) {
      const change = this.observeShape(msg, now);
      if (change) {
        traceId ??= uuidv7();
        (broken ??= []).push('schema_drift');
        this.monitor.violation(
          dq(),
          {
            rule: 'schema_drift',
            message: `payload on ${msg.topic} (asset ${msg.asset}) changed shape: ${describeChange(change)}`,
            traceId,
            origin: msg.topic,
            receivedAt: msg.receivedAt,
            fields: change,
          },
          now,
        );
      }
    }
    const s = this.series.get(msg.asset);
    if (s !== undefined && s.rules.size > 0) this.monitor.passed(s, now, broken);
    return broken && traceId !== undefined ? { traceId, rules: broken } : undefined;
  }

  private seriesOf(asset: string): DqSeries {
    let s = this.series.get(asset);
    if (!s) {
      s = this.monitor.seriesOf(this.source, asset);
      if (this.series.size >= MAX_SHAPES) this.series.delete(this.series.keys().next().value!);
      this.series.set(asset, s);
    }
    return s;
  }

  /** Compares the payload's shape with the previous one of its subscription and asset. */
  private observeShape(msg: PayloadMessage, now: number): ShapeChange | undefined {
    const key = `${msg.subscription}\u0000${msg.asset}`;
    const prev = this.shapes.get(key);
    // The common case, a payload of the same shape, builds one string and no map of its fields.
    if (prev !== undefined && prev.signature === shapeSignature(msg.payload)) return undefined;
    const types = shapeOf(msg.payload);
    const signature = signatureOf(types);
    if (!prev) {
      if (this.shapes.size >= MAX_SHAPES) this.shapes.delete(this.shapes.keys().next().value!);
      this.shapes.set(key, { types, signature, loggedAt: 0, suppressed: 0 });
      return undefined;
    }
    if (prev.signature === signature) return undefined;
    const change = compareShapes(prev.types, types);
    // Nulls keep their previous type: the new shape is the baseline with them filled in.
    for (const [path, type] of types)
      if (type === 'null' && prev.types.has(path)) types.set(path, prev.types.get(path)!);
    prev.types = types;
    prev.signature = signatureOf(types);
    if (!change) return undefined;
    this.metrics.payloadSchemaChanges.inc({ source: this.source });
    if (now - prev.loggedAt >= LOG_EVERY_MS) {
      this.log.warn(
        {
          source: this.source,
          subscription: msg.subscription,
          topic: msg.topic,
          asset: msg.asset,
          ...change,
          ...(prev.suppressed > 0 ? { notLogged: prev.suppressed } : {}),
        },
        `schema drift on ${msg.topic} (source ${this.source}, asset ${msg.asset}): ${describeChange(change)}` +
          (prev.suppressed > 0 ? ` (${prev.suppressed} more changes since the last line)` : ''),
      );
      prev.loggedAt = now;
      prev.suppressed = 0;
    } else prev.suppressed++;
    return change;
  }
}

/** The leaf fields of a JSON value and their types, by dotted path. */
export function shapeOf(payload: unknown): Map<string, JsonType> {
  const out = new Map<string, JsonType>();
  const walk = (v: unknown, path: string, depth: number) => {
    if (out.size >= MAX_FIELDS) return;
    const type = jsonType(v);
    if (type === 'object' && depth < MAX_DEPTH) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length > 0) {
        for (const [k, child] of entries) walk(child, path === '' ? k : `${path}.${k}`, depth + 1);
        return;
      }
    }
    out.set(path === '' ? '(payload)' : path, type);
  };
  walk(payload, '', 0);
  return out;
}

/** signatureOf(shapeOf(payload)), without building the map: the same walk, the same limits. */
export function shapeSignature(payload: unknown): string {
  let sig = '';
  let fields = 0;
  const walk = (v: unknown, path: string, depth: number) => {
    if (fields >= MAX_FIELDS) return;
    const type = jsonType(v);
    if (type === 'object' && depth < MAX_DEPTH) {
      const keys = Object.keys(v as Record<string, unknown>);
      if (keys.length > 0) {
        for (const k of keys)
          walk((v as Record<string, unknown>)[k], path === '' ? k : `${path}.${k}`, depth + 1);
        return;
      }
    }
    fields++;
    sig += `${path === '' ? '(payload)' : path}:${type};`;
  };
  walk(payload, '', 0);
  return sig;
}

/** Fields added, removed and of another type; undefined when none (a null filling in). */
export function compareShapes(
  before: ReadonlyMap<string, JsonType>,
  after: ReadonlyMap<string, JsonType>,
): ShapeChange | undefined {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const [path, type] of after) {
    const was = before.get(path);
    if (was === undefined) added.push(path);
    else if (was !== type && was !== 'null' && type !== 'null') changed.push(path);
  }
  for (const path of before.keys()) if (!after.has(path)) removed.push(path);
  if (added.length + removed.length + changed.length === 0) return undefined;
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

export function describeChange(c: ShapeChange): string {
  const parts: string[] = [];
  if (c.added.length > 0) parts.push(`added ${c.added.join(', ')}`);
  if (c.removed.length > 0) parts.push(`removed ${c.removed.join(', ')}`);
  if (c.changed.length > 0) parts.push(`type changed ${c.changed.join(', ')}`);
  return parts.join('; ');
}

function jsonType(v: unknown): JsonType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  const t = typeof v;
  return t === 'number' || t === 'string' || t === 'boolean' ? t : 'object';
}

function signatureOf(types: ReadonlyMap<string, JsonType>): string {
  let s = '';
  for (const [path, type] of types) s += `${path}:${type};`;
  return s;
}
