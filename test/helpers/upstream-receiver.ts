import mqtt, { type MqttClient } from 'mqtt';
import {
  DATA_CLASSES,
  type DataClass,
  type UpstreamItem,
  type UpstreamMessage,
} from '../../runtime/forward/types.js';

/**
 * The receiving end of store-and-forward, as a plant or cloud consumer would write it: an MQTT
 * subscriber with a persistent session (clean session off, a fixed client id, QoS 1), so that
 * what the upstream broker accepted while this client was away is still delivered to it, which
 * de-duplicates by `id` and checks the order by (store, class, seq) that
 * docs/STORE-AND-FORWARD.md promises. Used by the store-and-forward tests and bench/soak.ts.
 */

export interface UpstreamReceiverOptions {
  /** Upstream broker URL. */
  url: string;
  /** upstream.topicPrefix of the daemon; default vigil. */
  topicPrefix?: string;
  /** Client id of the persistent session; default one of its own per receiver. */
  clientId?: string;
  /** Delay between reconnect attempts while the broker is away (ms). */
  reconnectPeriodMs?: number;
}

/** One item as first received, with the message it came in. */
export interface ReceivedItem {
  device: string;
  store: string;
  cls: DataClass;
  item: UpstreamItem;
  /** When this receiver first got it (ms since the epoch). */
  receivedAt: number;
  /** When the daemon sent the message it first came in (its `sentAt`, ms since the epoch). */
  sentAt: number;
}

export interface ReceiverCheck {
  /** MQTT messages received, resends included. */
  messages: number;
  /** Items received, resends included. */
  items: number;
  /** Distinct ids. */
  unique: number;
  /** Items received again with an id already seen (resends: expected, and harmless after de-dup). */
  duplicates: number;
  /** Distinct ids per class. */
  perClass: Record<DataClass, number>;
  /**
   * Items whose seq, in the order first received, was not above every seq seen before in their
   * (store, class): rows delivered out of order. Must be empty.
   */
  orderViolations: string[];
  /**
   * Missing seq ranges between the distinct seqs received per (store, class), lowest first: rows
   * never delivered (or evicted under a quota, which the test knows about).
   */
  gaps: Array<{ store: string; cls: DataClass; from: number; to: number }>;
  /**
   * Messages that break the message contract (schema, class, first/last, ascending seqs, topic),
   * and ids received again with other content. Must be empty.
   */
  malformed: string[];
}

let receivers = 0;

export class UpstreamReceiver {
  private readonly byId = new Map<string, ReceivedItem>();
  /** Distinct items in the order first received. */
  private readonly firstSeen: ReceivedItem[] = [];
  /** Highest seq first received so far, per `${store}\u0000${class}`. */
  private readonly highest = new Map<string, number>();
  private readonly orderViolations: string[] = [];
  private readonly malformed: string[] = [];
  private messages = 0;
  private itemsTotal = 0;
  private duplicateItems = 0;
  private readonly listeners = new Set<() => void>();

  private constructor(
    private readonly client: MqttClient,
    readonly topicPrefix: string,
  ) {}

