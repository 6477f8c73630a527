import type { Reading } from '../../runtime/telemetry/reading.js';
import { NO_VALUE_STATUS, type MappingRejection } from './json-mapping.js';
import {
  DataType,
  isNumericType,
  metricNumber,
  typeName,
  type SparkplugMetric,
  type SparkplugPayload,
} from './sparkplug-payload.js';

/**
 * What a Sparkplug B host application remembers about the edge nodes it follows, and how each
 * message turns into readings. Pure: no MQTT, no clock (times come in with each message).
 *
 * Per edge node (group id + edge node id):
 * - NBIRTH starts a session: its bdSeq, the sequence number (seq 0), and the node's metrics by
 *   name and alias; every device of the node must send DBIRTH again after it.
 * - Every later message of the node (NDATA, DBIRTH, DDATA, DDEATH) carries the next seq, 0..255
 *   wrapping. A message with another seq means messages were lost, perhaps a DBIRTH that
 *   redefined aliases, so aliases cannot be trusted: the message is refused (`sequence_gap`), a
 *   rebirth is requested, and the node's messages are refused the same way until its NBIRTH.
 * - NDATA/DDATA before the birth, from a device without DBIRTH, or naming an alias the birth did
 *   not define, are refused as `unknown_tag` and a rebirth is requested.
 * - NDEATH (the node's MQTT will, or a clean goodbye) whose bdSeq matches the session marks every
 *   metric of the node and its devices bad: one reading each with value null, status `NodeDeath`,
 *   at the receive time. An NDEATH with another bdSeq belongs to an older session (the broker
 *   sent a late will) and is ignored. DDEATH does the same for one device, status `DeviceDeath`.
 * - Rebirth requests are rate-limited per node (`rebirthMinIntervalMs`).
 *
 * Readings: the asset is the device id for D* messages and the edge node id for N* messages; the
 * tag is the metric name. Int8..UInt64, Float, Double become numbers, Boolean 0/1; a null metric
 * (is_null) a bad reading with status `NoValue`; NaN and infinities are refused as `not_finite`;
 * String, DateTime, bytes, DataSet, Template metrics are not measurements and are skipped
 * (noted at debug level). bdSeq and `Node Control/*`, `Device Control/*` metrics are protocol
 * plumbing, not readings. Source time: the metric's timestamp, else the payload's, else the
 * receive time.
 */

export type SparkplugMessageType =
  'NBIRTH' | 'NDATA' | 'NDEATH' | 'DBIRTH' | 'DDATA' | 'DDEATH' | 'NCMD' | 'DCMD' | 'STATE';

export const SPARKPLUG_NAMESPACE = 'spBv1.0';

export interface SparkplugTopic {
  group: string;
  type: SparkplugMessageType;
  edgeNode: string;
  device: string | undefined;
}

const TYPES = new Set<string>(['NBIRTH', 'NDATA', 'NDEATH', 'DBIRTH', 'DDATA', 'DDEATH', 'NCMD', 'DCMD']);

/** Parses spBv1.0/<group>/<type>/<edge node>[/<device>]; undefined for anything else. */
export function parseSparkplugTopic(topic: string): SparkplugTopic | undefined {
  const parts = topic.split('/');
  if (parts[0] !== SPARKPLUG_NAMESPACE || parts.length < 4 || parts.length > 5) return undefined;
  const [, group, type, edgeNode, device] = parts as [string, string, string, string, string | undefined];
  if (!TYPES.has(type) || !group || !edgeNode) return undefined;
  const isDevice = type.startsWith('D');
  if (isDevice !== (device !== undefined) || device === '') return undefined;
  return { group, type: type as SparkplugMessageType, edgeNode, device };
}

export const NODE_DEATH_STATUS = 'NodeDeath';
export const DEVICE_DEATH_STATUS = 'DeviceDeath';

