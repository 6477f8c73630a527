import type { MqttClient } from 'mqtt';
import sparkplug from 'sparkplug-payload';
import tahuProto from 'sparkplug-payload/lib/sparkplugPayloadProto.js';
import type { UMetric, UPayload } from 'sparkplug-payload/lib/sparkplugbpayload.js';
import type { SimMachine } from '../machines/types.js';
import { closeDevice, connectDevice, publish } from './client.js';

const tahu = sparkplug.get('spBv1.0')!;

export interface SimSparkplugNodeOptions {
  url: string;
  groupId: string;
  edgeNodeId: string;
  /** Each machine is one Sparkplug device, its asset the device id, its tags the metrics. */
  machines: readonly SimMachine[];
  /** DDATA messages per second per device; 0 publishes only on tick(). */
  rateHz: number;
  clientId?: string;
}

/**
 * A Sparkplug B edge node (spec 3.0) with one device per machine, as a PLC gateway would run it:
 * - on every MQTT connection a new bdSeq, with NDEATH (carrying that bdSeq) as the MQTT will;
 * - NBIRTH (seq 0) with bdSeq, `Node Control/Rebirth` and an `uptime_s` metric, then one DBIRTH
 *   per device defining every metric with its alias (unique across the node);
 * - on each tick NDATA (uptime_s) and one DDATA per device with every metric by alias only, the
 *   datatype left out as the spec recommends; a bad-quality tag is sent as a null metric;
 * - every message but NDEATH carries the node's seq, 0..255 wrapping;
 * - an NCMD `Node Control/Rebirth` = true makes it publish NBIRTH and the DBIRTHs again.
 * Faults: skipSeq() makes the next message skip a sequence number; dropConnection() loses the
 * connection without a goodbye, so that the broker publishes the NDEATH will.
 */
export class SimSparkplugNode {
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private bdSeq = 0;
  private seq = 0;
  private skipNext = false;
  private readonly started = Date.now();
  /** alias per device and metric name, fixed for the life of the node. */
  private readonly aliases = new Map<string, Map<string, number>>();
  private rebirthsAsked = 0;
  private birthsSent = 0;
  /** Births and ticks run one at a time, so that sequence numbers go out in order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly options: SimSparkplugNodeOptions) {
    let next = 10; // low aliases are left to node metrics
    for (const m of options.machines) {
      const byTag = new Map<string, number>();
      for (const t of m.tags) byTag.set(t.name, next++);
      this.aliases.set(m.asset, byTag);
    }
  }

  /** NCMD rebirth requests received so far. */
  get rebirthRequests(): number {
    return this.rebirthsAsked;
  }

  /** NBIRTH messages published so far. */
  get births(): number {
    return this.birthsSent;
  }

  /** The bdSeq of the current MQTT session. */
  get birthDeathSeq(): number {
    return this.bdSeq;
  }

  topic(type: string, device?: string): string {
    const base = `spBv1.0/${this.options.groupId}/${type}/${this.options.edgeNodeId}`;
    return device === undefined ? base : `${base}/${device}`;
  }

  async start(): Promise<void> {
    if (this.client) return;
    const client = await connectDevice(this.options.url, {
      clientId:
        this.options.clientId ??
        `sim-sp-${this.options.edgeNodeId}-${Math.random().toString(16).slice(2, 8)}`,
      clean: true,
      will: this.will(),
    });
    this.client = client;
    client.on('message', (topic, payload) => this.onCommand(topic, payload));
    // A new session gets a new bdSeq, announced in the will before the connection is made.
    client.on('close', () => {
      this.bdSeq = (this.bdSeq + 1) % 256;
      client.options.will = this.will();
    });
    client.on('connect', () => void this.online(client).catch(() => undefined));
    await this.online(client);
    if (this.options.rateHz > 0) {
      this.timer = setInterval(() => void this.tick().catch(() => undefined), 1000 / this.options.rateHz);
    }
  }

  /** Publishes NDATA and one DDATA per device now. */
  tick(): Promise<void> {
    const client = this.requireClient();
    return this.serial(() => this.publishData(client));
  }

  private async publishData(client: MqttClient): Promise<void> {
    const now = Date.now();
    await this.send(client, 'NDATA', undefined, {
      timestamp: now,
      metrics: [
        { name: 'uptime_s', alias: 1, type: 'Double', value: (now - this.started) / 1000, timestamp: now },
      ],
    });
    for (const m of this.options.machines) {
      const snapshot = m.snapshot();
      const aliases = this.aliases.get(m.asset)!;
      const metrics = Object.entries(snapshot.values).map(([tag, v]) => ({
        alias: aliases.get(tag)!,
        value: v.quality === 'bad' || !Number.isFinite(v.value) ? null : v.value,
        timestamp: snapshot.time,
      }));
      await this.send(client, 'DDATA', m.asset, { timestamp: now, metrics }, true);
    }
  }

  /** Publishes NBIRTH and every DBIRTH again (what an NCMD rebirth request does). */
  rebirth(): Promise<void> {
    const client = this.requireClient();
    return this.serial(() => this.publishBirths(client));
  }

