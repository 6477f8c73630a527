/**
 * Store-and-forward soak (issue 5): `vigil run` SIGKILLed at random moments while readings flow,
 * then a check that every reading published reached the upstream broker exactly once after
 * de-duplication by id, in order. Measures and reports; the CLI exits 1 when a reading was lost,
 * duplicated or reordered, so that it can gate a release.
 *
 * The setup, all on loopback:
 *   harness publisher --QoS 1--> Mosquitto "input" <--mqtt-json source, persistent session-- vigil run
 *   vigil run --upstream forwarder, QoS 1--> Mosquitto "upstream" --QoS 1, persistent session--> receiver
 * The publisher sends numbered JSON readings (`{"ts", "n", "half"}`, n counting up per asset) to
 * `soak/<asset>/telemetry` at a steady rate; at seeded random moments the daemon is SIGKILLed
 * (during its start too) and started again at once. At the end the publisher stops, the daemon
 * drains the input broker's queue and its upstream backlog, and the receiver's readings are
 * compared with what was published by natural key (asset, tag, value).
 *
 * The input broker runs with `max_queued_messages 0` and `max_queued_bytes 0` (no limit): by
 * default Mosquitto keeps at most 1000 messages for a disconnected persistent session and drops
 * the rest, which is the broker's loss, not Vigil's. `max_inflight_messages` stays at its default
 * (20): it only bounds how many unacknowledged messages the broker sends Vigil at once.
 *
 * Run: npm run build && node dist/bench/soak.js [--kills N] [--duration S] [--rate MSG_PER_S]
 *        [--assets N] [--seed N] [--min-gap MS] [--synchronous full|normal] [--out FILE.json]
 *   --kills N       SIGKILLs to deliver (default 100)
 *   --duration S    seconds of publishing; the kills fall at random moments within it
 *                   (default 3 s per kill)
 *   --rate R        messages per second over all assets (default 50); each message holds 2 readings
 *   --assets N      assets the messages are spread over (default 4)
 *   --seed N        seed of the kill moments (default 1)
 *   --min-gap MS    least time between two kills (default 400)
 *   --synchronous   store.synchronous of the daemon (default full)
 *   --qos 0|1       QoS of the daemon's subscription (default 1); 0 must show losses, which
 *                   checks that the harness sees them
 *   --settle S      seconds to wait for delivery after publishing stopped (default 120)
 * Needs Mosquitto (apt-get install mosquitto) and a built dist/ (npm run build).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { freePort } from '../test/helpers/ports.js';
import { UpstreamReceiver, type ReceiverCheck } from '../test/helpers/upstream-receiver.js';
import {
  DaemonProcess,
  UNBOUNDED_QUEUE,
  VIGIL_CLI,
  benchUpstream,
  type DaemonStatus,
} from './daemon-process.js';
import { machine } from './machine.js';

// The daemon process, its status and the host description live in modules of their own (the
// chaos drills use them too); the store-and-forward tests and benchmarks import them from here.
export { DaemonProcess, UNBOUNDED_QUEUE, machine, type DaemonStatus };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A small seeded PRNG (mulberry32), so that a run's kill moments can be repeated. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rows waiting upstream per class from the status API; undefined when it has no upstream section. */
export function backlogOf(status: DaemonStatus | undefined): Record<string, number> | undefined {
  const classes = status?.upstream?.classes;
  if (!classes) return undefined;
  return Object.fromEntries(Object.entries(classes).map(([c, v]) => [c, v.rows]));
}

// ---------------------------------------------------------------------------------------------
// The telemetry the harness publishes.

/** Publishes numbered JSON readings at a steady rate with QoS 1, and remembers each one acknowledged. */
export class ReadingPublisher {
  /** Per asset, the n of every message the broker acknowledged. */
  readonly acked = new Map<string, number[]>();
  failures = 0;
  private readonly next = new Map<string, number>();
  private sent = 0;
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private drained: (() => void) | undefined;