export interface SparkplugOutcome {
  readings: Reading[];
  rejections: MappingRejection[];
  /** Set when a rebirth should be requested from this node now (already rate-limited). */
  rebirth: { group: string; edgeNode: string; why: string } | undefined;
  /** Things worth a debug line: skipped metrics, stale deaths. */
  notes: string[];
}

interface MetricDef {
  name: string;
  datatype: number;
}

interface MetricTable {
  byName: Map<string, MetricDef>;
  byAlias: Map<string, MetricDef>;
}

interface NodeSession {
  born: boolean;
  bdSeq: number | undefined;
  lastSeq: number;
  /** A gap was seen: refuse everything until the NBIRTH that answers the rebirth request. */
  awaitingRebirth: boolean;
  metrics: MetricTable;
  devices: Map<string, MetricTable>;
  lastRebirthRequestAt: number | undefined;
}

export interface SparkplugStateOptions {
  source: string;
  /** Whether to ask nodes for a rebirth at all (rebirthOnGap). */
  rebirth: boolean;
  rebirthMinIntervalMs: number;
}

const emptyTable = (): MetricTable => ({ byName: new Map(), byAlias: new Map() });

/** Protocol plumbing that a birth carries but that is not a measurement. */
function isPlumbing(name: string): boolean {
  return name === 'bdSeq' || name.startsWith('Node Control/') || name.startsWith('Device Control/');
}

export class SparkplugState {
  private readonly nodes = new Map<string, NodeSession>();

  constructor(private readonly opts: SparkplugStateOptions) {}

  /** Edge nodes currently born (for tests and status). */
  bornNodes(): string[] {
    return [...this.nodes.entries()].filter(([, n]) => n.born).map(([k]) => k);
  }

