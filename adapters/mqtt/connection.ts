import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  connect,
  type IClientOptions,
  type IClientPublishOptions,
  type IPublishPacket,
  type MqttClient,
} from 'mqtt';
import { Backoff } from '../../runtime/backoff.js';
import type { MqttConnection } from '../../runtime/config/sources/mqtt.js';
import { readSecret } from '../../runtime/config/secrets.js';
import { VigilError, errorMessage } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/log.js';
import { redactUrl, refusalCode, withTimeout } from '../../runtime/mqtt-connect.js';
import type { SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import { pickTraceId } from '../trace-id.js';

/**
 * One subscribing MQTT client for a telemetry source: connects from the source's config, keeps
 * retrying with the source's back-off (a gateway must start while the plant broker is down),
 * subscribes again on every connect, and counts re-established connections.
 */

/**
 * 'persistent' (clean: false) asks the broker to keep the subscriptions and queue QoS 1 messages
 * while the client is away, under a client id that stays the same across restarts, so that a
 * network blip or a broker restart loses nothing. 'clean' starts afresh on every connection, as
 * Sparkplug B host applications must (the edge nodes' births say what is current).
 */
export type MqttSession = 'persistent' | 'clean';

/** What the PUBLISH packet says about its delivery. */
export interface MqttPacketInfo {
  /** Present for QoS 1 and 2: the broker reuses it once the message is acknowledged. */
  messageId?: number;
  /** Set by the broker on a redelivery of a message it sent before without an acknowledgement. */
  dup: boolean;
  qos: 0 | 1 | 2;
  /**
   * MQTT 5 only: the sender's trace id for the message, from its user property `x-request-id`,
   * else the trace id of a `traceparent` user property, else its correlation data (trace-id.ts
   * says which ids are taken). Absent under MQTT 3.1.1, which has no message properties.
   */
  traceId?: string;
}

export interface TopicSubscription {
  topic: string;
  qos: 0 | 1;
}

export interface SourceMqttOptions {
  /** The source's name, for the default client id and log lines. */
  sourceName: string;
  config: MqttConnection;
  session: MqttSession;
  ctx: SourceContext;
  log: Logger;
  subscriptions: readonly TopicSubscription[];
  /**
   * Every message received, one at a time; must not throw (errors are logged and the message
   * dropped). A returned promise holds the acknowledgement of a QoS 1 message (and the next
   * message) until it settles; without one, the message is acknowledged at once.
   */
  onMessage(topic: string, payload: Buffer, receivedAt: number, packet: MqttPacketInfo): void | Promise<void>;
  /** After the subscriptions were granted on each connect (Sparkplug's STATE birth goes here). */
  onConnected?(client: MqttClient): void;
  /** The last will for the next connection attempt. */
  will?: () => NonNullable<IClientOptions['will']>;
  /** Environment for passwordEnv; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /**
   * 4 (MQTT 3.1.1, the default: every broker speaks it) or 5 (MQTT 5: senders can put a trace id
   * on a message as a user property or correlation data). With 5, a persistent session asks the
   * broker to keep it until the broker's own expiry, as clean session off does under 3.1.1.
   * Absent: the source config's `protocolVersion`, else 4.
   */
  protocolVersion?: 4 | 5;
}

/**
 * MQTT 5 session expiry that means "never": the broker's own limit applies (Mosquitto:
 * persistent_client_expiration), as for a 3.1.1 session with clean session off.
 */
const SESSION_NEVER_EXPIRES = 0xffffffff;

/**
 * The sender's trace id on an MQTT 5 PUBLISH (see MqttPacketInfo.traceId), or undefined. A user
 * property given twice is read from its first value.
 */
export function packetTraceId(properties: IPublishPacket['properties']): string | undefined {
  if (!properties) return undefined;
  const user = properties.userProperties;
  const first = (name: string): unknown => {
    if (!user) return undefined;
    const key = Object.keys(user).find((k) => k.toLowerCase() === name);
    const v = key === undefined ? undefined : user[key];
    return Array.isArray(v) ? v[0] : v;
  };
  const correlation = properties.correlationData;
  return pickTraceId({
    requestId: first('x-request-id'),
    traceparent: first('traceparent'),
    // Binary by the spec; a sender that uses it for a trace id writes text.
    correlation: correlation && correlation.length <= 128 ? correlation.toString('utf8') : undefined,
  });
}

/**
 * The client id of a persistent session when the config sets none: the same after every restart
 * of this gateway (the broker finds its queued messages under it), yet different between gateways
 * that use the same source name, as long as their host names differ.
 */
export function stableClientId(sourceName: string, host: string = hostname()): string {
  const h = host.replace(/[^A-Za-z0-9_.-]/g, '_');
  return h ? `vigil-${sourceName}-${h}` : `vigil-${sourceName}`;
}

/** Whether a topic matches an MQTT filter (`+` one level, `#` the rest, incl. the parent). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i > 0 || !topic.startsWith('$');
    if (i >= t.length) return false;
    if (f[i] === '+') {
      if (i === 0 && t[0]!.startsWith('$')) return false;
      continue;
    }
    if (f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

export class SourceMqttClient {
  readonly clientId: string;
  private readonly log: Logger;
  private readonly url: string;
  private readonly backoff: Backoff;
  private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean } | undefined;
  private readonly password: string | undefined;
  private client: MqttClient | undefined;
  private current: SourceState = 'stopped';
  private everUp = false;
  private stopped = false;
  private lastError: string | undefined;
  /** Ends start(): called once subscribed (so nothing published right after start is missed), or on failure. */
  private firstAttemptDone: (() => void) | undefined;

  constructor(private readonly opts: SourceMqttOptions) {
    const { config, sourceName } = opts;
    this.log = opts.log;
    this.url = config.url;
    try {
      new URL(config.url);
    } catch {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `sources.${sourceName}.url: '${redactUrl(config.url)}' is not a valid MQTT URL; write it like mqtt://broker:1883`,
      );
    }
    this.clientId =
      config.clientId ??
      (opts.session === 'persistent'
        ? stableClientId(sourceName)
        : `vigil-${sourceName}-${randomBytes(4).toString('hex')}`);
    this.backoff = new Backoff({
      initialMs: config.reconnect.initialDelayMs,
      maxMs: Math.max(config.reconnect.initialDelayMs, config.reconnect.maxDelayMs),
    });
    this.password = readSecret(
      {
        key: `sources.${sourceName}.password`,
        value: config.password,
        file: config.passwordFile,
        envName: config.passwordEnv,
      },
      { env: opts.env, resolvePath: (f) => opts.ctx.resolvePath(f) },
    );
    if (config.password === undefined && config.passwordEnv && this.password === undefined) {
      this.log.warn(
        { passwordEnv: config.passwordEnv },
        `environment variable ${config.passwordEnv} (passwordEnv) is not set; connecting without a password`,
      );
    }
    // Read once, here, so that a wrong path fails at startup rather than at the first reconnect.
    const pem = (file: string | undefined, key: string) => {
      if (file === undefined) return {};
      const resolved = opts.ctx.resolvePath(file);
      try {
        return { [key]: readFileSync(resolved) };
      } catch (err) {
        throw new VigilError(
          'VIGIL_ERR_CONFIG_READ',
          `sources.${sourceName}.tls.${key}: cannot read ${resolved}: ${errorMessage(err)}. Check the path and the file's permissions.`,
          { cause: err },
        );
      }
    };
    this.tls = config.tls && {
      ...pem(config.tls.ca, 'ca'),
      ...pem(config.tls.cert, 'cert'),
      ...pem(config.tls.key, 'key'),
      rejectUnauthorized: config.tls.rejectUnauthorized,
    };
  }

  state(): SourceState {
    return this.current;
  }

  connected(): boolean {
    return this.client?.connected === true && !this.stopped;
  }

  /**
   * Connects and resolves after the first attempt, whatever its outcome: connected, or not (the
   * client then keeps retrying with back-off in the background). Never rejects for a network
   * reason.
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.client || signal.aborted) return;
    this.stopped = false;
    this.current = 'starting';
    const client = connect(this.url, this.clientOptions());
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack.sessionPresent));
    client.on('close', () => this.onClose());
    client.on('reconnect', () => this.onReconnectAttempt(client));
    client.on('error', (err) => this.onError(client, err));
    // Not the 'message' event: mqtt.js sends the PUBACK of a QoS 1 message once handleMessage
    // calls back, which is how the acknowledgement waits until the message is stored.
    client.handleMessage = (packet, callback) => this.handleMessage(client, packet, callback);
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    await new Promise<void>((resolve) => {
      const done = () => {
        this.firstAttemptDone = undefined;
        client.off('close', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.firstAttemptDone = done;
      client.on('close', done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Publishes if connected; resolves false when not connected or the send failed. */
  publish(topic: string, payload: Buffer | string, options: IClientPublishOptions): Promise<boolean> {
    const client = this.client;
    if (!client?.connected || this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      client.publish(topic, payload, options, (err) => {
        if (err) this.log.warn({ topic, err: err.message }, 'MQTT publish failed');
        resolve(!err);
      });
    });
  }

  /** Runs `beforeEnd` while still connected (e.g. an offline STATE), then disconnects; idempotent. */
  async stop(beforeEnd?: (client: MqttClient) => Promise<void>, timeoutMs = 3000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const wasStarted = this.current !== 'stopped';
    this.current = 'stopped';
    const client = this.client;
    this.client = undefined;
    this.firstAttemptDone?.(); // a start() still waiting for its first attempt returns now
    if (!client) return;
    const deadline = Date.now() + timeoutMs;
    if (client.connected && beforeEnd) {
      await withTimeout(beforeEnd(client), timeoutMs / 2).catch((err: unknown) =>
        this.log.warn({ err: errorMessage(err) }, 'could not finish before disconnecting'),
      );
    }
    try {
      await withTimeout(client.endAsync(!client.connected), Math.max(1, deadline - Date.now()));
    } catch {
      // end() is a no-op once a graceful end is under way; the socket itself can still be dropped.
      client.stream?.destroy();
    }
    client.removeAllListeners();
    // mqtt.js may still emit an 'error' from a half-open socket; never let that crash the daemon.
    client.on('error', () => undefined);
    if (wasStarted) this.log.info('MQTT source disconnected');
  }

  /**
   * Hands one message over and calls back, letting mqtt.js acknowledge it, once the handler's
   * promise (if any) has settled. mqtt.js handles the next packet only after that, so a source
   * that waits for its store acknowledges in order and takes one message per commit.
   */
  private handleMessage(client: MqttClient, packet: IPublishPacket, callback: (err?: Error) => void): void {
    const receivedAt = Date.now();
    // No topic aliases (3.1.1 has none; under 5 the client allows none): the packet's topic is the
    // whole topic.
    const topic = packet.topic;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const traceId = packetTraceId(packet.properties);
    const info: MqttPacketInfo = {
      dup: packet.dup,
      qos: packet.qos,
      ...(packet.messageId !== undefined ? { messageId: packet.messageId } : {}),
      ...(traceId !== undefined ? { traceId } : {}),
    };
    let pending: void | Promise<void> = undefined;
    try {
      pending = this.opts.onMessage(topic, payload, receivedAt, info);
    } catch (err) {
      // Defensive: the handlers count their own refusals; one message must never stop the source.
      this.log.error({ topic, err: errorMessage(err) }, 'unexpected error while handling an MQTT message');
    }
    if (!pending) {
      callback();
      return;
    }
    const stream = client.stream;
    pending
      .catch((err: unknown) => {
        // Handlers never reject; should one, the message is as good as dropped, and holding its
        // acknowledgement would only stall the source until the next reconnect.
        this.log.error({ topic, err: errorMessage(err) }, 'unexpected error while handling an MQTT message');
      })
      .then(() => {
        if (this.stopped || client.stream !== stream || !client.connected) {
          // The connection that delivered it is gone: mqtt.js would queue this PUBACK for the next
          // connection, where the broker delivers the message again anyway. Skipping it keeps a
          // stale acknowledgement from ever meeting a reused packet id.
          callback(new Error('connection closed before the message was stored'));
          return;
        }
        callback();
      });
  }

  private clientOptions(): IClientOptions {
    const { config } = this.opts;
    const will = this.opts.will?.();
    const v5 = (this.opts.protocolVersion ?? config.protocolVersion) === 5;
    return {
      clientId: this.clientId,
      ...(v5
        ? {
            protocolVersion: 5,
            // Under 5, clean start off alone keeps nothing once the connection closes.
            ...(this.opts.session === 'persistent'
              ? { properties: { sessionExpiryInterval: SESSION_NEVER_EXPIRES } }
              : {}),
          }
        : {}),
      username: config.username,
      password: this.password,
      keepalive: config.keepaliveSeconds,
      clean: this.opts.session === 'clean',
      connectTimeout: config.connectTimeoutMs,
      reconnectPeriod: this.backoff.next(),
      // A refused login (credentials fixed later on the broker) is retried too, at the longest delay.
      reconnectOnConnackError: true,
      // Subscriptions are renewed in onConnect, after each CONNACK, so that a refusal is logged.
      resubscribe: false,
      queueQoSZero: false,
      ...(will ? { will } : {}),
      ...(this.tls ?? {}),
    };
  }

  private onConnect(client: MqttClient, sessionPresent: boolean): void {
    if (this.stopped) return;
    this.backoff.reset();
    client.options.reconnectPeriod = this.backoff.next();
    this.lastError = undefined;
    const subs = this.opts.subscriptions;
    client.subscribe(Object.fromEntries(subs.map((s) => [s.topic, { qos: s.qos }])), (err, granted) => {
      if (this.stopped) return;
      if (err) {
        // The connection went away before the SUBACK; the next connect subscribes again.
        this.log.warn({ err: err.message }, 'MQTT subscribe did not complete; retrying on the next connect');
        return;
      }
      for (const g of granted ?? []) {
        if (g.qos === 128) {
          this.log.error(
            { topic: g.topic },
            `the broker refused the subscription to ${g.topic}; check the broker ACL for client ${this.clientId}`,
          );
        }
      }
      const again = this.everUp;
      this.everUp = true;
      this.current = 'up';
      this.log.info(
        {
          url: redactUrl(this.url),
          clientId: this.clientId,
          topics: subs.map((s) => s.topic),
          // Whether the broker still had this client's session: its queued messages follow.
          ...(this.opts.session === 'persistent' ? { sessionResumed: sessionPresent } : {}),
        },
        again ? 'MQTT source reconnected' : 'MQTT source connected',
      );
      if (again) this.opts.ctx.reconnected();
      try {
        this.opts.onConnected?.(client);
      } catch (e) {
        this.log.warn({ err: errorMessage(e) }, 'post-connect step failed');
      }
      this.firstAttemptDone?.();
    });
  }

  private onClose(): void {
    if (this.stopped) return;
    const before = this.current;
    this.current = 'down';
    if (before === 'up') {
      this.log.warn(
        { url: redactUrl(this.url), clientId: this.clientId, err: this.lastError },
        'MQTT source disconnected; reconnecting with back-off',
      );
    } else if (before === 'starting') {
      this.log.warn(
        { url: redactUrl(this.url), err: this.lastError },
        'MQTT broker not reachable yet; retrying with back-off',
      );
    }
  }

  private onReconnectAttempt(client: MqttClient): void {
    if (this.stopped) return;
    // The period set now is the wait after this attempt, should it fail.
    client.options.reconnectPeriod = this.backoff.next();
    const will = this.opts.will?.();
    if (will) client.options.will = will;
  }

  private onError(client: MqttClient, err: Error): void {
    if (this.stopped) return;
    const message = errorMessage(err);
    if (refusalCode(err) !== undefined) {
      client.options.reconnectPeriod = this.opts.config.reconnect.maxDelayMs;
      this.log.error(
        { url: redactUrl(this.url), clientId: this.clientId, err: message },
        `the MQTT broker refused the login${this.opts.config.username ? ` of user ${this.opts.config.username}` : ''}; ` +
          'check username and password (or passwordEnv) against the broker accounts and ACL',
      );
    } else if (this.current === 'down' && this.lastError !== undefined && message !== this.lastError) {
      this.log.warn(
        { url: redactUrl(this.url), err: message },
        'MQTT connection problem changed; still retrying',
      );
    }
    this.lastError = message;
  }
}