  private constructor(
    private readonly client: mqtt.MqttClient,
    readonly assets: string[],
    readonly rate: number,
    readonly topicPrefix: string,
  ) {}

  static async connect(
    url: string,
    assets: string[],
    rate: number,
    topicPrefix = 'soak',
  ): Promise<ReadingPublisher> {
    const client = await mqtt.connectAsync(url, { clientId: `soak-publisher-${process.pid}`, clean: true });
    return new ReadingPublisher(client, assets, rate, topicPrefix);
  }

  /** Messages acknowledged by the broker so far. */
  get ackedMessages(): number {
    let n = 0;
    for (const list of this.acked.values()) n += list.length;
    return n;
  }

  /** Publishes one message for the next asset in turn. */
  publishOne(): void {
    const asset = this.assets[this.sent % this.assets.length]!;
    this.sent += 1;
    const n = (this.next.get(asset) ?? 0) + 1;
    this.next.set(asset, n);
    const payload = JSON.stringify({ ts: Date.now(), n, half: n + 0.5 });
    this.pending += 1;
    this.client.publish(`${this.topicPrefix}/${asset}/telemetry`, payload, { qos: 1 }, (err) => {
      this.pending -= 1;
      if (err) this.failures += 1;
      else {
        let list = this.acked.get(asset);
        if (!list) this.acked.set(asset, (list = []));
        list.push(n);
      }
      if (this.pending === 0) this.drained?.();
    });
  }

  /** Publishes `count` messages at once (a burst). */
  burst(count: number): void {
    for (let i = 0; i < count; i++) this.publishOne();
  }

  /** Starts publishing at `rate` messages per second. */
  start(): void {
    this.startedAt = Date.now();
    const base = this.sent;
    this.timer = setInterval(() => {
      const due = Math.floor(((Date.now() - this.startedAt) * this.rate) / 1000) - (this.sent - base);
      for (let i = 0; i < due; i++) this.publishOne();
    }, 10);
  }

  /** Stops publishing and waits until the broker acknowledged everything sent. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.pending > 0) await new Promise<void>((r) => (this.drained = r));
  }

  async close(): Promise<void> {
    await this.stop();
    await this.client.endAsync();
  }

  /** The natural key of every reading acknowledged: `asset/tag/value`. */
  expectedKeys(): Set<string> {
    const keys = new Set<string>();
    for (const [asset, list] of this.acked)
      for (const n of list) {
        keys.add(readingKey(asset, 'n', n));
        keys.add(readingKey(asset, 'half', n + 0.5));
      }
    return keys;
  }
}

export const readingKey = (asset: string, tag: string, value: unknown) => `${asset}/${tag}/${String(value)}`;

/** The mqtt-json source of the harness's readings. */
export function soakSource(url: string, topicPrefix = 'soak', qos: 0 | 1 = 1): Record<string, unknown> {
  return {
    type: 'mqtt-json',
    url,
    clientId: 'vigil-soak-line1',
    qos,
    reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
    subscriptions: [
      {
        topic: `${topicPrefix}/+/telemetry`,
        asset: '{1}',
        tags: { n: 'n', half: 'half' },
        timestampField: 'ts',
      },
    ],
  };
}

/** What arrived upstream compared with what was published, by natural key. */
export interface DeliveryVerdict {
  expected: number;
  /** Distinct readings (by id) received upstream. */
  delivered: number;
  /** Published readings never received. */
  lost: number;
  lostSample: string[];
  /** Readings received under two or more ids (stored twice): duplicates that survive de-dup by id. */
  duplicatesAfterDedup: number;
  duplicateSample: string[];
  /** Readings received that were never published. */
  extra: number;
  extraSample: string[];
  /** Per (store, asset, tag), values not increasing in seq order: readings stored out of order. */
  orderViolations: string[];
}

