import { readFileSync } from 'node:fs';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { Backoff, sleep } from '../backoff.js';
import type { UpstreamConfig } from '../config/upstream.js';
import { readSecret } from '../config/secrets.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl, refusalCode, withTimeout } from '../mqtt-connect.js';

/**
 * The forwarder's connection to the upstream broker: one fresh MqttClient per attempt, with
 * mqtt.js's own reconnect off (reconnectPeriod 0) and our back-off instead. A fresh client has a
 * fresh outgoing store, so mqtt.js never resends a message of an earlier connection by itself:
 * after an outage the forwarder alone decides what is sent again, and in which order.
 */

export type UpstreamState = 'connecting' | 'connected' | 'disconnected' | 'refused' | 'stopped';

export interface UpstreamConnectionOptions {
  config: UpstreamConfig;
  deviceId: string;
  log: Logger;
  /** Environment for config.passwordEnv; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** A connection attempt without CONNACK within this long is abandoned and retried. */
  connectTimeoutMs?: number;
  /** Resolves the TLS file paths (e.g. relative to the config file); default as given. */
  resolvePath?: (file: string) => string;
  /** Connected; returns extra fields for the log line. */
  onConnected(again: boolean): Record<string, unknown>;
  /** The connection of the current attempt is over (before the next attempt starts). */
  onEnded(): void;
}

type Outcome = 'failed' | 'lost' | 'refused';

