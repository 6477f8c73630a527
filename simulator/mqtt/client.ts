import { connect, type IClientOptions, type MqttClient } from 'mqtt';

/**
 * The simulator's MQTT connection: a plain mqtt.js client that reconnects on its own (a device
 * on the plant network keeps trying), and waits for the first CONNACK so that a scenario knows
 * the device is live before it starts publishing.
 */
export async function connectDevice(
  url: string,
  options: IClientOptions,
  timeoutMs = 10_000,
): Promise<MqttClient> {
  const client = connect(url, { reconnectPeriod: 300, connectTimeout: 5_000, ...options });
  // A simulated device must never crash the test or the demo because the broker went away.
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('connect', onConnect);
      client.end(true);
      reject(new Error(`simulated device could not connect to ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('connect', onConnect);
  });
  return client;
}

/** Publishes and resolves once sent (QoS 0) or acknowledged (QoS 1). */
export function publish(
  client: MqttClient,
  topic: string,
  payload: string | Buffer | Uint8Array,
  qos: 0 | 1,
  retain = false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    client.publish(topic, Buffer.from(payload), { qos, retain }, (err) => (err ? reject(err) : resolve()));
  });
}

/** Disconnects cleanly, or drops the socket when the broker does not answer within a second. */
export async function closeDevice(client: MqttClient): Promise<void> {
  await Promise.race([
    client.endAsync(!client.connected),
    new Promise<void>((resolve) => setTimeout(resolve, 1_000).unref()),
  ]);
  // end() is a no-op once a graceful end is under way; the socket itself can still be dropped.
  if (!client.disconnected) client.stream?.destroy();
}
