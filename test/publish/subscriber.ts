import { connect, type IClientOptions, type MqttClient } from 'mqtt';

export interface Received {
  topic: string;
  json: Record<string, unknown>;
  retain: boolean;
}

/** A real mqtt.js subscriber that records what it receives, for asserting on a broker's output. */
export interface Watcher {
  client: MqttClient;
  received: Received[];
  waitFor(predicate: (m: Received) => boolean, timeoutMs?: number): Promise<Received>;
  end(): Promise<void>;
}

export async function watch(url: string, topic: string, options: IClientOptions = {}): Promise<Watcher> {
  const client = connect(url, { reconnectPeriod: 200, ...options });
  const received: Received[] = [];
  const waiters: { predicate: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];
  client.on('message', (t, payload, packet) => {
    const m: Received = {
      topic: t,
      json: JSON.parse(payload.toString()) as Record<string, unknown>,
      retain: packet.retain,
    };
    received.push(m);
    for (const w of [...waiters]) {
      if (w.predicate(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return {
    client,
    received,
    waitFor(predicate, timeoutMs = 20_000) {
      const seen = received.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise<Received>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(entry), 1);
          reject(
            new Error(
              `no matching message on ${topic} within ${timeoutMs} ms; got ${JSON.stringify(received)}`,
            ),
          );
        }, timeoutMs);
        const entry = {
          predicate,
          resolve: (m: Received) => {
            clearTimeout(timer);
            resolve(m);
          },
        };
        waiters.push(entry);
      });
    },
    end: () => client.endAsync(true),
  };
}

export async function until(condition: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
