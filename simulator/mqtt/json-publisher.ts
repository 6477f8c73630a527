import type { MqttClient } from 'mqtt';
import type { MachineSnapshot, SimMachine } from '../machines/types.js';
import { closeDevice, connectDevice, publish } from './client.js';

export interface SimJsonPublisherOptions {
  url: string;
  machines: readonly SimMachine[];
  /** Topics are <topicPrefix>/<asset>/telemetry; default 'plant'. */
  topicPrefix?: string;
  /** Snapshots per second per machine; 0 publishes only on tick() (tests that want exact messages). */
  rateHz: number;
  /** Default 1, so that a message sent while the broker restarts is queued rather than dropped. */
  qos?: 0 | 1;
  clientId?: string;
}

/**
 * A sensor gateway that publishes each machine's values as one JSON message per tick, the
 * common shape of IoT gateways: `{"ts": <ms>, "<tag>": <value>, ...}` on
 * `<prefix>/<asset>/telemetry`. A tag whose quality is bad is sent as null (the device has no
 * value); an uncertain one is sent as its value, since plain JSON has no place for a quality.
 */
export class SimJsonPublisher {
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly prefix: string;
  private sent = 0;

  constructor(private readonly options: SimJsonPublisherOptions) {
    this.prefix = options.topicPrefix ?? 'plant';
  }

  /** Messages published so far. */
  get published(): number {
    return this.sent;
  }

  topicOf(asset: string): string {
    return `${this.prefix}/${asset}/telemetry`;
  }

  /** The JSON a snapshot is published as. */
  static payloadOf(snapshot: MachineSnapshot): Record<string, number | null> {
    const body: Record<string, number | null> = { ts: snapshot.time };
    for (const [tag, v] of Object.entries(snapshot.values)) {
      body[tag] = v.quality === 'bad' || !Number.isFinite(v.value) ? null : v.value;
    }
    return body;
  }

  async start(): Promise<void> {
    if (this.client) return;
    this.client = await connectDevice(this.options.url, {
      clientId: this.options.clientId ?? `sim-json-${Math.random().toString(16).slice(2, 10)}`,
      clean: true,
    });
    if (this.options.rateHz > 0) {
      this.timer = setInterval(() => void this.tick().catch(() => undefined), 1000 / this.options.rateHz);
    }
  }

  /** Publishes one snapshot of every machine now. */
  async tick(): Promise<void> {
    const client = this.requireClient();
    await Promise.all(
      this.options.machines.map(async (m) => {
        const snapshot = m.snapshot();
        await publish(
          client,
          this.topicOf(m.asset),
          JSON.stringify(SimJsonPublisher.payloadOf(snapshot)),
          this.qos,
        );
        this.sent += 1;
      }),
    );
  }

  /** Fault injection: publishes any bytes on any topic (garbage, oversized, wrong types). */
  async publishRaw(topic: string, payload: string | Buffer): Promise<void> {
    await publish(this.requireClient(), topic, payload, this.qos);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const client = this.client;
    this.client = undefined;
    if (client) await closeDevice(client);
  }

  private get qos(): 0 | 1 {
    return this.options.qos ?? 1;
  }

  private requireClient(): MqttClient {
    if (!this.client) throw new Error('SimJsonPublisher: call start() first');
    return this.client;
  }
}