  private serial(job: () => Promise<void>): Promise<void> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Fault injection: the next message skips one sequence number, as if one had been lost. */
  skipSeq(): void {
    this.skipNext = true;
  }

  /** Fault injection: drops the connection without DISCONNECT, so the broker sends the NDEATH will. */
  async dropConnection(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    client.removeAllListeners('close');
    client.options.reconnectPeriod = 0;
    client.stream?.destroy();
    await closeDevice(client);
    // The next session (start() again) is a new one: a new bdSeq, as after any lost connection.
    this.bdSeq = (this.bdSeq + 1) % 256;
  }

  /** Publishes NDEATH and disconnects, as an edge node shutting down cleanly does. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    client.removeAllListeners('close');
    if (client.connected) {
      await publish(client, this.topic('NDEATH'), Buffer.from(this.deathPayload()), 1).catch(() => undefined);
    }
    await closeDevice(client);
  }

  private async online(client: MqttClient): Promise<void> {
    await client.subscribeAsync(this.topic('NCMD'), { qos: 0 });
    await this.serial(() => this.publishBirths(client));
  }

  private async publishBirths(client: MqttClient): Promise<void> {
    this.seq = 0;
    this.skipNext = false;
    const now = Date.now();
    const nbirth: UPayload = {
      timestamp: now,
      seq: 0,
      metrics: [
        { name: 'bdSeq', type: 'UInt64', value: this.bdSeq, timestamp: now },
        { name: 'Node Control/Rebirth', alias: 0, type: 'Boolean', value: false, timestamp: now },
        { name: 'uptime_s', alias: 1, type: 'Double', value: (now - this.started) / 1000, timestamp: now },
      ],
    };
    await publish(client, this.topic('NBIRTH'), Buffer.from(tahu.encodePayload(nbirth)), 0);
    this.seq = 1;
    this.birthsSent += 1;
    for (const m of this.options.machines) {
      const snapshot = m.snapshot();
      const aliases = this.aliases.get(m.asset)!;
      const metrics: UMetric[] = Object.entries(snapshot.values).map(([tag, v]) => ({
        name: tag,
        alias: aliases.get(tag)!,
        type: 'Double',
        value: v.quality === 'bad' || !Number.isFinite(v.value) ? null : v.value,
        timestamp: snapshot.time,
      }));
      await this.send(client, 'DBIRTH', m.asset, { timestamp: now, metrics });
    }
  }

  /**
   * Sends a message with the next seq. `bare` metrics carry only alias and value: they are
   * encoded by hand, since Tahu's encoder always writes a datatype.
   */
  private async send(
    client: MqttClient,
    type: string,
    device: string | undefined,
    payload: { timestamp: number; metrics: Array<Partial<UMetric>> },
    bare = false,
  ): Promise<void> {
    if (this.skipNext) {
      this.skipNext = false;
      this.seq = (this.seq + 1) % 256;
    }
    const seq = this.seq;
    this.seq = (seq + 1) % 256;
    const bytes = bare
      ? encodeBare(payload.timestamp, seq, payload.metrics)
      : tahu.encodePayload({ ...payload, seq, metrics: payload.metrics as UMetric[] });
    await publish(client, this.topic(type, device), Buffer.from(bytes), 0);
  }

  private will() {
    return {
      topic: this.topic('NDEATH'),
      payload: Buffer.from(this.deathPayload()),
      qos: 1 as const,
      retain: false,
    };
  }

  private deathPayload(): Uint8Array {
    return tahu.encodePayload({
      timestamp: Date.now(),
      metrics: [{ name: 'bdSeq', type: 'UInt64', value: this.bdSeq }],
    });
  }

  private onCommand(topic: string, payload: Buffer): void {
    if (topic !== this.topic('NCMD')) return;
    let decoded: UPayload;
    try {
      decoded = tahu.decodePayload(payload);
    } catch {
      return;
    }
    const rebirth = decoded.metrics?.find((m) => m.name === 'Node Control/Rebirth');
    if (rebirth?.value !== true) return;
    this.rebirthsAsked += 1;
    const client = this.client;
    if (client) void this.serial(() => this.publishBirths(client)).catch(() => undefined);
  }

  private requireClient(): MqttClient {
    if (!this.client) throw new Error('SimSparkplugNode: call start() first');
    return this.client;
  }
}

/**
 * A DATA payload whose metrics carry alias, timestamp and a double value (or is_null) but no
 * datatype, as Sparkplug 3.0 recommends for DATA messages; Tahu's high-level encoder always
 * writes one, so this uses its generated protobuf code directly.
 */
function encodeBare(timestamp: number, seq: number, metrics: Array<Partial<UMetric>>): Uint8Array {
  const { Payload } = tahuProto.org.eclipse.tahu.protobuf;
  return Payload.encode(
    Payload.create({
      timestamp,
      seq,
      metrics: metrics.map((m) =>
        Payload.Metric.create({
          alias: m.alias as number,
          timestamp: m.timestamp as number,
          ...(typeof m.value === 'number' ? { doubleValue: m.value } : { isNull: true }),
        }),
      ),
    }),
  ).finish();
}