  handle(topic: SparkplugTopic, payload: SparkplugPayload, receivedAt: number): SparkplugOutcome {
    const out: SparkplugOutcome = { readings: [], rejections: [], rebirth: undefined, notes: [] };
    if (topic.type === 'NCMD' || topic.type === 'DCMD' || topic.type === 'STATE') return out;
    const key = `${topic.group}/${topic.edgeNode}`;
    const who = `edge node ${key}`;
    let node = this.nodes.get(key);

    if (topic.type === 'NBIRTH') {
      const bdSeqMetric = payload.metrics.find((m) => m.name === 'bdSeq');
      const bdSeq = bdSeqMetric ? metricNumber(bdSeqMetric, bdSeqMetric.datatype) : undefined;
      node = {
        born: true,
        bdSeq: bdSeq?.kind === 'number' ? bdSeq.value : undefined,
        lastSeq: payload.seq ?? 0,
        awaitingRebirth: false,
        metrics: emptyTable(),
        devices: new Map(),
        lastRebirthRequestAt: node?.lastRebirthRequestAt,
      };
      this.nodes.set(key, node);
      this.birth(node.metrics, topic.edgeNode, payload, receivedAt, out);
      return out;
    }

    if (topic.type === 'NDEATH') {
      if (!node?.born) {
        out.notes.push(`NDEATH from ${who}, which is not born; ignored`);
        return out;
      }
      const bdSeqMetric = payload.metrics.find((m) => m.name === 'bdSeq');
      const bdSeq = bdSeqMetric ? metricNumber(bdSeqMetric, bdSeqMetric.datatype) : undefined;
      if (bdSeq?.kind === 'number' && node.bdSeq !== undefined && bdSeq.value !== node.bdSeq) {
        out.notes.push(
          `NDEATH from ${who} with bdSeq ${bdSeq.value} belongs to an older session (now ${node.bdSeq}); ignored`,
        );
        return out;
      }
      this.markDead(node.metrics, topic.edgeNode, NODE_DEATH_STATUS, receivedAt, receivedAt, out);
      for (const [device, table] of node.devices)
        this.markDead(table, device, NODE_DEATH_STATUS, receivedAt, receivedAt, out);
      node.born = false;
      node.devices.clear();
      return out;
    }

    // Every other message is part of the node's sequence.
    if (!node?.born) {
      out.rejections.push({
        reason: 'unknown_tag',
        message: `${topic.type} from ${who} before its NBIRTH: its metrics and aliases are not known yet`,
      });
      this.requestRebirth(key, topic, 'data before its birth', receivedAt, out);
      return out;
    }
    if (node.awaitingRebirth) {
      out.rejections.push({
        reason: 'sequence_gap',
        message: `${topic.type} from ${who} ignored: waiting for the rebirth requested after a sequence gap`,
      });
      this.requestRebirth(
        key,
        topic,
        'still waiting for the rebirth after a sequence gap',
        receivedAt,
        out,
        node,
      );
      return out;
    }
    if (payload.seq === undefined) {
      out.rejections.push({
        reason: 'malformed',
        message: `${topic.type} from ${who} has no sequence number (seq)`,
      });
      return out;
    }
    const expected = (node.lastSeq + 1) % 256;
    if (payload.seq !== expected) {
      const lost = (payload.seq - expected + 256) % 256;
      if (this.opts.rebirth) {
        node.awaitingRebirth = true;
        out.rejections.push({
          reason: 'sequence_gap',
          message: `${topic.type} from ${who} has seq ${payload.seq}, expected ${expected}: ${lost} message(s) lost; requesting a rebirth`,
        });
        this.requestRebirth(
          key,
          topic,
          `sequence gap (expected ${expected}, got ${payload.seq})`,
          receivedAt,
          out,
          node,
        );
        return out;
      }
      // No rebirth to wait for: count the gap and carry on with what the aliases say.
      out.rejections.push({
        reason: 'sequence_gap',
        message: `${topic.type} from ${who} has seq ${payload.seq}, expected ${expected}: ${lost} message(s) lost (rebirthOnGap is off)`,
      });
    }
    node.lastSeq = payload.seq;

    switch (topic.type) {
      case 'NDATA':
        this.data(node.metrics, topic.edgeNode, key, topic, payload, receivedAt, out, node);
        break;
      case 'DBIRTH': {
        const table = emptyTable();
        node.devices.set(topic.device!, table);
        this.birth(table, topic.device!, payload, receivedAt, out);
        break;
      }
      case 'DDATA': {
        const table = node.devices.get(topic.device!);
        if (!table) {
          out.rejections.push({
            reason: 'unknown_tag',
            message: `DDATA from device ${topic.device} of ${who} before its DBIRTH: its metrics are not known`,
          });
          this.requestRebirth(
            key,
            topic,
            `device ${topic.device} sent data before its birth`,
            receivedAt,
            out,
            node,
          );
          break;
        }
        this.data(table, topic.device!, key, topic, payload, receivedAt, out, node);
        break;
      }
      case 'DDEATH': {
        const table = node.devices.get(topic.device!);
        if (!table) {
          out.notes.push(`DDEATH from device ${topic.device} of ${who}, which is not born; ignored`);
          break;
        }
        const at = payload.timestamp ?? receivedAt;
        this.markDead(table, topic.device!, DEVICE_DEATH_STATUS, at, receivedAt, out);
        node.devices.delete(topic.device!);
        break;
      }
    }
    return out;
  }

  /** Defines a birth's metrics and hands their current values on. */
  private birth(
    table: MetricTable,
    asset: string,
    payload: SparkplugPayload,
    receivedAt: number,
    out: SparkplugOutcome,
  ): void {
    for (const m of payload.metrics) {
      if (m.name === undefined || m.name === '') {
        out.rejections.push({ reason: 'malformed', message: `a birth metric of ${asset} has no name` });
        continue;
      }
      const def = { name: m.name, datatype: m.datatype };
      table.byName.set(m.name, def);
      if (m.alias !== undefined) table.byAlias.set(m.alias, def);
      this.reading(def, m, asset, payload, receivedAt, out);
    }
  }

