import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { connect, type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import type { MqttConfig } from '../config/schema.js';
import { readSecret } from '../config/secrets.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl, refusalCode, withTimeout } from '../mqtt-connect.js';
import type { Alert, Result } from '../pipeline/result.js';
import { MESSAGE_SCHEMAS, withSchema } from './schemas.js';
import { topicsFor, type Topics } from './topics.js';

/**
 * Publishes alerts, status and (optionally) results to an MQTT broker.
 *
 * Delivery model: the store is the source of truth, not mqtt.js's in-memory queue. Every alert
 * is written to the store before it is published; `publishAlert` rejects at once with
 * MqttError('not-connected') while the broker is unreachable, and the alert stays in the
 * store's outbox. On every (re)connect the publisher replays the outbox, oldest first, and marks
 * each alert published on its PUBACK. Delivery is therefore at least once: an alert whose PUBACK
 * was lost can arrive twice, and receivers de-duplicate on `alert.id`.
 */

/** The part of the store the publisher needs, so that it does not depend on SQLite. */
/** The least wait before trying again after the broker refused the connection (credentials). */
const REFUSED_RETRY_MS = 30_000;

export interface AlertOutbox {
  unpublishedAlerts(limit: number): Alert[];
  markAlertPublished(id: string, at: number): void;
  recordPublishAttempt?(id: string): void;
}

export type MqttErrorReason = 'not-connected' | 'stopped' | 'ack-timeout' | 'refused' | 'publish-failed';

/**
 * A publishing or connection failure. (The VigilErrorCode union has no MQTT code yet; this
 * carries its own `reason` until one is added.)
 */
export class MqttError extends Error {
  readonly reason: MqttErrorReason;
  constructor(reason: MqttErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MqttError';
    this.reason = reason;
  }
}

export interface MqttPublisherOptions {
  config: MqttConfig;
  deviceId: string;
  log: Logger;
  /** Vigil's version, shown in the status message. */
  version: string;
  /** Where unpublished alerts wait; replayed on every (re)connect and marked on PUBACK. */
  outbox?: AlertOutbox;
  /** Told about every alert the broker acknowledged, live or replayed from the outbox. */
  onDelivered?: (alert: Alert) => void;
  /** Extra fields for the retained "online" status (models, pipelines, ...). */
  status?: () => Record<string, unknown>;
  /** Environment for VIGIL_MQTT_PASSWORD; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Resolves mqtt.passwordFile and the TLS files against the config file's folder; default: as given. */
  resolvePath?: (file: string) => string;
  /** First reconnect delay; it doubles after each failed attempt up to reconnectMaxMs. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How long a QoS 1 publish may wait for its PUBACK before publishAlert rejects. */
  ackTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Upper bound on stop(): offline status plus a clean disconnect. */
  stopTimeoutMs?: number;
  /** Alerts read from the outbox per replay round. */
  replayBatch?: number;
}

// Shared with the telemetry sources' MQTT clients; re-exported because callers imported it from here.
export { redactUrl };

type ConnectionState = 'idle' | 'connected' | 'disconnected' | 'refused' | 'stopped';

function readPem(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_READ',
      `cannot read ${key} file ${file}: ${errorMessage(err)}. Check the path in the config and the file's permissions.`,
      { cause: err, detail: { key, file } },
    );
  }
}

