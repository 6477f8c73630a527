import sparkplug from 'sparkplug-payload';
import type { SparkplugSourceConfig } from '../../runtime/config/sources/mqtt.js';
import { errorMessage } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/log.js';
import type { Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import { SourceMqttClient, type TopicSubscription } from './connection.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { pickTraceId } from '../trace-id.js';
import { decodeSparkplugPayload } from './sparkplug-payload.js';
import { SPARKPLUG_NAMESPACE, SparkplugState, parseSparkplugTopic } from './sparkplug-state.js';

export type { SparkplugSourceConfig } from '../../runtime/config/sources/mqtt.js';

export interface SparkplugSourceOptions {
  /** Environment for passwordEnv; defaults to process.env. */
  env?: Record<string, string | undefined>;
}

const tahu = sparkplug.get(SPARKPLUG_NAMESPACE)!;

/**
 * The readings of one message with its sender's trace id: the id of its MQTT 5 properties, else
 * the payload's uuid, when the edge node set one that is a sane id (trace-id.ts); otherwise they
 * go as they are, and ingest gives the message a UUIDv7. The seq is no id: it wraps at 256 and
 * restarts with every birth.
 */
export function withSenderTrace(readings: Reading[], uuid: string | undefined): Reading[] {
  const traceId = pickTraceId({ correlation: uuid });
  if (traceId === undefined) return readings;
  for (let i = 0; i < readings.length; i++) readings[i] = { ...readings[i]!, traceId };
  return readings;
}

/** The NCMD payload that asks an edge node to publish its NBIRTH and DBIRTHs again. */
export function rebirthRequest(now: number): Uint8Array {
  return tahu.encodePayload({
    timestamp: now,
    metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }],
  });
}

/**
 * Vigil as a Sparkplug B host application (spec 3.0): follows edge nodes' births, data and
 * deaths, keeps their aliases and sequence numbers (sparkplug-state.ts says how), and asks a
 * node for a rebirth when it lost track. With `hostId`, it also publishes its retained STATE
 * ({"online": true, "timestamp"}) on spBv1.0/STATE/<hostId>, with the offline one as its will,
 * so that edge nodes configured with Vigil as primary host know when it is listening.
 */
export class SparkplugSource implements Source {
  readonly type = 'sparkplug-b';
  private readonly log: Logger;
  private readonly mqtt: SourceMqttClient;
  private readonly sessions: SparkplugState;
  /** The STATE timestamp of the current connection: birth and will must carry the same one. */
  private stateTimestamp = 0;
  private rebirthRequests = 0;

  constructor(
    readonly name: string,
    private readonly config: SparkplugSourceConfig,
    private readonly ctx: SourceContext,
    options: SparkplugSourceOptions = {},
  ) {
    this.log = ctx.log.child({ source: name });
    this.sessions = new SparkplugState({
      source: name,
      rebirth: config.rebirthOnGap,
      rebirthMinIntervalMs: config.rebirthMinIntervalMs,
    });
    const hostId = config.hostId;
    this.mqtt = new SourceMqttClient({
      sourceName: name,
      config,
      // Sparkplug 3.0 wants hosts on a clean session: after a reconnect the births say what is current.
      session: 'clean',
      ctx,
      log: this.log,
      subscriptions: this.subscriptions(),
      onMessage: (topic, payload, receivedAt, packet) =>
        this.onMessage(topic, payload, receivedAt, packet.traceId),
      ...(hostId
        ? {
            will: () => {
              this.stateTimestamp = Date.now();
              return {
                topic: this.stateTopic(hostId),
                payload: this.statePayload(false),
                qos: 1,
                retain: true,
              };
            },
            onConnected: () => void this.publishState(hostId, true),
          }
        : {}),
      ...(options.env ? { env: options.env } : {}),
    });
  }

  get clientId(): string {
    return this.mqtt.clientId;
  }

  /** Rebirth requests sent so far (for status and tests). */
  get rebirthsRequested(): number {
    return this.rebirthRequests;
  }

  state(): SourceState {
    return this.mqtt.state();
  }

