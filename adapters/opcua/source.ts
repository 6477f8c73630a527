import client from 'node-opcua-client';
import type { ClientSubscription, NotificationMessage, NodeId as NodeIdObject } from 'node-opcua-client';
import { Backoff, sleep } from '../../runtime/backoff.js';
import type { OpcUaItem, OpcUaSourceConfig } from '../../runtime/config/sources/opcua.js';
import { readSecret } from '../../runtime/config/secrets.js';
import { VigilError, errorMessage } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/log.js';
import type { Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { createClient, explainFailure, userIdentity, type OpcUaClient, type OpcUaSession } from './client.js';
import { routeNodeOpcuaLogs } from './logging.js';
import {
  describeMoves,
  movedNamespaces,
  namespaceUriOf,
  readNamespaceTable,
  resolveAgainst,
  unknownNamespaceNodeId,
  usesNamespaceUris,
} from './namespaces.js';
import { OverflowWarnings, overflowMessage } from './overflow.js';
import { openPki, type Pki } from './pki.js';
import { hasOverflow, statusName, toReading, type ItemTarget } from './status.js';

const {
  AttributeIds,
  DataChangeFilter,
  DataChangeTrigger,
  DeadbandType,
  StatusCodes,
  TimestampsToReturn,
  resolveNodeId,
} = client;
type Subscription = ClientSubscription;
type DataValue = InstanceType<typeof client.DataValue>;

/** What a monitored item's values are, and how it was configured. */
interface Monitored {
  target: ItemTarget;
  item: OpcUaItem;
}

/** One live client, session and subscription; replaced as a whole when it cannot be repaired. */
interface Connection {
  client: OpcUaClient;
  session: OpcUaSession;
  subscription: Subscription;
  /** clientHandle of each monitored item → what its values are. */
  handles: Map<number, Monitored>;
  /**
   * The server's namespace table that `nsu=` node ids were resolved against; undefined when no
   * item names its namespace by URI.
   */
  namespaces: readonly string[] | undefined;
  /** Resolves with the reason once this connection must be thrown away and built again (or is closed). */
  broken: Promise<string>;
  /** Marks the connection broken, unless it is already being closed. */
  breakWith(reason: string): void;
  /** Wakes whoever waits on `broken`, whatever the state: the connection is closing. */
  release(): void;
  closing: boolean;
  /**
   * Publish responses held back: while the monitored items are still being created (node-opcua may
   * process the first one before monitorItems() resolves), delivered once the handles are known;
   * and from a lost connection until node-opcua's repair is known to have re-created the items on
   * the right nodes (dropped if not). Undefined while values flow straight through.
   */
  held: NotificationMessage[] | undefined;
  watchdog: NodeJS.Timeout;
  /** Runs from the moment a lost connection's channel is back until node-opcua's repair completes. */
  repairDeadline: NodeJS.Timeout | undefined;
}

/**
 * Telemetry from an OPC-UA server: one session, one subscription, one monitored item per
 * configured node. Values come with the server's source and server timestamps; Bad and Uncertain
 * status codes become bad/uncertain readings with the code's name, never numbers for a model.
 *
 * Two layers keep data flowing. node-opcua's own reconnection repairs a lost connection: a new
 * channel, the session reactivated or re-created, subscriptions transferred or (after a server
 * restart, when the server forgot them) re-created, counted here through `connection_reestablished`.
 * Around it, Vigil's loop builds everything anew, with the source's back-off, when the first
 * connection cannot be made, when node-opcua gives up, or when the subscription falls silent (no
 * data and no keep-alive for three keep-alive periods): a repair that did not bring data back.
 */
export class OpcUaSource implements Source {
  readonly type = 'opcua';
  private readonly log: Logger;
  private readonly nodeIds: NodeIdObject[];
  private readonly silenceLimitMs: number;
  private current: SourceState = 'stopped';
  private stopped = true;
  private stopping: Promise<void> | undefined;
  private life = new AbortController();
  private loop: Promise<void> | undefined;
  private pki: Pki | undefined;
  private password: string | undefined;
  /** A client being connected, so that stop() can cut a slow connect short. */
  private pending: OpcUaClient | undefined;
  private conn: Connection | undefined;
  private everUp = false;
  private readonly overflows = new OverflowWarnings();

  constructor(
    readonly name: string,
    private readonly config: OpcUaSourceConfig,
    private readonly ctx: SourceContext,
  ) {
    this.log = ctx.log.child({ source: name, endpoint: config.endpoint });
    this.nodeIds = config.items.map((item, i) => {
      try {
        // nsu=<uri>;... is resolved against the server's namespace table once connected.
        return resolveNodeId(namespaceUriOf(item.nodeId)?.rest ?? item.nodeId);
      } catch (err) {
        throw new VigilError(
          'VIGIL_ERR_CONFIG_INVALID',
          `sources.${name}.items.${i}.nodeId: '${item.nodeId}' is not a valid OPC-UA node id (${errorMessage(err)}); ` +
            '`vigil opcua browse ENDPOINT` lists the node ids of a server',
        );
      }
    });
    const sub = config.subscription;
    this.silenceLimitMs = Math.max(3 * sub.publishingIntervalMs * sub.maxKeepAliveCount, 5000);
  }

  state(): SourceState {
    return this.current;
  }

  /**
   * Opens the PKI folder and makes the first connection attempt; resolves after it, connected or
   * not (then the source is 'down' and keeps retrying with back-off in the background).
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.loop || signal.aborted) return;
    this.stopped = false;
    this.stopping = undefined;
    this.current = 'starting';
    this.life = new AbortController();
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    // Process-wide, so not tagged with this source: several OPC-UA sources share node-opcua.
    routeNodeOpcuaLogs(this.ctx.log.child({ component: 'node-opcua' }));
    const auth = this.config.auth;
    if (auth) {
      try {
        this.password = readSecret(
          {
            key: `sources.${this.name}.auth.password`,
            value: auth.password,
            file: auth.passwordFile,
            envName: auth.passwordEnv,
          },
          { resolvePath: (f) => this.ctx.resolvePath(f) },
        );
      } catch (err) {
        this.current = 'stopped';
        this.stopped = true;
        throw err;
      }
      if (this.password === undefined) {
        this.log.warn(
          { passwordEnv: auth.passwordEnv },
          `no password for OPC-UA user '${auth.username}': set auth.passwordFile, auth.password or the environment variable ${auth.passwordEnv}; trying an empty one`,
        );
      }
    }
    const folder = this.ctx.resolvePath(this.config.pkiFolder);
    try {
      this.pki = await openPki(folder, { trustUnknownServer: this.config.trustUnknownServer });
    } catch (err) {
      this.current = 'stopped';
      this.stopped = true;
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `sources.${this.name}.pkiFolder: cannot use ${folder} for OPC-UA certificates: ${errorMessage(err)}; check that the folder is writable`,
        { cause: err },
      );
    }
    if (this.stopped) {
      // stop() ran while the folder was being opened, and found nothing to release yet.
      await this.pki.close().catch(() => undefined);
      this.pki = undefined;
      return;
    }
    let firstDone!: () => void;
    const first = new Promise<void>((resolve) => (firstDone = resolve));
    this.loop = this.run(firstDone).catch((err: unknown) => {
      // Defensive: the loop handles its own errors; a bug must not take the daemon down.
      this.current = 'down';
      this.log.error({ err: errorMessage(err) }, 'OPC-UA source stopped on an unexpected error');
      firstDone();
    });
    await first;
  }

  /** Idempotent; every caller waits until the session is closed and the PKI released. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    this.current = 'stopped';
    this.life.abort();
    const pending = this.pending;
    this.pending = undefined;
    if (pending) await disconnect(pending);
    const conn = this.conn;
    this.conn = undefined;
    if (conn) await this.close(conn, 'stopping');
    await this.loop;
    this.loop = undefined;
    const pki = this.pki;
    this.pki = undefined;
    await pki?.close().catch(() => undefined);
  }

  private async run(firstDone: () => void): Promise<void> {
    const { reconnect } = this.config;
    const backoff = new Backoff({
      initialMs: reconnect.initialDelayMs,
      maxMs: Math.max(reconnect.initialDelayMs, reconnect.maxDelayMs),
    });
    try {
      await this.attempts(backoff, firstDone);
    } finally {
      firstDone(); // stopped before the first attempt ended: start() must not wait for ever
    }
  }

  private async attempts(backoff: Backoff, firstDone: () => void): Promise<void> {
    let lastFailure: string | undefined;
    let lastLoudAt = 0;
    while (!this.stopped) {
      let conn: Connection;
      try {
        conn = await this.open();
      } catch (err) {
        if (this.stopped) break;
        this.current = 'down';
        const pki = this.pki!;
        const explained = await explainFailure(err, {
          endpoint: this.config.endpoint,
          username: this.config.auth?.username,
          pki,
          securityMode: this.config.securityMode,
          securityPolicy: this.config.securityPolicy,
        });
        const delay = backoff.next();
        // A person must act on these; a server that is down is the ordinary case.
        const level = ['untrusted_server', 'client_refused', 'credentials', 'security'].includes(
          explained.kind,
        )
          ? 'error'
          : 'warn';
        // The same failure again is logged quietly, but loudly again every few minutes so that a
        // long outage stays visible in the log.
        const quiet = explained.message === lastFailure && Date.now() - lastLoudAt < 5 * 60_000;
        lastFailure = explained.message;
        if (!quiet) lastLoudAt = Date.now();
        this.log[quiet ? 'debug' : level](
          { kind: explained.kind, attempt: backoff.attempts, retryInMs: delay, detail: errorMessage(err) },
          `${explained.message}; retrying in ${Math.round(delay / 100) / 10} s`,
        );
        firstDone();
        await sleep(delay, this.life.signal);
        continue;
      }
      if (this.stopped) {
        await this.close(conn, 'stopping');
        break;
      }
      this.conn = conn;
      backoff.reset();
      lastFailure = undefined;
      this.current = 'up';
      if (this.everUp) {
        this.ctx.reconnected();
        this.log.info('OPC-UA session re-created; data resumes');
      } else {
        this.log.info(
          { items: this.config.items.length, securityMode: this.config.securityMode },
          'OPC-UA subscription created',
        );
      }
      this.everUp = true;
      firstDone();

      const reason = await conn.broken;
      if (this.stopped) break;
      this.current = 'down';
      this.conn = undefined;
      this.log.warn({ reason }, `${reason}; building the OPC-UA session again`);
      // The server is probably gone: do not wait long for it to acknowledge the goodbye.
      await this.close(conn, reason, 500);
      await sleep(backoff.next(), this.life.signal);
    }
  }

  /**
   * A client, a session, a subscription and its monitored items, or an error; within
   * connectTimeoutMs, since a host that drops packets would otherwise hold an attempt for minutes.
   */
  private async open(): Promise<Connection> {
    const pki = this.pki!;
    for (const file of await pki.reload()) {
      this.log.info({ file }, 'removed a rejected server certificate that is now trusted');
    }
    if (this.stopped) throw new Error('stopped');
    const client = createClient({
      endpoint: this.config.endpoint,
      securityMode: this.config.securityMode,
      securityPolicy: this.config.securityPolicy,
      pki,
      reconnect: this.config.reconnect,
    });
    this.pending = client;
    const ms = this.config.connectTimeoutMs;
    const work = this.establish(client);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timeout: the server did not complete the connection within ${ms} ms`)),
        ms,
      );
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      // A connection that completes after all is not wanted any more.
      work.then(
        (late) => this.close(late, 'completed after the timeout'),
        () => undefined,
      );
      await disconnect(client);
      throw err;
    } finally {
      clearTimeout(timer);
      if (this.pending === client) this.pending = undefined;
    }
  }

  private async establish(client: OpcUaClient): Promise<Connection> {
    await client.connect(this.config.endpoint);
    if (this.stopped) throw new Error('stopped');
    const auth = this.config.auth;
    const session = await client.createSession(
      userIdentity(auth ? { username: auth.username, password: this.password ?? '' } : undefined),
    );
    if (this.stopped) throw new Error('stopped');
    const sub = this.config.subscription;
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: sub.publishingIntervalMs,
      requestedMaxKeepAliveCount: sub.maxKeepAliveCount,
      requestedLifetimeCount: sub.lifetimeCount,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 10,
    });
    const conn = this.wire(client, session, subscription);
    try {
      await this.monitor(conn);
    } catch (err) {
      await this.close(conn, 'failed');
      throw err;
    }
    this.letThrough(conn);
    return conn;
  }

  private wire(client: OpcUaClient, session: OpcUaSession, subscription: Subscription): Connection {
    let breakWith!: (reason: string) => void;
    const broken = new Promise<string>((resolve) => (breakWith = resolve));
    let lastActivity = Date.now();
    const conn: Connection = {
      client,
      session,
      subscription,
      handles: new Map(),
      namespaces: undefined,
      broken,
      breakWith: (reason) => {
        if (!conn.closing) breakWith(reason);
      },
      release: () => breakWith('closed'),
      closing: false,
      held: [],
      watchdog: setInterval(
        () => {
          const silent = Date.now() - lastActivity;
          if (silent > this.silenceLimitMs) {
            conn.breakWith(`no data and no keep-alive from the server for ${Math.round(silent / 1000)} s`);
          }
        },
        Math.max(500, Math.floor(this.silenceLimitMs / 5)),
      ),
      repairDeadline: undefined,
    };
    conn.watchdog.unref();
    const endRepairDeadline = () => {
      clearTimeout(conn.repairDeadline);
      conn.repairDeadline = undefined;
    };

    subscription.on('raw_notification', () => (lastActivity = Date.now()));
    subscription.on('received_notifications', (msg: NotificationMessage) => this.deliver(conn, msg));
    subscription.on('status_changed', (status: { value: number; name: string }) => {
      if (status.value === StatusCodes.BadTimeout.value)
        conn.breakWith('the server dropped the subscription (BadTimeout)');
    });
    subscription.on('terminated', () => conn.breakWith('the subscription was terminated'));
    client.on('connection_lost', () => {
      if (conn.closing) return;
      this.current = 'down';
      conn.held ??= [];
      this.log.warn('lost the connection to the OPC-UA server; reconnecting');
    });
    // The channel is back: re-activating or re-creating the session and the subscription takes a
    // few round trips. A repair that does not end is no repair: asyncua, for one, answers the
    // Republish of a restarted server with an empty message instead of BadMessageNotAvailable, and
    // node-opcua asks again for ever (each answer looking like a keep-alive to the watchdog). The
    // deadline is not re-armed by node-opcua's own retries, so those count against it too.
    client.on('after_reconnection', () => {
      if (conn.closing || conn.repairDeadline) return;
      const ms = this.config.connectTimeoutMs;
      conn.repairDeadline = setTimeout(
        () =>
          conn.breakWith(
            `the OPC-UA server answers again, but the session and subscription were not repaired within ${ms} ms (connectTimeoutMs)`,
          ),
        ms,
      );
      conn.repairDeadline.unref();
    });
    client.on('reconnection_attempt_has_failed', (err: Error) => {
      this.log.debug({ err: errorMessage(err) }, 'OPC-UA reconnection attempt failed');
    });
    client.on('connection_reestablished', () => {
      endRepairDeadline();
      if (conn.closing || this.stopped) return;
      lastActivity = Date.now();
      void this.repaired(conn);
    });
    client.on('close', (err?: Error | null) => {
      if (err) conn.breakWith(`the connection closed: ${errorMessage(err)}`);
    });
    return conn;
  }

  /**
   * After node-opcua's own repair: it re-created the session and the monitored items with the
   * namespace indexes of the first session, which a restarted server may have given to other
   * namespaces. Checked before any value of the repaired items is delivered; if a namespace moved,
   * the whole connection is built again with fresh resolution.
   */
  private async repaired(conn: Connection): Promise<void> {
    if (conn.namespaces) {
      let now: string[];
      try {
        now = await readNamespaceTable(conn.session);
      } catch (err) {
        conn.breakWith(
          `cannot check the OPC-UA server's namespace table after reconnecting (${errorMessage(err)})`,
        );
        return;
      }
      if (conn.closing || this.stopped) return;
      const moved = movedNamespaces(
        this.config.items.map((i) => i.nodeId),
        conn.namespaces,
        now,
      );
      if (moved.length > 0) {
        // The values held meanwhile may belong to other nodes: they are dropped with the connection.
        conn.breakWith(
          `the OPC-UA server renumbered its namespaces (${describeMoves(moved)}), so the repaired ` +
            'monitored items point at the wrong nodes',
        );
        return;
      }
    }
    if (conn.closing || this.stopped) return;
    this.current = 'up';
    this.ctx.reconnected();
    this.log.info('reconnected to the OPC-UA server; session and subscription repaired');
    this.letThrough(conn);
  }

  /** Delivers what was held back, and lets values through from now on. */
  private letThrough(conn: Connection): void {
    const held = conn.held ?? [];
    conn.held = undefined;
    for (const msg of held) this.deliver(conn, msg);
  }

  /** Creates the monitored items, grouped by identical parameters (one request per group). */
  private async monitor(conn: Connection): Promise<void> {
    const groups = new Map<string, number[]>();
    this.config.items.forEach((item, i) => {
      const key = JSON.stringify([item.samplingIntervalMs, item.queueSize, item.deadband ?? null]);
      const list = groups.get(key);
      if (list) list.push(i);
      else groups.set(key, [i]);
    });
    const nodeIds = await this.sessionNodeIds(conn);
    const failed: Reading[] = [];
    const receivedAt = Date.now();
    for (const indexes of groups.values()) {
      const first = this.config.items[indexes[0]!]!;
      const group = await conn.subscription.monitorItems(
        indexes.map((i) => ({ nodeId: nodeIds[i]!, attributeId: AttributeIds.Value })),
        {
          samplingInterval: first.samplingIntervalMs,
          queueSize: first.queueSize,
          discardOldest: true,
          ...(first.deadband ? { filter: deadbandFilter(first.deadband) } : {}),
        },
        TimestampsToReturn.Both,
      );
      group.monitoredItems.forEach((monitored, k) => {
        const item = this.config.items[indexes[k]!]!;
        const target: ItemTarget = { nodeId: item.nodeId, asset: item.asset, tag: item.tag };
        const handle = monitored.monitoringParameters.clientHandle;
        const status = monitored.statusCode;
        if (status && status.value !== StatusCodes.Good.value && status.value >>> 30 !== 0) {
          const name = statusName(status);
          this.log.warn(
            { nodeId: item.nodeId, asset: item.asset, tag: item.tag, status: name },
            `the OPC-UA server refused to monitor ${item.nodeId} (${name})${hint(name)}`,
          );
          failed.push({
            source: this.name,
            asset: item.asset,
            tag: item.tag,
            value: null,
            quality: 'bad',
            status: name,
            sourceTime: receivedAt,
            serverTime: null,
            receivedAt,
          });
          return;
        }
        conn.handles.set(handle, { target, item });
      });
    }
    if (failed.length > 0) this.ctx.readings(failed);
  }

  /**
   * Node ids as the session needs them: `nsu=<uri>;...` becomes the server's namespace index, and
   * the table it came from is kept on the connection for the check after a repair.
   */
  private async sessionNodeIds(conn: Connection): Promise<NodeIdObject[]> {
    const ids = this.config.items.map((i) => i.nodeId);
    if (!usesNamespaceUris(ids)) return this.nodeIds;
    const namespaces = await readNamespaceTable(conn.session);
    conn.namespaces = namespaces;
    return resolveAgainst(ids, namespaces).map((resolved, i) => {
      if (resolved.ok) return resolved.nodeId;
      const item = this.config.items[i]!;
      this.log.warn(
        { nodeId: item.nodeId, namespaces },
        `the OPC-UA server has no namespace ${resolved.missingUri}; ${item.asset}/${item.tag} will report BadNodeIdUnknown`,
      );
      return unknownNamespaceNodeId(resolved.missingUri);
    });
  }

  /** One publish response → one batch of readings. */
  private deliver(conn: Connection, msg: NotificationMessage): void {
    if (conn.closing || this.stopped) return;
    if (conn.held) {
      conn.held.push(msg);
      return;
    }
    const receivedAt = Date.now();
    const batch: Reading[] = [];
    for (const data of msg.notificationData ?? []) {
      const items = (data as { monitoredItems?: Array<{ clientHandle: number; value: unknown }> | null })
        .monitoredItems;
      if (!items) continue; // events and status changes are not readings
      for (const { clientHandle, value } of items) {
        const monitored = conn.handles.get(clientHandle);
        if (!monitored) {
          this.ctx.reject(
            'unknown_tag',
            `a value for monitored item ${clientHandle}, which Vigil did not ask for`,
            `clientHandle ${clientHandle}`,
          );
          continue;
        }
        const dv = value as DataValue;
        const converted = toReading(this.name, monitored.target, dv, receivedAt);
        if (converted.ok) batch.push(converted.reading);
        else this.ctx.reject(converted.reason, converted.message, converted.origin);
        if (hasOverflow(dv.statusCode)) this.warnOverflow(monitored.item, receivedAt);
      }
    }
    if (batch.length > 0) this.ctx.readings(batch);
  }

  private warnOverflow(item: OpcUaItem, now: number): void {
    const due = this.overflows.due(`${item.asset}\u0000${item.tag}`, now);
    if (!due.log) return;
    this.log.warn(
      { nodeId: item.nodeId, asset: item.asset, tag: item.tag, queueSize: item.queueSize },
      overflowMessage(item, this.config.subscription.publishingIntervalMs, due.suppressed),
    );
  }

  private async close(conn: Connection, why: string, graceMs = 3000): Promise<void> {
    if (conn.closing) return;
    conn.closing = true;
    conn.release();
    clearInterval(conn.watchdog);
    clearTimeout(conn.repairDeadline);
    this.log.debug({ why }, 'closing the OPC-UA session');
    await disconnect(conn.client, graceMs);
  }
}

function deadbandFilter(deadband: NonNullable<OpcUaItem['deadband']>) {
  return new DataChangeFilter({
    trigger: DataChangeTrigger.StatusValue,
    deadbandType: deadband.type === 'percent' ? DeadbandType.Percent : DeadbandType.Absolute,
    deadbandValue: deadband.value,
  });
}

function hint(status: string): string {
  if (status === 'BadNodeIdUnknown' || status === 'BadNodeIdInvalid') {
    return '; check the node id with `vigil opcua browse ENDPOINT`';
  }
  if (/Filter/.test(status)) return '; the node does not support this deadband (percent needs an EURange)';
  if (status === 'BadAttributeIdInvalid') return '; the node is not a variable';
  return '';
}

/** Closes a client (and its session) without waiting long for a server that may be gone. */
async function disconnect(client: OpcUaClient, graceMs = 3000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.disconnect().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}