export class MqttPublisher {
  readonly topics: Topics;
  readonly clientId: string;
  private readonly url: string;
  private readonly log: Logger;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly ackTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly replayBatch: number;
  private readonly password: string | undefined;
  private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean } | undefined;
  private client: MqttClient | undefined;
  private state: ConnectionState = 'idle';
  private lastErrorMessage: string | undefined;
  private startedAt = '';
  private stopping = false;
  private replaying = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Alert ids with a publish awaiting PUBACK, so the outbox replay does not send them twice. */
  private readonly inFlight = new Set<string>();

  constructor(private readonly opts: MqttPublisherOptions) {
    const { config, deviceId } = opts;
    this.url = config.url;
    this.log = opts.log.child({ component: 'mqtt' });
    this.topics = topicsFor(config.topicPrefix, deviceId);
    this.clientId = config.clientId ?? `vigil-${deviceId}`;
    const resolve = opts.resolvePath ?? ((f: string) => f);
    this.password = readSecret(
      {
        key: 'mqtt.password',
        value: config.password,
        file: config.passwordFile,
        envName: 'VIGIL_MQTT_PASSWORD',
      },
      { env: opts.env, resolvePath: resolve },
    );
    this.reconnectMinMs = opts.reconnectMinMs ?? 1_000;
    this.reconnectMaxMs = Math.max(this.reconnectMinMs, opts.reconnectMaxMs ?? 30_000);
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 10_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 3_000;
    this.replayBatch = opts.replayBatch ?? 100;
    // Certificates are read once, here, so that a wrong path fails at startup, not at the
    // first reconnect.
    this.tls = config.tls && {
      ...(config.tls.ca ? { ca: readPem(resolve(config.tls.ca), 'mqtt.tls.ca') } : {}),
      ...(config.tls.cert ? { cert: readPem(resolve(config.tls.cert), 'mqtt.tls.cert') } : {}),
      ...(config.tls.key ? { key: readPem(resolve(config.tls.key), 'mqtt.tls.key') } : {}),
      rejectUnauthorized: config.tls.rejectUnauthorized,
    };
  }

  /**
   * Connects. Resolves once connected, or once the first attempt failed for a network reason
   * (the publisher then keeps retrying in the background: a gateway must start without its
   * broker). Rejects with MqttError('refused') when the broker refuses the credentials.
   */
  async start(): Promise<void> {
    if (this.client) throw new Error('MqttPublisher.start() called twice');
    this.startedAt = new Date().toISOString();
    const client = connect(this.url, this.clientOptions());
    this.client = client;
    client.on('connect', () => this.onConnect());
    client.on('close', () => this.onClose());
    client.on('reconnect', () => this.onReconnectAttempt());
    client.on('error', (err) => this.onError(err));

    await new Promise<void>((resolve, reject) => {
      const settle = (fn: () => void) => {
        client.off('connect', onConnect);
        client.off('offline', onOffline);
        client.off('error', onError);
        fn();
      };
      const onConnect = () => settle(resolve);
      const onOffline = () => settle(resolve);
      const onError = (err: Error) => {
        if (refusalCode(err) === undefined) return;
        settle(() => {
          // A refusal at startup is final: the caller gets the error and decides.
          clearTimeout(this.retryTimer);
          this.stopping = true;
          this.state = 'stopped';
          client.end(true);
          reject(new MqttError('refused', this.refusalMessage(err), { cause: err }));
        });
      };
      client.on('connect', onConnect);
      client.on('offline', onOffline);
      client.on('error', onError);
    });
  }

  connected(): boolean {
    return this.client?.connected === true && !this.stopping;
  }

  /**
   * Publishes an alert with QoS 1 and resolves on the broker's PUBACK with the time it took.
   * With an outbox, the alert is marked published there on PUBACK (even one arriving after
   * ackTimeoutMs). Rejects at once while disconnected: the alert stays in the outbox.
   */
  async publishAlert(alert: Alert): Promise<{ ackMs: number }> {
    const client = this.requireConnected(`alert ${alert.id}`);
    this.inFlight.add(alert.id);
    try {
      this.opts.outbox?.recordPublishAttempt?.(alert.id);
    } catch (err) {
      this.log.warn({ alertId: alert.id, err: errorMessage(err) }, 'could not count a publish attempt');
    }
    const started = performance.now();
    try {
      await this.publishAcked(
        client,
        this.topics.alert(alert.kind),
        withSchema(MESSAGE_SCHEMAS.alert, alert),
        { qos: 1, retain: false },
        () => this.markPublished(alert),
      );
    } finally {
      this.inFlight.delete(alert.id);
    }
    return { ackMs: performance.now() - started };
  }

  /**
   * Publishes a result on results/<pipeline> (a best-effort stream: nothing is replayed).
   * Never rejects, so callers may fire and forget: resolves true once sent (QoS 0) or
   * acknowledged (QoS 1), false when disconnected or the send failed.
   */
  async publishResult(pipeline: string, result: Result, qos: 0 | 1 = 0): Promise<boolean> {
    if (!this.connected() || !this.client) return false;
    try {
      await this.publishAcked(
        this.client,
        this.topics.result(pipeline),
        withSchema(MESSAGE_SCHEMAS.result, result),
        { qos, retain: false },
      );
      return true;
    } catch (err) {
      this.log.debug({ pipeline, resultId: result.id, err: errorMessage(err) }, 'result not published');
      return false;
    }
  }

  /**
   * Publishes a model's rollout event, retained (QoS 1), so that a subscriber arriving later sees
   * the latest decision. False while disconnected: the event is in the log and the status.
   */
  async publishRolloutEvent(model: string, event: unknown): Promise<boolean> {
    if (!this.connected() || !this.client) return false;
    await this.publishAcked(this.client, this.topics.rollout(model), JSON.stringify(event), {
      qos: 1,
      retain: true,
    });
    return true;
  }

  /** Publishes the retained "online" status with these extra fields. False while disconnected. */
  async publishStatus(extra: Record<string, unknown> = {}): Promise<boolean> {
    if (!this.connected() || !this.client) return false;
    await this.publishAcked(
      this.client,
      this.topics.status,
      JSON.stringify(this.statusPayload('online', extra)),
      {
        qos: 1,
        retain: true,
      },
    );
    return true;
  }

  /**
   * Publishes every alert waiting in the outbox (oldest first) while connected; returns how many
   * were acknowledged. Runs on every connect; callers may also run it periodically to retry
   * alerts whose PUBACK timed out.
   */
  async flushOutbox(): Promise<number> {
    const outbox = this.opts.outbox;
    if (!outbox || this.replaying) return 0;
    this.replaying = true;
    let sent = 0;
    try {
      // Each alert is tried at most once per round: one acknowledged but not marked in the store
      // (a full or read-only disk) would otherwise come back in every batch, and the loop would
      // republish it as fast as the broker acknowledges.
      const attempted = new Set<string>();
      while (this.connected()) {
        const batch = outbox
          .unpublishedAlerts(this.replayBatch + attempted.size)
          .filter((a) => !this.inFlight.has(a.id) && !attempted.has(a.id))
          .slice(0, this.replayBatch);
        if (batch.length === 0) break;
        for (const a of batch) attempted.add(a.id);
        const outcomes = await Promise.allSettled(batch.map((a) => this.publishAlert(a)));
        const acked = outcomes.filter((o) => o.status === 'fulfilled').length;
        sent += acked;
        // Nothing got through (the connection dropped again, or the broker stopped acking):
        // stop here rather than spin; the next connect resumes.
        if (acked === 0) break;
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'replaying stored alerts stopped');
    } finally {
      this.replaying = false;
    }
    if (sent > 0) this.log.info({ alerts: sent }, 'stored alerts delivered');
    return sent;
  }

  /** Publishes the retained "offline" status and disconnects, within stopTimeoutMs in all. */
  async stop(): Promise<void> {
    const client = this.client;
    if (!client || this.stopping) return;
    this.stopping = true;
    clearTimeout(this.retryTimer);
    const deadline = Date.now() + this.stopTimeoutMs;
    if (client.connected) {
      try {
        await this.publishAcked(
          client,
          this.topics.status,
          JSON.stringify(
            this.statusPayload('offline', { reason: 'stopped', stoppedAt: new Date().toISOString() }),
          ),
          { qos: 1, retain: true },
          undefined,
          Math.max(1, this.stopTimeoutMs / 2),
        );
      } catch (err) {
        this.log.warn(
          { err: errorMessage(err) },
          'could not publish the offline status; the broker will send the last will',
        );
      }
    }
    try {
      await withTimeout(
        client.endAsync(!client.connected),
        Math.max(1, deadline - Date.now()),
        () => new Error('timeout'),
      );
    } catch {
      client.end(true);
    }
    this.setState('stopped', {});
  }

  private clientOptions(): IClientOptions {
    const { config } = this.opts;
    return {
      clientId: this.clientId,
      username: config.username,
      password: this.password,
      keepalive: config.keepaliveSeconds,
      clean: true,
      reconnectPeriod: this.reconnectMinMs,
      connectTimeout: this.connectTimeoutMs,
      // Never let mqtt.js buffer QoS 0 messages while offline: the store is the buffer.
      queueQoSZero: false,
      will: {
        topic: this.topics.status,
        payload: Buffer.from(
          JSON.stringify(this.statusPayload('offline', { reason: 'connection lost' }, false)),
        ),
        qos: 1,
        retain: true,
      },
      ...(this.tls ?? {}),
    };
  }

  private statusPayload(state: 'online' | 'offline', extra: Record<string, unknown>, withCallback = true) {
    let fromCallback: Record<string, unknown> = {};
    if (withCallback && state === 'online' && this.opts.status) {
      try {
        fromCallback = this.opts.status();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'status callback failed; publishing the basic status');
      }
    }
    return {
      schema: MESSAGE_SCHEMAS.status,
      state,
      device: this.opts.deviceId,
      version: this.opts.version,
      startedAt: this.startedAt,
      ...fromCallback,
      ...extra,
    };
  }

  private requireConnected(what: string): MqttClient {
    if (this.stopping)
      throw new MqttError('stopped', `cannot publish ${what}: the MQTT publisher is stopping`);
    if (!this.client?.connected) {
      throw new MqttError(
        'not-connected',
        `cannot publish ${what}: not connected to the MQTT broker ${redactUrl(this.url)}; it stays in the store and is sent on reconnect`,
      );
    }
    return this.client;
  }

  private publishAcked(
    client: MqttClient,
    topic: string,
    payload: string,
    options: IClientPublishOptions,
    onAck?: () => void,
    timeoutMs = this.ackTimeoutMs,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(
          new MqttError(
            'ack-timeout',
            `no acknowledgement from the MQTT broker within ${timeoutMs} ms for ${topic}`,
          ),
        );
      }, timeoutMs);
      client.publish(topic, payload, options, (err) => {
        clearTimeout(timer);
        if (!err) onAck?.();
        if (timedOut) return;
        if (err)
          reject(
            new MqttError('publish-failed', `publishing to ${topic} failed: ${err.message}`, { cause: err }),
          );
        else resolve();
      });
    });
  }

  private markPublished(alert: Alert): void {
    try {
      this.opts.onDelivered?.(alert);
    } catch (err) {
      this.log.warn({ alertId: alert.id, err: errorMessage(err) }, 'onDelivered hook failed');
    }
    const alertId = alert.id;
    try {
      this.opts.outbox?.markAlertPublished(alertId, Date.now());
    } catch (err) {
      // Delivered but not marked: it will be sent again on the next replay (receivers de-duplicate).
      this.log.warn(
        { alertId, err: errorMessage(err) },
        'alert delivered but could not be marked in the store',
      );
    }
  }

  private onConnect(): void {
    const client = this.client;
    if (!client) return;
    client.options.reconnectPeriod = this.reconnectMinMs;
    this.lastErrorMessage = undefined;
    this.setState('connected', { url: redactUrl(this.url), clientId: this.clientId });
    this.publishAcked(client, this.topics.status, JSON.stringify(this.statusPayload('online', {})), {
      qos: 1,
      retain: true,
    }).catch((err: unknown) =>
      this.log.warn({ err: errorMessage(err) }, 'could not publish the online status'),
    );
    void this.flushOutbox();
  }

  private onClose(): void {
    if (this.stopping || this.state === 'refused') return;
    this.setState('disconnected', {
      url: redactUrl(this.url),
      retryInMs: this.client?.options.reconnectPeriod,
      ...(this.lastErrorMessage ? { err: this.lastErrorMessage } : {}),
    });
  }

  /** Back-off: each failed attempt doubles the wait before the next one, up to reconnectMaxMs. */
  private onReconnectAttempt(): void {
    const client = this.client;
    if (!client) return;
    const current = client.options.reconnectPeriod ?? this.reconnectMinMs;
    client.options.reconnectPeriod = Math.min(this.reconnectMaxMs, current * 2);
  }

  private onError(err: Error): void {
    if (this.stopping || this.state === 'stopped') return;
    if (refusalCode(err) !== undefined) {
      // mqtt.js stops reconnecting after a refusal; credentials may be fixed on the broker
      // side, so try again after the longest back-off, and not more often than every 30 s: a
      // short back-off suits a restarting broker, not one that refuses the credentials.
      this.setState('refused', { url: redactUrl(this.url) }, this.refusalMessage(err));
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(
        () => {
          if (!this.stopping) this.client?.reconnect();
        },
        Math.max(this.reconnectMaxMs, REFUSED_RETRY_MS),
      );
      this.retryTimer.unref();
      return;
    }
    // The 'close' that follows logs the state change with this error; later retries log only
    // when the cause changes (e.g. from 'connection refused' to 'host unreachable').
    const message = errorMessage(err);
    const previous = this.lastErrorMessage;
    this.lastErrorMessage = message;
    if (this.state === 'disconnected' && previous !== undefined && message !== previous) {
      this.log.warn(
        { url: redactUrl(this.url), err: message },
        'MQTT connection problem changed; still retrying',
      );
    }
  }

  /** Logs each change of connection state once, not every retry. */
  private setState(state: ConnectionState, fields: Record<string, unknown>, message?: string): void {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    if (state === 'connected') this.log.info(fields, 'MQTT connected');
    else if (state === 'disconnected' && previous !== 'idle')
      this.log.warn(fields, 'MQTT disconnected; alerts are kept in the store until it is back');
    else if (state === 'disconnected')
      this.log.warn(fields, 'MQTT broker not reachable yet; retrying with back-off');
    else if (state === 'refused') this.log.error(fields, message ?? 'MQTT broker refused the connection');
    else if (state === 'stopped') this.log.info('MQTT publisher stopped');
  }

  private refusalMessage(err: Error): string {
    return (
      `MQTT broker ${redactUrl(this.url)} refused the connection (${err.message}) for client id ${this.clientId}` +
      `${this.opts.config.username ? ` and user ${this.opts.config.username}` : ''}. ` +
      'Check mqtt.username and mqtt.password (or mqtt.passwordFile, or the VIGIL_MQTT_PASSWORD environment variable) against the ' +
      "broker's accounts, and that this client id is allowed."
    );
  }
}