export class UpstreamConnection {
  readonly clientId: string;
  readonly url: string;
  private readonly config: UpstreamConfig;
  private readonly log: Logger;
  private readonly password: string | undefined;
  private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean } | undefined;
  private readonly connectTimeoutMs: number;
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  private current: UpstreamState = 'connecting';
  private error: string | undefined;
  private everConnected = false;
  private client: MqttClient | undefined;
  /** Increases with every attempt; a publish callback of another one is stale. */
  private attempts = 0;
  /** The attempt currently connected, 0 while none is. */
  private live = 0;
  private endAttempt: (() => void) | undefined;
  private closing = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: UpstreamConnectionOptions) {
    const { config } = opts;
    this.config = config;
    this.log = opts.log;
    this.url = config.url;
    try {
      new URL(config.url);
    } catch {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `upstream.url: '${redactUrl(config.url)}' is not a valid MQTT URL; write it like mqtts://plant-broker:8883`,
      );
    }
    this.clientId = config.clientId ?? `vigil-${opts.deviceId}-upstream`;
    // Read once, here, so that a wrong path fails at startup rather than at the first reconnect.
    const resolve = opts.resolvePath ?? ((f: string) => f);
    this.password = readSecret(
      {
        key: 'upstream.password',
        value: config.password,
        file: config.passwordFile,
        envName: config.passwordEnv,
      },
      { env: opts.env, resolvePath: resolve },
    );
    if (config.username !== undefined && this.password === undefined) {
      this.log.warn(
        { passwordEnv: config.passwordEnv },
        `upstream.username is set but none of upstream.password, upstream.passwordFile and the environment variable ${config.passwordEnv} is; connecting without a password`,
      );
    }
    const pem = (file: string | undefined, key: 'ca' | 'cert' | 'key') => {
      if (file === undefined) return {};
      const resolved = resolve(file);
      try {
        return { [key]: readFileSync(resolved) };
      } catch (err) {
        throw new VigilError(
          'VIGIL_ERR_CONFIG_READ',
          `upstream.tls.${key}: cannot read ${resolved}: ${errorMessage(err)}. Check the path in the config and the file's permissions.`,
          { cause: err, detail: { key: `upstream.tls.${key}`, file: resolved } },
        );
      }
    };
    this.tls = config.tls && {
      ...pem(config.tls.ca, 'ca'),
      ...pem(config.tls.cert, 'cert'),
      ...pem(config.tls.key, 'key'),
      rejectUnauthorized: config.tls.rejectUnauthorized,
    };
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.backoff = new Backoff({
      initialMs: config.reconnect.initialDelayMs,
      maxMs: Math.max(config.reconnect.initialDelayMs, config.reconnect.maxDelayMs),
    });
  }

  get state(): UpstreamState {
    return this.current;
  }

  get lastError(): string | undefined {
    return this.error;
  }

  /** The live connection's attempt number (0 while not connected), to tell stale callbacks apart. */
  get generation(): number {
    return this.live;
  }

  /** The client while connected. */
  connectedClient(): MqttClient | undefined {
    return this.live !== 0 && this.live === this.attempts ? this.client : undefined;
  }

  /**
   * Starts the attempt loop; resolves after the first attempt whatever its outcome (a gateway
   * must start without its upstream), and keeps retrying with back-off until close().
   */
  start(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.loop ??= this.run(resolve);
    });
  }

  /** Ends the current connection (a lost acknowledgement): the loop reconnects after back-off. */
  drop(reason: string): void {
    this.error = reason;
    this.endAttempt?.();
  }

  /**
   * No more attempts; disconnects within `graceMs` whatever the broker does: a clean DISCONNECT
   * when `clean`, else the socket is dropped (mqtt.js would wait for acknowledgements that may
   * never come).
   */
  async close(graceMs: number, clean: boolean): Promise<void> {
    this.closing = true;
    this.abort.abort();
    const client = this.client;
    if (client) {
      try {
        await withTimeout(client.endAsync(!clean || !client.connected), Math.max(1, graceMs));
      } catch {
        client.end(true);
      }
    }
    this.endAttempt?.();
    await this.loop;
  }

  /** After close(): the forwarder's final state. */
  stopped(): void {
    this.closing = true;
    this.setState('stopped', {});
  }

  private async run(firstAttemptDone: () => void): Promise<void> {
    while (!this.closing) {
      const outcome = await this.attempt(firstAttemptDone);
      firstAttemptDone();
      if (this.closing) break;
      // Credentials may be fixed on the broker side: a refused login is retried, slowly.
      const delay = outcome === 'refused' ? this.config.reconnect.maxDelayMs : this.backoff.next();
      await sleep(delay, this.abort.signal);
    }
  }

  /** Resolves when this attempt's connection is over: it failed, was refused, or was lost. */
  private attempt(onConnected: () => void): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const attempt = ++this.attempts;
      let wasConnected = false;
      let refused = false;
      let settled = false;
      let client: MqttClient;
      try {
        client = connect(this.url, this.clientOptions());
      } catch (err) {
        this.error = errorMessage(err);
        this.setState('disconnected', { url: redactUrl(this.url), err: this.error });
        resolve('failed');
        return;
      }
      this.client = client;
      const finish = () => {
        if (settled) return;
        settled = true;
        if (this.endAttempt === finish) this.endAttempt = undefined;
        this.live = 0;
        this.opts.onEnded();
        // mqtt.js may still emit an 'error' from a half-open socket; never let that crash the daemon.
        client.on('error', () => undefined);
        client.end(true);
        if (this.client === client) this.client = undefined;
        if (!this.closing && !refused) {
          const fields = { url: redactUrl(this.url), ...(this.error ? { err: this.error } : {}) };
          this.setState(
            'disconnected',
            fields,
            wasConnected
              ? 'upstream connection lost; rows stay in the store and are resent from the last acknowledged one once it is back'
              : 'upstream broker not reachable; rows stay in the store; retrying with back-off',
          );
        }
        resolve(refused ? 'refused' : wasConnected ? 'lost' : 'failed');
      };
      this.endAttempt = finish;
      client.on('connect', () => {
        if (settled || this.closing) return;
        wasConnected = true;
        this.live = attempt;
        this.backoff.reset();
        this.error = undefined;
        const again = this.everConnected;
        this.everConnected = true;
        const fields = this.opts.onConnected(again);
        this.setState(
          'connected',
          { url: redactUrl(this.url), clientId: this.clientId, ...fields },
          again
            ? 'upstream broker reconnected; resending from the last acknowledged rows'
            : 'upstream broker connected',
        );
        onConnected();
      });
      client.on('error', (err) => {
        if (settled || this.closing) return;
        if (refusalCode(err) !== undefined) {
          refused = true;
          this.error = this.refusalMessage(err);
          this.setState('refused', { url: redactUrl(this.url), clientId: this.clientId }, this.error);
          return;
        }
        const message = errorMessage(err);
        if (this.current === 'disconnected' && this.error !== undefined && message !== this.error) {
          this.log.warn(
            { url: redactUrl(this.url), err: message },
            'upstream connection problem changed; still retrying',
          );
        }
        this.error = message;
      });
      client.on('close', finish);
    });
  }

  private clientOptions(): IClientOptions {
    return {
      clientId: this.clientId,
      username: this.config.username,
      password: this.password,
      keepalive: this.config.keepaliveSeconds,
      // The store is the session: the broker need not keep one for us.
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: this.connectTimeoutMs,
      resubscribe: false,
      queueQoSZero: false,
      ...(this.tls ?? {}),
    };
  }

  /** Logs each change of connection state once, not every retry. */
  private setState(state: UpstreamState, fields: Record<string, unknown>, message?: string): void {
    if (state === this.current) return;
    this.current = state;
    if (state === 'connected') this.log.info(fields, message ?? 'upstream broker connected');
    else if (state === 'disconnected') this.log.warn(fields, message ?? 'upstream broker disconnected');
    else if (state === 'refused') this.log.error(fields, message ?? 'upstream broker refused the connection');
    else if (state === 'stopped') this.log.info('upstream forwarder stopped');
  }

  private refusalMessage(err: Error): string {
    const user = this.config.username;
    return (
      `upstream broker ${redactUrl(this.url)} refused the connection (${err.message}) for client id ${this.clientId}` +
      `${user ? ` and user ${user}` : ''}. Check upstream.username and upstream.password (or ` +
      `upstream.passwordFile, or the ${this.config.passwordEnv} environment variable) against the broker's accounts and ACL, and that ` +
      `this client id is allowed; retrying every ${Math.round(this.config.reconnect.maxDelayMs / 1000)} s`
    );
  }
}