  /** Connects, subscribes to `<prefix>/+/upstream/#` with QoS 1, and resolves once the broker granted it. */
  static async start(options: UpstreamReceiverOptions): Promise<UpstreamReceiver> {
    const prefix = options.topicPrefix ?? 'vigil';
    const client = await mqtt.connectAsync(options.url, {
      clientId: options.clientId ?? `upstream-receiver-${process.pid}-${++receivers}`,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: options.reconnectPeriodMs ?? 200,
      connectTimeout: 5_000,
    });
    const receiver = new UpstreamReceiver(client, prefix);
    client.on('message', (topic, payload) => receiver.onMessage(topic, payload));
    // A refused connection while the broker restarts is expected; mqtt.js keeps retrying.
    client.on('error', () => undefined);
    const granted = await client.subscribeAsync(`${prefix}/+/upstream/#`, { qos: 1 });
    if (granted.some((g) => g.qos !== 1))
      throw new Error(`the upstream broker granted QoS ${granted.map((g) => g.qos).join(',')} instead of 1`);
    return receiver;
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Distinct items of one class (or all), in the order first received. */
  items(cls?: DataClass): ReceivedItem[] {
    return cls ? this.firstSeen.filter((r) => r.cls === cls) : [...this.firstSeen];
  }

  /** Distinct items received so far, of one class or all. */
  count(cls?: DataClass): number {
    if (!cls) return this.firstSeen.length;
    let n = 0;
    for (const r of this.firstSeen) if (r.cls === cls) n++;
    return n;
  }

  /** Resolves once `predicate` holds (checked on every message), or rejects after `timeoutMs`. */
  until(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(`upstream receiver: timed out waiting for ${what} (have ${this.firstSeen.length} items)`),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
    });
  }

  check(): ReceiverCheck {
    const perClass = Object.fromEntries(DATA_CLASSES.map((c) => [c, 0])) as Record<DataClass, number>;
    const seqs = new Map<string, { store: string; cls: DataClass; seqs: number[] }>();
    for (const r of this.firstSeen) {
      perClass[r.cls] += 1;
      const key = `${r.store}\u0000${r.cls}`;
      let s = seqs.get(key);
      if (!s) seqs.set(key, (s = { store: r.store, cls: r.cls, seqs: [] }));
      s.seqs.push(r.item.seq);
    }
    const gaps: ReceiverCheck['gaps'] = [];
    for (const { store, cls, seqs: list } of seqs.values()) {
      list.sort((a, b) => a - b);
      for (let i = 1; i < list.length; i++) {
        if (list[i]! > list[i - 1]! + 1) gaps.push({ store, cls, from: list[i - 1]! + 1, to: list[i]! - 1 });
      }
    }
    return {
      messages: this.messages,
      items: this.itemsTotal,
      unique: this.firstSeen.length,
      duplicates: this.duplicateItems,
      perClass,
      orderViolations: [...this.orderViolations],
      gaps,
      malformed: [...this.malformed],
    };
  }

  async stop(): Promise<void> {
    this.listeners.clear();
    await this.client.endAsync(true);
  }

  private onMessage(topic: string, payload: Buffer): void {
    this.messages += 1;
    let msg: UpstreamMessage;
    try {
      msg = JSON.parse(payload.toString('utf8')) as UpstreamMessage;
    } catch {
      this.malformed.push(`${topic}: not JSON`);
      return;
    }
    const problem = this.contractProblem(topic, msg);
    if (problem) {
      this.malformed.push(`${topic}: ${problem}`);
      return;
    }
    const now = Date.now();
    const sentAt = Date.parse(msg.sentAt);
    for (const item of msg.items) {
      this.itemsTotal += 1;
      const seen = this.byId.get(item.id);
      if (seen) {
        this.duplicateItems += 1;
        if (JSON.stringify(seen.item) !== JSON.stringify(item))
          this.malformed.push(`id ${item.id} received again with other content`);
        continue;
      }
      const received: ReceivedItem = {
        device: msg.device,
        store: msg.store,
        cls: msg.class,
        item,
        receivedAt: now,
        sentAt,
      };
      this.byId.set(item.id, received);
      this.firstSeen.push(received);
      const key = `${msg.store}\u0000${msg.class}`;
      const top = this.highest.get(key) ?? 0;
      if (item.seq <= top)
        this.orderViolations.push(`${msg.class} seq ${item.seq} (id ${item.id}) arrived after seq ${top}`);
      else this.highest.set(key, item.seq);
    }
    for (const l of [...this.listeners]) l();
  }

  private contractProblem(topic: string, msg: UpstreamMessage): string | undefined {
    if (msg.schema !== 'vigil.upstream.v1') return `schema ${String(msg.schema)}`;
    if (!(DATA_CLASSES as readonly string[]).includes(msg.class)) return `class ${String(msg.class)}`;
    if (topic !== `${this.topicPrefix}/${msg.device}/upstream/${msg.class}`)
      return `topic does not match device ${msg.device} and class ${msg.class}`;
    if (typeof msg.store !== 'string' || msg.store.length === 0) return 'no store id';
    if (!Number.isFinite(Date.parse(msg.sentAt))) return `sentAt ${String(msg.sentAt)} is not a time`;
    if (!Array.isArray(msg.items) || msg.items.length === 0) return 'no items';
    if (msg.items[0]!.seq !== msg.first || msg.items.at(-1)!.seq !== msg.last)
      return `first/last ${msg.first}/${msg.last} do not match the items`;
    for (let i = 0; i < msg.items.length; i++) {
      const item = msg.items[i]!;
      if (typeof item.id !== 'string' || !Number.isInteger(item.seq)) return `item ${i} without id or seq`;
      if (i > 0 && item.seq <= msg.items[i - 1]!.seq) return `item seqs not ascending at ${i}`;
      if (msg.class === 'readings' && item.id !== `${msg.store}/${item.seq}`)
        return `reading id ${item.id} is not <store>/<seq>`;
    }
    return undefined;
  }
}
