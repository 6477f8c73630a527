import mqtt from 'mqtt';

/**
 * The plant's alert consumer on the local broker (a SCADA or MES client): subscribed to
 * `<prefix>/<device>/alerts/#` with QoS 1 and a persistent session, so that alerts the broker
 * queued while it was away reach it when it returns. It records each alert once by id (Vigil
 * delivers at least once: a re-sent alert keeps its id) and when it first came.
 */

export interface CollectedAlert {
  id: string;
  kind: string;
  sampleId?: string;
  /** When this consumer first got it (ms since the epoch). */
  receivedAt: number;
}

export class AlertCollector {
  readonly alerts = new Map<string, CollectedAlert>();
  /** Alerts received again with an id already seen (at-least-once re-sends). */
  duplicates = 0;
  malformed = 0;

  private constructor(private readonly client: mqtt.MqttClient) {}

  static async start(
    url: string,
    topicPrefix: string,
    device: string,
    clientId: string,
  ): Promise<AlertCollector> {
    const client = await mqtt.connectAsync(url, {
      clientId,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 200,
      connectTimeout: 5_000,
    });
    client.on('error', () => undefined);
    const collector = new AlertCollector(client);
    client.on('message', (_topic, payload) => collector.onMessage(payload));
    await client.subscribeAsync(`${topicPrefix}/${device}/alerts/#`, { qos: 1 });
    return collector;
  }

  get connected(): boolean {
    return this.client.connected;
  }

  private onMessage(payload: Buffer): void {
    let a: { id?: unknown; kind?: unknown; sampleId?: unknown };
    try {
      a = JSON.parse(payload.toString('utf8')) as typeof a;
    } catch {
      this.malformed += 1;
      return;
    }
    if (typeof a.id !== 'string') {
      this.malformed += 1;
      return;
    }
    if (this.alerts.has(a.id)) {
      this.duplicates += 1;
      return;
    }
    this.alerts.set(a.id, {
      id: a.id,
      kind: String(a.kind),
      ...(typeof a.sampleId === 'string' ? { sampleId: a.sampleId } : {}),
      receivedAt: Date.now(),
    });
  }

  async stop(): Promise<void> {
    await this.client.endAsync(true);
  }
}
