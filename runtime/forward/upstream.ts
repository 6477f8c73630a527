import { performance } from 'node:perf_hooks';
import type { MqttClient } from 'mqtt';
import type { UpstreamConfig } from '../config/upstream.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from '../mqtt-connect.js';
import type { Metrics } from '../ops/metrics.js';
import { SendWindow } from './congestion.js';
import { UpstreamConnection, type UpstreamState } from './connection.js';
import { buildMessage, upstreamTopic } from './envelope.js';
import { ClassWindow, type SentMessage } from './inflight.js';
import { RateMeter, TokenBucket } from './rate.js';
import {
  CLASS_PRIORITY,
  DATA_CLASSES,
  type ClassBacklog,
  type DataClass,
  type ForwardQueue,
  type QueuedRow,
} from './types.js';

/**
 * Forwards the stored alerts, results and readings to the upstream broker over a second MQTT
 * connection, highest priority class first, at a bounded rate, releasing rows only on PUBACK.
 *
 * Per class, messages in flight are kept in order and the acked cursor moves to the highest seq
 * acknowledged with everything before it (persisted, coalesced). When the connection is lost or
 * the link is taken as dead, everything in flight is dropped and sending resumes after the
 * acked cursor on the next connection, in order; only the forwarder decides what is resent
 * (connection.ts). A row can therefore arrive twice (receivers de-duplicate by id), never be
 * skipped or overtaken.
 *
 * The link is taken as dead when no acknowledgement at all came for ackTimeoutMs while messages
 * were in flight: a slow link that acknowledges one message after another is alive however long
 * the window takes to drain. After such a timeout less is sent at once (congestion.ts).
 *
 * A class the store cannot read (or whose rows cannot be put in a message) is logged, left aside
 * for a back-off period and retried, while the other classes keep going.
 */

export type { UpstreamState };

export type UpstreamClassStatus = ClassBacklog & {
  ageSeconds: number;
  deliveredThisRun: number;
  /** Why this class is not being forwarded, while it cannot be read or sent. */
  lastError?: string;
};

export interface UpstreamStatus {
  enabled: true;
  state: UpstreamState;
  url: string;
  clientId: string;
  lastError?: string;
  /** Rows acknowledged per second over the last 10 s. */
  drainRowsPerSecond: number;
  classes: Record<DataClass, UpstreamClassStatus>;
}

export interface UpstreamForwarderOptions {
  config: UpstreamConfig;
  deviceId: string;
  queue: ForwardQueue;
  log: Logger;
  metrics?: Metrics;
  /** Environment for config.passwordEnv; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Look for new rows this often even without notify(). */
  pollIntervalMs?: number;
  /** The backlog in status() and the gauges is refreshed at most this often. */
  statusIntervalMs?: number;
  /** A connection attempt without CONNACK within this long is abandoned and retried. */
  connectTimeoutMs?: number;
  /** Resolves the TLS file paths (e.g. relative to the config file); default as given. */
  resolvePath?: (file: string) => string;
  /** A class that cannot be read is retried after initialMs, doubling up to maxMs. */
  classRetryMs?: { initialMs: number; maxMs: number };
}

/** A class left aside because the store cannot read it or its rows cannot be sent. */
interface ClassFailure {
  error: string;
  failures: number;
  /** performance.now() from which it is tried again. */
  retryAt: number;
  /** Errors already logged for it (bounded), so that each is logged once. */
  logged: Set<string>;
}

/** Cursor writes are coalesced: at most one per class this often. */
const PERSIST_EVERY_MS = 100;
/** A stop() disconnect gets this long beyond the flush deadline before the socket is dropped. */
const DISCONNECT_GRACE_MS = 1_000;
const CLASS_RETRY_MS = { initialMs: 5_000, maxMs: 60_000 };
/** Distinct errors remembered per failing class for logging each once. */
const LOGGED_ERRORS = 20;