  async start(signal: AbortSignal): Promise<void> {
    await this.mqtt.start(signal);
    this.log.info(
      { groupId: this.config.groupId, edgeNodes: this.config.edgeNodes, hostId: this.config.hostId },
      'Sparkplug B source started',
    );
  }

  async stop(): Promise<void> {
    const hostId = this.config.hostId;
    // A clean goodbye replaces the will: edge nodes see the host go offline at once.
    await this.mqtt.stop(
      hostId
        ? async (client) => {
            await client.publishAsync(this.stateTopic(hostId), this.statePayload(false), {
              qos: 1,
              retain: true,
            });
          }
        : undefined,
    );
  }

  private subscriptions(): TopicSubscription[] {
    const group = this.config.groupId;
    const nodes = this.config.edgeNodes;
    if (!nodes) return [{ topic: `${SPARKPLUG_NAMESPACE}/${group}/#`, qos: 1 }];
    return nodes.flatMap((node) => [
      { topic: `${SPARKPLUG_NAMESPACE}/${group}/+/${node}`, qos: 1 as const },
      { topic: `${SPARKPLUG_NAMESPACE}/${group}/+/${node}/+`, qos: 1 as const },
    ]);
  }

  private stateTopic(hostId: string): string {
    return `${SPARKPLUG_NAMESPACE}/STATE/${hostId}`;
  }

  private statePayload(online: boolean): string {
    return JSON.stringify({ online, timestamp: this.stateTimestamp });
  }

  private publishState(hostId: string, online: boolean): Promise<boolean> {
    return this.mqtt.publish(this.stateTopic(hostId), this.statePayload(online), { qos: 1, retain: true });
  }

  /** `senderTrace`: the id the sender put in the MQTT 5 properties of the message, if any. */
  private onMessage(topic: string, payload: Buffer, receivedAt: number, senderTrace?: string): void {
    const parsed = parseSparkplugTopic(topic);
    if (!parsed) {
      // STATE messages of host applications (ours included) and stray topics under spBv1.0.
      this.log.debug({ topic }, 'not a Sparkplug B edge node topic; ignored');
      return;
    }
    if (parsed.type === 'NCMD' || parsed.type === 'DCMD') return; // commands, ours among them
    if (this.config.edgeNodes && !this.config.edgeNodes.includes(parsed.edgeNode)) return;
    if (payload.length > this.config.maxPayloadBytes) {
      this.ctx.reject(
        'too_large',
        `${parsed.type} payload of ${payload.length} bytes is over the limit of ${this.config.maxPayloadBytes} (maxPayloadBytes)`,
        topic,
      );
      return;
    }
    let decoded;
    try {
      decoded = decodeSparkplugPayload(payload);
    } catch (err) {
      this.ctx.reject(
        'malformed',
        `${parsed.type} payload of ${payload.length} bytes is not a Sparkplug B protobuf (${errorMessage(err)})`,
        topic,
      );
      return;
    }
    const outcome = this.sessions.handle(parsed, decoded, receivedAt);
    for (const r of outcome.rejections) this.ctx.reject(r.reason, r.message, topic);
    if (outcome.readings.length > 0)
      this.ctx.readings(withSenderTrace(outcome.readings, senderTrace ?? decoded.uuid));
    for (const note of outcome.notes) this.log.debug({ topic }, note);
    if (outcome.rebirth)
      void this.requestRebirth(outcome.rebirth.group, outcome.rebirth.edgeNode, outcome.rebirth.why);
  }

  private async requestRebirth(group: string, edgeNode: string, why: string): Promise<void> {
    const topic = `${SPARKPLUG_NAMESPACE}/${group}/NCMD/${edgeNode}`;
    const sent = await this.mqtt.publish(topic, Buffer.from(rebirthRequest(Date.now())), {
      qos: 0,
      retain: false,
    });
    if (sent) this.rebirthRequests += 1;
    this.log.info(
      { edgeNode: `${group}/${edgeNode}`, why, sent },
      'requested a rebirth from a Sparkplug edge node',
    );
  }
}