  private data(
    table: MetricTable,
    asset: string,
    key: string,
    topic: SparkplugTopic,
    payload: SparkplugPayload,
    receivedAt: number,
    out: SparkplugOutcome,
    node: NodeSession,
  ): void {
    for (const m of payload.metrics) {
      const def =
        (m.alias !== undefined ? table.byAlias.get(m.alias) : undefined) ??
        (m.name !== undefined ? table.byName.get(m.name) : undefined);
      if (!def) {
        const what = m.alias !== undefined ? `alias ${m.alias}` : `metric '${m.name ?? '(no name)'}'`;
        out.rejections.push({
          reason: 'unknown_tag',
          message: `${topic.type} from ${asset} (edge node ${key}) has ${what}, which its birth did not define`,
        });
        this.requestRebirth(key, topic, `unknown ${what}`, receivedAt, out, node);
        continue;
      }
      this.reading(def, m, asset, payload, receivedAt, out);
    }
  }

  private reading(
    def: MetricDef,
    m: SparkplugMetric,
    asset: string,
    payload: SparkplugPayload,
    receivedAt: number,
    out: SparkplugOutcome,
  ): void {
    if (isPlumbing(def.name)) return;
    const datatype = m.datatype || def.datatype;
    const v = metricNumber(m, datatype);
    const base = {
      source: this.opts.source,
      asset,
      tag: def.name,
      sourceTime: m.timestamp ?? payload.timestamp ?? receivedAt,
      receivedAt,
    };
    switch (v.kind) {
      case 'number':
        out.readings.push({ ...base, value: v.value, quality: 'good' });
        return;
      case 'null':
        out.readings.push({ ...base, value: null, quality: 'bad', status: NO_VALUE_STATUS });
        return;
      case 'not_finite':
        out.rejections.push({
          reason: 'not_finite',
          message: `metric '${def.name}' of ${asset} is ${v.value} (${typeName(datatype)}), not a finite number`,
        });
        return;
      case 'no_value':
        out.rejections.push({
          reason: 'malformed',
          message: `metric '${def.name}' of ${asset} carries no value and is not marked null`,
        });
        return;
      case 'not_numeric':
        out.notes.push(`metric '${def.name}' of ${asset} is a ${v.type}, not a measurement; skipped`);
        return;
    }
  }

  /** One bad reading per known metric of a node or device that went away. */
  private markDead(
    table: MetricTable,
    asset: string,
    status: string,
    at: number,
    receivedAt: number,
    out: SparkplugOutcome,
  ): void {
    for (const def of table.byName.values()) {
      if (isPlumbing(def.name) || (def.datatype !== DataType.Unknown && !isNumericType(def.datatype)))
        continue;
      out.readings.push({
        source: this.opts.source,
        asset,
        tag: def.name,
        value: null,
        quality: 'bad',
        status,
        sourceTime: at,
        receivedAt,
      });
    }
  }

  private requestRebirth(
    key: string,
    topic: SparkplugTopic,
    why: string,
    now: number,
    out: SparkplugOutcome,
    node?: NodeSession,
  ): void {
    if (!this.opts.rebirth || out.rebirth) return;
    let session = node ?? this.nodes.get(key);
    if (!session) {
      // Remember the request for a node never seen, so that the rate limit holds for it too.
      session = {
        born: false,
        bdSeq: undefined,
        lastSeq: 0,
        awaitingRebirth: false,
        metrics: emptyTable(),
        devices: new Map(),
        lastRebirthRequestAt: undefined,
      };
      this.nodes.set(key, session);
    }
    const last = session.lastRebirthRequestAt;
    if (last !== undefined && now - last < this.opts.rebirthMinIntervalMs && now >= last) return;
    session.lastRebirthRequestAt = now;
    out.rebirth = { group: topic.group, edgeNode: topic.edgeNode, why };
  }
}
