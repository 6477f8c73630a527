import mqtt from 'mqtt';

/**
 * Telemetry over MQTT as a plant device publishes it: JSON messages `{ts, n, temp}` on
 * `<prefix>/<asset>/telemetry` with QoS 1, `n` counting up per asset so that every message (and
 * both of its readings) can be found again upstream. The device clock can be moved
 * (`clockOffsetMs`): a device whose clock jumped an hour ahead stamps its messages an hour ahead.
 *
 * mqtt.js keeps QoS 1 messages published while the broker is away and sends them on reconnect,
 * as a device with a local buffer does; a message counts as sent once the broker acknowledged it.
 */

export const READINGS_PER_MESSAGE = 2;

export interface TelemetryDriverOptions {
  url: string;
  /** Messages per second over all assets. */
  rate: number;
  assets: number;
  topicPrefix?: string;
  clientId?: string;
}

export class TelemetryDriver {
  /** Per asset, the n of every message the broker acknowledged. */
  readonly acked = new Map<string, Set<number>>();
  /** Messages published (handed to mqtt.js), acknowledged or not. */
  published = 0;
  failures = 0;
  /** Added to every message's timestamp: the device clock's error, ms. */
  clockOffsetMs = 0;
  readonly assets: string[];
  private readonly next = new Map<string, number>();
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private sentAtStart = 0;
  private drained: Array<() => void> = [];
  private rateNow: number;

  private constructor(
    private readonly client: mqtt.MqttClient,
    private readonly options: TelemetryDriverOptions,
  ) {
    this.assets = Array.from({ length: options.assets }, (_, i) => `line-${i + 1}`);
    this.rateNow = options.rate;
  }

  static async connect(options: TelemetryDriverOptions): Promise<TelemetryDriver> {
    const client = await mqtt.connectAsync(options.url, {
      clientId:
        options.clientId ?? `chaos-telemetry-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      clean: true,
      reconnectPeriod: 200,
      connectTimeout: 5_000,
    });
    // A refused connection while the broker restarts is expected; mqtt.js keeps retrying.
    client.on('error', () => undefined);
    return new TelemetryDriver(client, options);
  }

  get topicPrefix(): string {
    return this.options.topicPrefix ?? 'plant';
  }

  get rate(): number {
    return this.rateNow;
  }

  /** Messages acknowledged by the broker. */
  get ackedMessages(): number {
    let n = 0;
    for (const s of this.acked.values()) n += s.size;
    return n;
  }

  /** Messages published and not yet acknowledged. */
  get unacked(): number {
    return this.pending;
  }

  publishOne(): void {
    const asset = this.assets[this.published % this.assets.length]!;
    this.published += 1;
    const n = (this.next.get(asset) ?? 0) + 1;
    this.next.set(asset, n);
    const payload = JSON.stringify({
      ts: Date.now() + this.clockOffsetMs,
      n,
      temp: Math.round((40 + 5 * Math.sin(n / 20)) * 100) / 100,
    });
    this.pending += 1;
    this.client.publish(`${this.topicPrefix}/${asset}/telemetry`, payload, { qos: 1 }, (err) => {
      this.pending -= 1;
      if (err) this.failures += 1;
      else {
        let set = this.acked.get(asset);
        if (!set) this.acked.set(asset, (set = new Set()));
        set.add(n);
      }
      if (this.pending === 0) for (const d of this.drained.splice(0)) d();
    });
  }

  /** Publishes at `rate` messages per second (the rate given at connect when absent) until stop(). */
  start(rate = this.rateNow): void {
    this.stopTimer();
    this.rateNow = rate;
    this.startedAt = Date.now();
    this.sentAtStart = this.published;
    this.timer = setInterval(() => {
      const due =
        Math.floor(((Date.now() - this.startedAt) * this.rateNow) / 1000) -
        (this.published - this.sentAtStart);
      for (let i = 0; i < due; i++) this.publishOne();
    }, 10);
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops publishing and waits (at most `waitMs`) for the broker to acknowledge what was sent. */
  async stop(waitMs = 30_000): Promise<void> {
    this.stopTimer();
    if (this.pending === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => this.drained.push(r)),
      new Promise<void>((r) => (timer = setTimeout(r, waitMs))),
    ]);
    // The wait is over either way: a timer left running would keep the process alive for waitMs.
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    await this.stop(5_000);
    await this.client.endAsync(true);
  }

  /** The key of every message acknowledged: `asset/n`. */
  ackedKeys(): Set<string> {
    const keys = new Set<string>();
    for (const [asset, set] of this.acked) for (const n of set) keys.add(`${asset}/${n}`);
    return keys;
  }
}
