import { randomBytes } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { DataClass, UpstreamItem, UpstreamMessage } from '../../runtime/forward/types.js';

/**
 * A real mqtt.js receiver of upstream messages, as a cloud service would run it: QoS 1 with a
 * persistent session (clean: false), so that the broker queues what arrives while it is away,
 * and de-duplication by id.
 */
export interface Receiver {
  client: MqttClient;
  /** Every message in arrival order, duplicates included. */
  messages: (UpstreamMessage & { topic: string; receivedAt: number })[];
  /** The items of one class in arrival order after de-duplication by id (first copy kept). */
  items(cls: DataClass): UpstreamItem[];
  until(condition: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  end(): Promise<void>;
}

export async function receive(
  url: string,
  deviceId: string,
  options: IClientOptions = {},
): Promise<Receiver> {
  const client = connect(url, {
    clientId: `receiver-${randomBytes(4).toString('hex')}`,
    clean: false,
    reconnectPeriod: 100,
    ...options,
  });
  const messages: Receiver['messages'] = [];
  client.on('message', (topic, payload) => {
    messages.push({ ...(JSON.parse(payload.toString()) as UpstreamMessage), topic, receivedAt: Date.now() });
  });
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(`vigil/${deviceId}/upstream/#`, { qos: 1 });
  return {
    client,
    messages,
    items(cls) {
      const seen = new Set<string>();
      const out: UpstreamItem[] = [];
      for (const m of messages) {
        if (m.class !== cls) continue;
        for (const item of m.items) {
          if (seen.has(item.id)) continue;
          seen.add(item.id);
          out.push(item);
        }
      }
      return out;
    },
    until: waitUntil,
    end: () => client.endAsync(true),
  };
}

export async function waitUntil(
  condition: () => boolean,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