export class UpstreamForwarder {
  readonly clientId: string;
  private readonly config: UpstreamConfig;
  private readonly queue: ForwardQueue;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly connection: UpstreamConnection;
  private readonly pollIntervalMs: number;
  private readonly statusIntervalMs: number;
  /** The configured classes, highest priority first. */
  private readonly classes: DataClass[];
  private readonly topics: Record<DataClass, string>;
  private readonly bucket: TokenBucket;
  /** No message smaller than this while more rows wait: ~100 ms of the drain rate. */
  private readonly minChunk: number;
  private readonly meter = new RateMeter();
  private readonly windows = new Map<DataClass, ClassWindow>();
  /** Messages in flight and rows per message the link is given now. */
  private readonly send: SendWindow;
  /** The last sign of life of the link: a PUBACK, or a publish into an empty window. */
  private progressAt = 0;
  private readonly classRetryMs: { initialMs: number; maxMs: number };
  private readonly failures = new Map<DataClass, ClassFailure>();
  /** The acked cursor last written to the store, per class. */
  private readonly persisted = new Map<DataClass, number>();
  private readonly lastAckAt = new Map<DataClass, number>();
  private readonly deliveredThisRun: Record<DataClass, number> = { alerts: 0, results: 0, readings: 0 };

  private started = false;
  private startPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  /** stop() finished the flush: publish nothing more. */
  private noNewWork = false;
  /** During stop(): rows of a class above this seq are not part of the flush. */
  private flushTargets: Map<DataClass, number> | undefined;
  private pumping = false;
  private pumpScheduled = false;
  private tickTimer: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private pumpFailure: string | undefined;
  private persistFailure: string | undefined;
  private statusAt = -Infinity;
  private cachedClasses: Record<DataClass, UpstreamClassStatus> | undefined;

  constructor(private readonly opts: UpstreamForwarderOptions) {
    const { config, deviceId } = opts;
    this.config = config;
    this.queue = opts.queue;
    this.log = opts.log.child({ component: 'upstream' });
    this.metrics = opts.metrics;
    this.connection = new UpstreamConnection({
      config,
      deviceId,
      log: this.log,
      env: opts.env,
      connectTimeoutMs: opts.connectTimeoutMs,
      resolvePath: opts.resolvePath,
      onConnected: () => this.onConnected(),
      onEnded: () => this.onConnectionEnded(),
    });
    this.clientId = this.connection.clientId;
    this.pollIntervalMs = opts.pollIntervalMs ?? 250;
    this.statusIntervalMs = opts.statusIntervalMs ?? 1_000;
    this.classes = [...new Set(config.classes)].sort((a, b) => CLASS_PRIORITY[a] - CLASS_PRIORITY[b]);
    this.topics = Object.fromEntries(
      DATA_CLASSES.map((c) => [c, upstreamTopic(config.topicPrefix, deviceId, c)]),
    ) as Record<DataClass, string>;
    const rate = config.maxRowsPerSecond;
    this.bucket = new TokenBucket(rate, Math.max(rate, config.batchSize));
    this.minChunk = Math.max(1, Math.min(config.batchSize, Math.ceil(rate / 10)));
    this.send = new SendWindow(config.maxInFlight, config.batchSize);
    this.classRetryMs = opts.classRetryMs ?? CLASS_RETRY_MS;
  }

  /**
   * Reads the persisted cursors and connects. Resolves after the first attempt whatever its
   * outcome (connected, unreachable, refused): a gateway must start without its upstream. The
   * forwarder keeps retrying with back-off in the background.
   */
  start(): Promise<void> {
    this.startPromise ??= this.doStart();
    return this.startPromise;
  }

  /** New rows were stored: look for work now rather than at the next poll. */
  notify(): void {
    this.schedulePump();
  }

  /** A cheap snapshot: the backlog part is refreshed at most every statusIntervalMs. */
  status(): UpstreamStatus {
    this.refreshIfStale();
    const lastError = this.connection.lastError;
    return {
      enabled: true,
      state: this.connection.state,
      url: redactUrl(this.connection.url),
      clientId: this.clientId,
      ...(lastError !== undefined ? { lastError } : {}),
      drainRowsPerSecond: Math.round(this.meter.perSecond()),
      // The backlog is cached; the delivered counts are free to read live.
      classes: Object.fromEntries(
        DATA_CLASSES.map((c) => {
          const error = this.failures.get(c)?.error;
          return [
            c,
            {
              ...this.cachedClasses![c],
              deliveredThisRun: this.deliveredThisRun[c],
              ...(error !== undefined ? { lastError: error } : {}),
            },
          ];
        }),
      ) as Record<DataClass, UpstreamClassStatus>,
    };
  }