export function verifyDelivery(receiver: UpstreamReceiver, expected: Set<string>): DeliveryVerdict {
  const seen = new Map<string, number>();
  const lastValue = new Map<string, number>();
  const orderViolations: string[] = [];
  const items = receiver
    .items('readings')
    .sort((a, b) => (a.store === b.store ? a.item.seq - b.item.seq : a.store < b.store ? -1 : 1));
  for (const { store, item } of items) {
    const r = item as { asset: string; tag: string; value: number | null };
    const key = readingKey(r.asset, r.tag, r.value);
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const series = `${store}/${r.asset}/${r.tag}`;
    const prev = lastValue.get(series);
    if (typeof r.value === 'number') {
      if (prev !== undefined && r.value <= prev && orderViolations.length < 20)
        orderViolations.push(`${series}: ${r.value} (seq ${item.seq}) after ${prev}`);
      lastValue.set(series, r.value);
    }
  }
  const lost = [...expected].filter((k) => !seen.has(k));
  const dups = [...seen].filter(([, c]) => c > 1);
  const extra = [...seen.keys()].filter((k) => !expected.has(k));
  return {
    expected: expected.size,
    delivered: items.length,
    lost: lost.length,
    lostSample: lost.slice(0, 10),
    duplicatesAfterDedup: dups.reduce((n, [, c]) => n + c - 1, 0),
    duplicateSample: dups.slice(0, 10).map(([k, c]) => `${k} x${c}`),
    extra: extra.length,
    extraSample: extra.slice(0, 10),
    orderViolations,
  };
}

// ---------------------------------------------------------------------------------------------
// The soak.

export interface SoakOptions {
  kills: number;
  durationSeconds: number;
  /** Messages per second over all assets (2 readings each). */
  rate: number;
  assets: number;
  seed: number;
  /** Least time between two kills (ms). */
  minGapMs: number;
  synchronous: 'full' | 'normal';
  /**
   * QoS of the daemon's subscription; default 1. With 0 the broker keeps nothing for Vigil while
   * it is down, so the soak must report losses: a check that the harness can see them.
   */
  sourceQos?: 0 | 1;
  /** How long to wait, after publishing stopped, for everything to arrive upstream (ms). */
  settleTimeoutMs: number;
  /** Progress lines; default none. */
  say?: (line: string) => void;
}

