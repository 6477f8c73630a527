import { createHash } from 'node:crypto';
import type { MqttJsonSourceConfig } from '../../runtime/config/sources/mqtt.js';
import type { Logger } from '../../runtime/log.js';
import type { Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import { SourceMqttClient, topicMatches, type MqttPacketInfo } from './connection.js';
import { compileSubscription, mapJsonMessage, type CompiledJsonSubscription } from './json-mapping.js';
import { payloadQualityOf, type PayloadQualityHook } from '../../runtime/quality/payload.js';

export type { MqttJsonSourceConfig } from '../../runtime/config/sources/mqtt.js';

export interface MqttJsonSourceOptions {
  /** Environment for passwordEnv; defaults to process.env. */
  env?: Record<string, string | undefined>;
}

/**
 * Telemetry published as JSON on MQTT topics (one message per machine and moment, the common
 * shape of IoT gateways and PLC MQTT modules), mapped to readings by the config's subscriptions.
 * Each message becomes one batch of readings; fields that cannot be read are refused one by one
 * and counted, without losing the good fields of the same message. The session is persistent
 * under a stable client id, so that QoS 1 messages sent while Vigil was disconnected (a network
 * blip, a broker restart with persistence, a Vigil restart) arrive once it is back. A QoS 1
 * message is acknowledged only once its readings are committed to the store, and a redelivery of
 * one already stored (its acknowledgement was lost to a crash or an outage) is not stored twice.
 */
export class MqttJsonSource implements Source {
  readonly type = 'mqtt-json';
  private readonly log: Logger;
  private readonly mqtt: SourceMqttClient;
  private readonly subscriptions: CompiledJsonSubscription[];
  /** The payload expectations of this source (docs/DATA-QUALITY.md), when it declares any. */
  private readonly payloadQuality: PayloadQualityHook | undefined;

  constructor(
    readonly name: string,
    private readonly config: MqttJsonSourceConfig,
    private readonly ctx: SourceContext,
    options: MqttJsonSourceOptions = {},
  ) {
    this.log = ctx.log.child({ source: name });
    this.subscriptions = config.subscriptions.map(compileSubscription);
    this.payloadQuality = payloadQualityOf(ctx);
    this.mqtt = new SourceMqttClient({
      sourceName: name,
      config,
      // The broker queues QoS 1 messages while Vigil is away and delivers them on reconnect.
      session: 'persistent',
      ctx,
      log: this.log,
      subscriptions: config.subscriptions.map((s) => ({ topic: s.topic, qos: config.qos })),
      onMessage: (topic, payload, receivedAt, packet) => this.onMessage(topic, payload, receivedAt, packet),
      ...(options.env ? { env: options.env } : {}),
    });
  }

  /** The MQTT client id in use: the config's, else vigil-<source name>-<host name>. */
  get clientId(): string {
    return this.mqtt.clientId;
  }

  state(): SourceState {
    return this.mqtt.state();
  }

  async start(signal: AbortSignal): Promise<void> {
    await this.mqtt.start(signal);
    this.log.info(
      { topics: this.config.subscriptions.map((s) => s.topic), state: this.mqtt.state() },
      'MQTT JSON source started',
    );
  }

  async stop(): Promise<void> {
    await this.mqtt.stop();
  }

  private onMessage(
    topic: string,
    payload: Buffer,
    receivedAt: number,
    packet: MqttPacketInfo,
  ): Promise<void> | undefined {
    // Subscriptions never overlap (the schema refuses it), so at most one matches.
    const sub = this.subscriptions.find((s) => topicMatches(s.config.topic, topic));
    if (!sub) {
      this.log.debug({ topic }, 'message on a topic no subscription maps; ignored');
      return undefined;
    }
    const outcome = mapJsonMessage(sub, {
      source: this.name,
      topic,
      payload,
      receivedAt,
      maxPayloadBytes: this.config.maxPayloadBytes,
    });
    for (const r of outcome.rejections) this.ctx.reject(r.reason, r.message, topic);
    // The sender's own id for the message (MQTT 5 properties), when it gave one.
    let readings =
      packet.traceId === undefined
        ? outcome.readings
        : outcome.readings.map((r) => ({ ...r, traceId: packet.traceId }));
    if (this.payloadQuality && outcome.parsed) {
      // Missing fields and schema drift are reported, and every reading of the message is
      // flagged with them under the trace id the report names: stored as they are, and each
      // pipeline's dataQuality policy decides what its model sees of them.
      const found = this.payloadQuality.checkPayload({
        subscription: sub.config.topic,
        topic,
        asset: outcome.parsed.asset,
        payload: outcome.parsed.payload,
        receivedAt,
        traceId: packet.traceId,
      });
      if (found !== undefined)
        readings = readings.map((r) => ({ ...r, traceId: found.traceId, flags: found.rules }));
    }
    if (readings.length === 0) return undefined;
    if (packet.qos === 0 || packet.messageId === undefined) {
      this.ctx.readings(readings);
      return undefined;
    }
    // The packet id names the delivery (the broker reuses it only once acknowledged), the hash
    // its content: together they recognise the redelivery of a message already stored.
    const mark = {
      key: String(packet.messageId),
      hash: createHash('sha256').update(topic).update('\0').update(payload).digest('hex'),
      redelivered: packet.dup,
    };
    return this.ctx.readingsDurable(readings, mark).then(() => undefined);
  }
}