  /**
   * Forwards the backlog present now for at most `flushDeadlineMs`, waits for the messages in
   * flight until that deadline, stores the cursors and disconnects. Bounded in time whatever the
   * broker does (the deadline plus about a second); idempotent.
   */
  stop(flushDeadlineMs = this.config.flushOnStopSeconds * 1000): Promise<void> {
    this.stopPromise ??= this.doStop(Math.max(0, flushDeadlineMs));
    return this.stopPromise;
  }

  private async doStart(): Promise<void> {
    if (this.stopPromise) return;
    this.started = true;
    for (const cls of this.classes) {
      const acked = this.queue.backlog(cls).ackedSeq;
      this.windows.set(cls, new ClassWindow(acked));
      this.persisted.set(cls, acked);
    }
    this.refresh();
    this.tickTimer = setInterval(() => this.tick(), this.pollIntervalMs);
    this.tickTimer.unref();
    this.log.info(
      { url: redactUrl(this.connection.url), clientId: this.clientId, classes: this.classes },
      'connecting to the upstream broker',
    );
    await this.connection.start();
  }

  private async doStop(flushDeadlineMs: number): Promise<void> {
    const deadline = performance.now() + flushDeadlineMs;
    if (!this.started) {
      this.connection.stopped();
      return;
    }
    const connected = () => this.connection.connectedClient() !== undefined;
    if (connected()) {
      this.flushTargets = this.flushScope();
      this.schedulePump();
      // Drain what is stored now, then let the messages in flight be acknowledged.
      await this.waitUntil(() => !connected() || !this.hasPending(), deadline);
      this.noNewWork = true;
      await this.waitUntil(() => !connected() || this.inFlight() === 0, deadline);
    }
    this.noNewWork = true;
    clearInterval(this.tickTimer);
    clearTimeout(this.wakeTimer);
    this.persistCursors();
    const graceMs = Math.max(100, Math.min(DISCONNECT_GRACE_MS, deadline - performance.now()));
    await this.connection.close(graceMs, this.inFlight() === 0);
    clearTimeout(this.persistTimer);
    // Acknowledgements that came during the disconnect count too.
    this.persistCursors();
    this.connection.stopped();
    this.metrics?.upstreamConnected.set(0);
  }

  private onConnected(): Record<string, unknown> {
    this.metrics?.upstreamConnected.set(1);
    this.schedulePump();
    return {
      resumeFromSeq: Object.fromEntries(this.classes.map((c) => [c, this.windows.get(c)!.acked + 1])),
    };
  }