export interface SoakResult {
  machine: ReturnType<typeof machine>;
  options: Omit<SoakOptions, 'say'>;
  kills: number;
  /** Kills that hit a daemon still starting (before /readyz answered 200). */
  killsBeforeReady: number;
  /** Processes started. */
  lives: number;
  published: { messages: number; readings: number; failures: number };
  verdict: DeliveryVerdict;
  receiver: ReceiverCheck;
  /** Spawn to /readyz 200, per life that got there (ms). */
  restartMs: { count: number; p50: number; p95: number; max: number };
  /** From the end of publishing until everything had arrived and the backlog was empty (ms). */
  settleMs: number;
  settled: boolean;
  /** Status of the last life once settled: the upstream section. */
  finalUpstream: unknown;
  /** vigil_upstream_backlog_rows{class="readings"} of the last life once settled. */
  finalBacklogMetric: number;
  /** vigil_ingest_duplicates_total of the last life (redeliveries it skipped). */
  lastLifeIngestDuplicates: number;
  /**
   * Redelivered messages recognised as already stored, summed over the lives as last sampled
   * (every 250 ms; a lower bound, since a kill loses what came after the last sample).
   */
  ingestDuplicatesSeen: number;
  /** SIGTERM of the last life. */
  finalExit: { code: number | null; signal: NodeJS.Signals | null; ms: number };
  /** Error-level log lines of all lives (a sample). */
  daemonErrors: string[];
  wallSeconds: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Kill moments (ms after publishing starts): seeded, at least minGap apart, within the duration. */
export function killSchedule(kills: number, durationMs: number, minGapMs: number, seed: number): number[] {
  const rnd = seededRandom(seed);
  const mean = durationMs / (kills + 1);
  const gap = Math.min(minGapMs, mean / 2);
  const at: number[] = [];
  let t = 0;
  for (let i = 0; i < kills; i++) {
    t += gap + rnd() * 2 * (mean - gap);
    at.push(t);
  }
  // Scale so that the last kill still falls within the run, keeping the least gap.
  const scale = Math.min(1, (durationMs - gap) / (at.at(-1) ?? 1));
  return at.map((x) => x * scale);
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const say = options.say ?? (() => undefined);
  const t0 = Date.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-soak-'));
  const cleanups: Array<() => Promise<unknown>> = [];
  const lives: DaemonProcess[] = [];
  /** Per life, vigil_ingest_duplicates_total{source="line1"} when last sampled. */
  const ingestDuplicates = new Map<DaemonProcess, number>();
  try {
    const input = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
    cleanups.push(() => input.stop());
    const upstream = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
    cleanups.push(() => upstream.stop());
    const receiver = await UpstreamReceiver.start({ url: upstream.url });
    cleanups.push(() => receiver.stop());

    const httpPort = await freePort();
    const configFile = path.join(dir, 'vigil.yaml');
    await writeFile(
      configFile,
      stringify({
        version: 1,
        device: { id: 'soak-gw' },
        log: { level: 'info' },
        http: { port: httpPort },
        mqtt: { url: input.url },
        store: { path: path.join(dir, 'vigil.db'), synchronous: options.synchronous },
        upstream: benchUpstream(upstream.url),
        shutdown: { timeoutSeconds: 10 },
        models: {},
        pipelines: {},
        sources: { line1: soakSource(input.url, 'soak', options.sourceQos ?? 1) },
      }),
    );
    const opsUrl = `http://127.0.0.1:${httpPort}`;
    const spawnDaemon = () => {
      const d = new DaemonProcess(configFile, opsUrl);
      lives.push(d);
      // Measures the restart time in the background, then samples the redeliveries it recognised
      // (a counter that dies with the process: what a kill cut short is not seen).
      void d.waitReady().then(async (ok) => {
        while (ok && d.alive) {
          const text = await d.metrics().catch(() => '');
          if (text)
            ingestDuplicates.set(d, sampleValue(text, 'vigil_ingest_duplicates_total', { source: 'line1' }));
          await sleep(250);
        }
      });
      return d;
    };
    cleanups.push(async () => {
      for (const d of lives) await d.kill();
    });

    // The first life creates the store and the source's persistent session: only then can the
    // broker keep what is published while the daemon is down.
    let daemon = spawnDaemon();
    if (!(await daemon.waitReady())) throw new Error(`vigil run did not become ready:\n${daemon.logs()}`);
    for (const deadline = Date.now() + 20_000; ;) {
      const s = await daemon.status();
      if (s?.telemetry?.line1?.state === 'up') break;
      if (Date.now() > deadline) throw new Error(`source line1 did not come up:\n${daemon.logs()}`);
      await sleep(50);
    }

    const assets = Array.from({ length: options.assets }, (_, i) => `pump-${i + 1}`);
    const publisher = await ReadingPublisher.connect(input.url, assets, options.rate);
    cleanups.push(() => publisher.close());
    const durationMs = options.durationSeconds * 1000;
    const schedule = killSchedule(options.kills, durationMs, options.minGapMs, options.seed);
    say(
      `soak: ${options.kills} SIGKILLs over ${options.durationSeconds} s at ${options.rate} msg/s ` +
        `(${options.rate * 2} readings/s), seed ${options.seed}`,
    );
    const start = Date.now();
    publisher.start();
    let kills = 0;
    let killsBeforeReady = 0;
    for (const at of schedule) {
      const wait = start + at - Date.now();
      if (wait > 0) await sleep(wait);
      if (daemon.readyAt === undefined) killsBeforeReady += 1;
      await daemon.kill();
      kills += 1;
      daemon = spawnDaemon();
      if (kills % 10 === 0)
        say(
          `  ${kills} kills, ${publisher.ackedMessages} messages published, ` +
            `${receiver.count('readings')} readings delivered`,
        );
    }
    const rest = start + durationMs - Date.now();
    if (rest > 0) await sleep(rest);
    await publisher.stop();
    const publishedAt = Date.now();
    const expected = publisher.expectedKeys();
    say(`soak: publishing stopped: ${publisher.ackedMessages} messages; waiting for delivery`);

    if (!(await daemon.waitReady()))
      throw new Error(`the last vigil run did not become ready:\n${daemon.logs()}`);
    let settled = false;
    let status: DaemonStatus | undefined;
    while (Date.now() - publishedAt < options.settleTimeoutMs) {
      status = await daemon.status();
      const backlog = backlogOf(status);
      if (
        receiver.count('readings') >= expected.size &&
        backlog !== undefined &&
        Object.values(backlog).every((n) => n === 0)
      ) {
        settled = true;
        break;
      }
      await sleep(200);
    }
    const settleMs = Date.now() - publishedAt;
    // Resends may trail the last acknowledgement a little; they change nothing after de-dup.
    await sleep(300);
    const metrics = await daemon.metrics().catch(() => '');
    const metric = (name: string, labels: Record<string, string>) => sampleValue(metrics, name, labels);
    const finalExit = await daemon.terminate();
    const readyTimes = lives
      .filter((d) => d.readyAt !== undefined)
      .map((d) => d.readyAt! - d.spawnedAt)
      .sort((a, b) => a - b);
    return {
      machine: machine(),
      options: { ...options, say: undefined } as Omit<SoakOptions, 'say'>,
      kills,
      killsBeforeReady,
      lives: lives.length,
      published: {
        messages: publisher.ackedMessages,
        readings: expected.size,
        failures: publisher.failures,
      },
      verdict: verifyDelivery(receiver, expected),
      receiver: receiver.check(),
      restartMs: {
        count: readyTimes.length,
        p50: quantile(readyTimes, 0.5),
        p95: quantile(readyTimes, 0.95),
        max: readyTimes.at(-1) ?? 0,
      },
      settleMs,
      settled,
      finalUpstream: status?.upstream,
      finalBacklogMetric: metric('vigil_upstream_backlog_rows', { class: 'readings' }),
      lastLifeIngestDuplicates: metric('vigil_ingest_duplicates_total', { source: 'line1' }),
      ingestDuplicatesSeen: lives.reduce((n, d) => n + (ingestDuplicates.get(d) ?? 0), 0),
      finalExit,
      daemonErrors: lives.flatMap((d, i) => d.errorLines().map((l) => `life ${i + 1}: ${l}`)).slice(0, 50),
      wallSeconds: Math.round((Date.now() - t0) / 100) / 10,
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** One sample of a Prometheus metric with these labels (0 when absent). */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return 0;
}

/** Whether a soak found what it must never find. */
export function soakFailures(r: SoakResult): string[] {
  const f: string[] = [];
  if (!r.settled) f.push(`not everything arrived within ${r.options.settleTimeoutMs} ms of the end`);
  if (r.verdict.lost > 0) f.push(`${r.verdict.lost} readings lost, e.g. ${r.verdict.lostSample.join(', ')}`);
  if (r.verdict.duplicatesAfterDedup > 0)
    f.push(
      `${r.verdict.duplicatesAfterDedup} duplicates after de-dup, e.g. ${r.verdict.duplicateSample.join(', ')}`,
    );
  if (r.verdict.extra > 0)
    f.push(`${r.verdict.extra} readings never published, e.g. ${r.verdict.extraSample.join(', ')}`);
  if (r.verdict.orderViolations.length > 0) f.push(`out of order: ${r.verdict.orderViolations.join('; ')}`);
  if (r.receiver.orderViolations.length > 0)
    f.push(`seq order: ${r.receiver.orderViolations.slice(0, 5).join('; ')}`);
  if (r.receiver.gaps.length > 0) f.push(`seq gaps: ${JSON.stringify(r.receiver.gaps.slice(0, 5))}`);
  if (r.receiver.malformed.length > 0) f.push(`malformed: ${r.receiver.malformed.slice(0, 5).join('; ')}`);
  if (r.published.failures > 0) f.push(`${r.published.failures} publishes failed at the input broker`);
  if (r.finalExit.code !== 0)
    f.push(`the last daemon exited with ${r.finalExit.code} (${r.finalExit.signal})`);
  return f;
}

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const kills = Number(arg(args, '--kills') ?? 100);
  const synchronous = (arg(args, '--synchronous') ?? 'full') as 'full' | 'normal';
  const options: SoakOptions = {
    kills,
    durationSeconds: Number(arg(args, '--duration') ?? kills * 3),
    rate: Number(arg(args, '--rate') ?? 50),
    assets: Number(arg(args, '--assets') ?? 4),
    seed: Number(arg(args, '--seed') ?? 1),
    minGapMs: Number(arg(args, '--min-gap') ?? 400),
    synchronous,
    sourceQos: arg(args, '--qos') === '0' ? 0 : 1,
    settleTimeoutMs: Number(arg(args, '--settle') ?? 120) * 1000,
    say: (l) => console.log(l),
  };
  if (!existsSync(VIGIL_CLI)) throw new Error(`${VIGIL_CLI} not found: run npm run build first`);
  const r = await runSoak(options);
  const failures = soakFailures(r);
  const m = r.machine;
  console.log('');
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}, Node ${m.node}`);
  console.log('');
  console.log('| measure | value |');
  console.log('|---|---|');
  const row = (k: string, v: string | number) => console.log(`| ${k} | ${v} |`);
  row('SIGKILLs (before ready)', `${r.kills} (${r.killsBeforeReady})`);
  row(
    'duration / rate',
    `${r.options.durationSeconds} s / ${r.options.rate} msg/s (${r.options.rate * 2} readings/s)`,
  );
  row('store.synchronous', r.options.synchronous);
  row('messages published (QoS 1, acked by broker)', r.published.messages);
  row('readings published', r.published.readings);
  row('readings delivered (distinct ids)', r.verdict.delivered);
  const acked = (r.finalUpstream as DaemonStatus['upstream'])?.classes?.readings?.ackedSeq;
  row('readings stored (last seq acknowledged upstream)', acked ?? 'n/a');
  row('items received incl. resends', r.receiver.items);
  row('resent items (dropped by de-dup)', r.receiver.duplicates);
  row('redelivered messages recognised as stored (sampled, at least)', r.ingestDuplicatesSeen);
  row('duplicates after de-dup', r.verdict.duplicatesAfterDedup);
  row('lost', r.verdict.lost);
  row('never published', r.verdict.extra);
  row('order violations', r.verdict.orderViolations.length + r.receiver.orderViolations.length);
  row(
    'restart to ready p50 / p95 / max (ms)',
    `${r.restartMs.p50} / ${r.restartMs.p95} / ${r.restartMs.max}`,
  );
  row('drain after publishing stopped (ms)', r.settleMs);
  row('final SIGTERM exit (code, ms)', `${r.finalExit.code}, ${r.finalExit.ms}`);
  row('wall time (s)', r.wallSeconds);
  console.log('');
  console.log(JSON.stringify(r, null, 2));
  const out = arg(args, '--out');
  if (out) await writeFile(out, JSON.stringify(r, null, 2) + '\n');
  if (failures.length > 0) {
    console.error('\nSOAK FAILED:\n  ' + failures.join('\n  '));
    process.exitCode = 1;
  } else console.log('\nsoak passed: every reading delivered exactly once after de-dup, in order');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  });
}