  /** Whatever was in flight is dropped: it is sent again after the acked cursor. */
  private onConnectionEnded(): void {
    this.metrics?.upstreamConnected.set(0);
    for (const cls of this.classes) {
      const dropped = this.windows.get(cls)!.reset();
      if (dropped > 0) this.metrics?.upstreamMessages.inc({ class: cls, outcome: 'failed' }, dropped);
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Publishes while there is room in flight, rows waiting and tokens in the bucket. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const client = this.connection.connectedClient();
        if (!client || this.noNewWork || this.inFlight() >= this.send.messages) break;
        const batch = this.send.rows;
        const minChunk = Math.min(this.minChunk, batch);
        const tokens = Math.floor(this.bucket.available());
        const pick = this.pick(Math.min(batch, Math.max(minChunk, tokens)));
        if (!pick) break;
        const n = Math.min(pick.rows.length, tokens);
        if (n < pick.rows.length && n < minChunk) {
          this.wakeIn(this.bucket.msUntil(Math.min(pick.rows.length, minChunk)));
          break;
        }
        this.publish(client, pick.cls, pick.rows.slice(0, n));
      }
      this.pumpFailure = undefined;
    } catch (err) {
      const message = errorMessage(err);
      if (message !== this.pumpFailure) {
        this.log.error({ err: message }, 'cannot forward rows upstream; retrying at the next poll');
      }
      this.pumpFailure = message;
    } finally {
      this.pumping = false;
    }
  }

  /**
   * The highest-priority class with rows after its sent cursor, and up to `limit` of them. A
   * class that cannot be read is left aside until its retry time.
   */
  private pick(limit: number): { cls: DataClass; rows: QueuedRow[] } | undefined {
    const now = performance.now();
    for (const cls of this.classes) {
      const failure = this.failures.get(cls);
      if (failure && now < failure.retryAt) continue;
      let rows: QueuedRow[];
      try {
        rows = this.queue.nextRows(cls, this.windows.get(cls)!.sent, limit);
      } catch (err) {
        this.classFailed(cls, err);
        continue;
      }
      const target = this.flushTargets?.get(cls);
      if (target !== undefined) rows = rows.filter((r) => r.seq <= target);
      if (rows.length > 0) return { cls, rows };
      if (failure) this.classRecovered(cls);
    }
    return undefined;
  }

  private publish(client: MqttClient, cls: DataClass, rows: QueuedRow[]): void {
    let payload: string;
    try {
      payload = JSON.stringify(buildMessage(this.opts.deviceId, this.queue.storeId, cls, rows));
    } catch (err) {
      // Nothing was taken from the drain rate or put in flight: the other classes go on.
      this.classFailed(cls, err);
      return;
    }
    this.classRecovered(cls);
    this.bucket.take(rows.length);
    // The oldest message's clock starts when it becomes the oldest (see onPublished).
    if (this.unacked() === 0) this.progressAt = performance.now();
    const generation = this.connection.generation;
    const message = this.windows.get(cls)!.add(rows[0]!.seq, rows[rows.length - 1]!.seq, rows.length);
    client.publish(this.topics[cls], payload, { qos: 1, retain: false }, (err) =>
      this.onPublished(generation, cls, message, err),
    );
  }

  /** Logs each distinct error of a class once and leaves the class aside for a back-off period. */
  private classFailed(cls: DataClass, err: unknown): void {
    const error = errorMessage(err);
    let failure = this.failures.get(cls);
    if (!failure) {
      failure = { error, failures: 0, retryAt: 0, logged: new Set() };
      this.failures.set(cls, failure);
    }
    const { initialMs, maxMs } = this.classRetryMs;
    const delayMs = Math.min(maxMs, initialMs * 2 ** Math.min(failure.failures, 30));
    failure.failures++;
    failure.error = error;
    failure.retryAt = performance.now() + delayMs;
    if (failure.logged.has(error)) return;
    if (failure.logged.size >= LOGGED_ERRORS) failure.logged.delete(failure.logged.values().next().value!);
    failure.logged.add(error);
    const others = this.classes.filter((c) => c !== cls);
    this.log.error(
      { class: cls, err: error, retryInSeconds: delayMs / 1000 },
      `cannot forward ${cls} upstream: ${error}. Its rows stay in the store and are retried with back-off` +
        (others.length > 0 ? `; ${others.join(' and ')} keep being forwarded` : ''),
    );
  }

  private classRecovered(cls: DataClass): void {
    const failure = this.failures.get(cls);
    if (!failure) return;
    this.failures.delete(cls);
    this.log.info({ class: cls, after: failure.error }, `forwarding ${cls} upstream again`);
  }

  private onPublished(generation: number, cls: DataClass, message: SentMessage, err?: Error): void {
    // A callback of an older connection, or of a message an outage dropped: it will be resent.
    if (generation !== this.connection.generation || message.dropped) return;
    if (err) {
      this.log.warn({ err: err.message, class: cls }, 'upstream publish failed; reconnecting to resend');
      this.connection.drop(`publishing to ${this.topics[cls]} failed: ${err.message}`);
      return;
    }
    this.metrics?.upstreamMessages.inc({ class: cls, outcome: 'acked' });
    this.progressAt = performance.now();
    this.send.acked();
    const advance = this.windows.get(cls)!.ack(message);
    if (advance) {
      const now = Date.now();
      this.lastAckAt.set(cls, now);
      this.deliveredThisRun[cls] += advance.rows;
      this.meter.add(advance.rows);
      this.metrics?.upstreamRowsDelivered.inc({ class: cls }, advance.rows);
      this.metrics?.upstreamLastDelivery.set({ class: cls }, now / 1000);
      this.schedulePersist();
    }
    this.pump();
  }

  private inFlight(): number {
    let n = 0;
    for (const w of this.windows.values()) n += w.inFlight;
    return n;
  }

  private unacked(): number {
    let n = 0;
    for (const w of this.windows.values()) n += w.unacked;
    return n;
  }

  /** Whether rows wait after the sent cursors (within the flush targets while stopping). */
  private hasPending(): boolean {
    return this.pick(1) !== undefined;
  }

  /** The flush's scope: the newest seq of each class stored now (seqs may have gaps). */
  private flushScope(): Map<DataClass, number> {
    const targets = new Map<DataClass, number>();
    for (const cls of this.classes) {
      let newest = this.windows.get(cls)!.sent;
      try {
        newest = Math.max(newest, this.queue.lastSeq(cls));
      } catch (err) {
        this.log.warn(
          { class: cls, err: errorMessage(err) },
          'cannot read the newest stored seq; flushing only what was already sent',
        );
      }
      targets.set(cls, newest);
    }
    return targets;
  }

  private tick(): void {
    this.checkAckTimeout();
    // Also retries a cursor write that failed (a full disk) without waiting for the next ack.
    if (!this.persistTimer) this.persistCursors();
    this.refreshIfStale();
    this.pump();
  }

  /**
   * No acknowledgement at all for ackTimeoutMs while messages were in flight: the link is dead
   * (or too slow for what is sent at once). Reconnect, resend from the acked cursor, and send
   * less at once.
   */
  private checkAckTimeout(): void {
    if (!this.connection.connectedClient() || this.unacked() === 0) return;
    const timeoutMs = this.config.ackTimeoutMs;
    if (performance.now() - this.progressAt < timeoutMs) return;
    this.send.timedOut();
    const { messages, rows } = this.send;
    this.connection.drop(
      `no acknowledgement from the upstream broker within ${timeoutMs} ms; sending at most ` +
        `${messages} message${messages === 1 ? '' : 's'} of ${rows} rows at a time until it keeps up`,
    );
  }

  private wakeIn(ms: number): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => this.pump(), Math.max(1, ms));
    this.wakeTimer.unref();
  }

  private schedulePersist(): void {
    if (this.persistTimer) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      this.persistCursors();
    }, PERSIST_EVERY_MS);
    this.persistTimer.unref();
  }

  /** Writes each class's acked cursor to the store where it moved. */
  private persistCursors(): void {
    for (const cls of this.classes) {
      const acked = this.windows.get(cls)?.acked;
      if (acked === undefined || acked <= (this.persisted.get(cls) ?? 0)) continue;
      try {
        this.queue.markDelivered(cls, acked, this.lastAckAt.get(cls) ?? Date.now());
        this.persisted.set(cls, acked);
        this.persistFailure = undefined;
      } catch (err) {
        // Delivered but not recorded: resent after a restart should it stay so (receivers
        // de-duplicate); retried at the next poll.
        const message = errorMessage(err);
        if (message !== this.persistFailure) {
          this.log.error(
            { class: cls, seq: acked, err: message },
            'rows delivered upstream but the store could not record it; they may be sent again',
          );
        }
        this.persistFailure = message;
      }
    }
  }

  private waitUntil(condition: () => boolean, deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        let done = true;
        try {
          done = condition() || performance.now() >= deadline;
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'upstream flush stopped early');
        }
        if (done) resolve();
        else setTimeout(check, 20);
      };
      check();
    });
  }

  private refreshIfStale(): void {
    if (performance.now() - this.statusAt >= this.statusIntervalMs) this.refresh();
  }

  /** Re-reads the backlog of every class and updates the gauges. */
  private refresh(): void {
    this.statusAt = performance.now();
    const now = Date.now();
    const classes = {} as Record<DataClass, UpstreamClassStatus>;
    for (const cls of DATA_CLASSES) {
      let backlog: ClassBacklog | undefined;
      try {
        backlog = this.queue.backlog(cls);
      } catch (err) {
        this.log.debug({ class: cls, err: errorMessage(err) }, 'cannot read the upstream backlog');
      }
      const previous = this.cachedClasses?.[cls];
      const b: ClassBacklog = backlog ??
        previous ?? { rows: 0, oldestSeq: null, oldestAt: null, ackedSeq: 0, lastDeliveryAt: null };
      const ageSeconds = b.oldestAt === null ? 0 : Math.max(0, (now - b.oldestAt) / 1000);
      classes[cls] = {
        rows: b.rows,
        oldestSeq: b.oldestSeq,
        oldestAt: b.oldestAt,
        ackedSeq: b.ackedSeq,
        lastDeliveryAt: b.lastDeliveryAt,
        ageSeconds,
        deliveredThisRun: this.deliveredThisRun[cls],
      };
      this.metrics?.upstreamBacklogRows.set({ class: cls }, b.rows);
      this.metrics?.upstreamBacklogAge.set({ class: cls }, ageSeconds);
      this.metrics?.upstreamOldestUndelivered.set({ class: cls }, b.oldestSeq ?? 0);
    }
    this.cachedClasses = classes;
    this.metrics?.upstreamDrainRate.set(this.meter.perSecond());
  }
}
