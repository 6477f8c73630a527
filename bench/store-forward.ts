/**
 * Store-and-forward benchmark (issue 5). Measures, never asserts, in one run on one machine:
 *  a. the raw better-sqlite3 insert rate into the readings table (WAL, batched transactions of
 *     1, 100 and 1000 rows), with synchronous FULL and NORMAL: the price of an fsync per commit;
 *  b. readings accepted per second through Vigil's TelemetryIngest + Store with synchronous FULL:
 *     bulk accept(), acceptDurable() one message at a time (what the MQTT JSON source does), and
 *     acceptDurable() of many messages in one turn (group commit);
 *  c. the MQTT JSON source end to end with ack-after-commit: a backlog of QoS 1 messages queued
 *     by Mosquitto for the source's persistent session, drained into the store (FULL and NORMAL);
 *  d. the upstream drain rate: a stored backlog forwarded by UpstreamForwarder to a local
 *     Mosquitto (QoS 1, a QoS 1 subscriber on the other side), no rate limit;
 *  e. disk bytes per stored reading: the readings table and its indexes (dbstat) per row, and
 *     the file size after VACUUM per row.
 * Run: npm run build && node dist/bench/store-forward.js [--rows N] [--messages N] [--rounds N] [--out FILE.json]
 * (--rows: readings per insert run, drain and disk figure, default 200k; --messages: QoS 1 messages
 * of the source backlog, default 5000; --rounds: runs of each raw insert and source figure, the median shown.)
 * Prints a Markdown table and the JSON of every figure, with the machine it ran on.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { MqttJsonSource } from '../adapters/mqtt/json-source.js';
import { MqttJsonSource as MqttJsonSourceSchema } from '../runtime/config/sources/mqtt.js';
import { StoreConfig, TelemetryConfig } from '../runtime/config/schema.js';
import { UpstreamConfig } from '../runtime/config/upstream.js';
import { UpstreamForwarder } from '../runtime/forward/upstream.js';
import { silentLogger } from '../runtime/log.js';
import { Metrics } from '../runtime/ops/metrics.js';
import type { SourceContext } from '../runtime/pipeline/source.js';
import { MIGRATIONS } from '../runtime/store/schema.js';
import { Store } from '../runtime/store/store.js';
import { ReadingGate } from '../runtime/telemetry/gate.js';
import { TelemetryIngest } from '../runtime/telemetry/ingest.js';
import type { Reading } from '../runtime/telemetry/reading.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { UNBOUNDED_QUEUE, machine } from './soak.js';

const say = (l: string) => process.stdout.write(l + '\n');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const log = silentLogger();
type Sync = 'full' | 'normal';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function makeReadings(n: number, from = 0): Reading[] {
  const now = Date.now();
  const out: Reading[] = [];
  for (let i = from; i < from + n; i++) {
    out.push({
      source: 'line1',
      asset: `pump-${i % 10}`,
      tag: ['temperature', 'pressure', 'vibration_rms', 'current', 'speed'][i % 5]!,
      value: Math.round(Math.random() * 1e6) / 1e3,
      quality: 'good',
      sourceTime: now + i,
      receivedAt: now + i,
    });
  }
  return out;
}

async function until(what: string, check: () => boolean, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(2);
  }
}

// ---------------------------------------------------------------------------------------------
// a. raw better-sqlite3

interface RawFigure {
  synchronous: Sync;
  batch: number;
  rows: number;
  rowsPerSecond: number;
  usPerCommit: number;
}

/** The median of `rounds` runs by rows per second: other processes share the disk and the cores. */
function rawMedian(dir: string, sync: Sync, batch: number, rows: number, rounds: number): RawFigure {
  const runs = Array.from({ length: rounds }, (_, i) =>
    rawInsert(path.join(dir, `raw-${sync}-${batch}-${i}.db`), sync, batch, rows),
  ).sort((a, b) => a.rowsPerSecond - b.rowsPerSecond);
  return runs[Math.floor(runs.length / 2)]!;
}

function rawInsert(file: string, sync: Sync, batch: number, rows: number): RawFigure {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}`);
  for (const m of MIGRATIONS) db.exec(m.sql);
  const insert = db.prepare(
    'INSERT INTO readings (source, asset, tag, value, quality, status, source_time, server_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const tx = db.transaction((list: Reading[]) => {
    for (const r of list)
      insert.run(r.source, r.asset, r.tag, r.value, r.quality, null, r.sourceTime, null, r.receivedAt);
  });
  const data = makeReadings(rows);
  const t0 = performance.now();
  for (let i = 0; i < rows; i += batch) tx(data.slice(i, i + batch));
  const s = (performance.now() - t0) / 1000;
  db.close();
  return {
    synchronous: sync,
    batch,
    rows,
    rowsPerSecond: Math.round(rows / s),
    usPerCommit: Math.round(((s * 1e6) / Math.ceil(rows / batch)) * 10) / 10,
  };
}

// ---------------------------------------------------------------------------------------------
// b. TelemetryIngest + Store

function openStore(file: string, sync: Sync, metrics = new Metrics({ processMetrics: false })): Store {
  return Store.open(file, StoreConfig.parse({ path: file, synchronous: sync }), log, { metrics });
}

function newIngest(store: Store): TelemetryIngest {
  const t = TelemetryConfig.parse({});
  return new TelemetryIngest({
    sink: store,
    metrics: new Metrics({ processMetrics: false }),
    log,
    batchSize: t.batchSize,
    flushIntervalMs: t.flushIntervalMs,
  });
}

interface IngestFigures {
  bulkReadingsPerSecond: number;
  durableSerial: {
    messages: number;
    readingsPerMessage: number;
    messagesPerSecond: number;
    readingsPerSecond: number;
  };
  durableGrouped: { messages: number; perTurn: number; readingsPerSecond: number };
}

async function ingestBench(dir: string, rows: number): Promise<IngestFigures> {
  const gate = new ReadingGate({}, TelemetryConfig.parse({}));
  const perMessage = 10;

  // Bulk: batches of 100, as a polling source hands them over, until all are committed.
  let store = openStore(path.join(dir, 'ingest-bulk.db'), 'full');
  let ingest = newIngest(store);
  const data = makeReadings(rows);
  let t0 = performance.now();
  for (let i = 0; i < rows; i += 100) ingest.accept('line1', data.slice(i, i + 100), gate, log);
  ingest.flush();
  await until('bulk readings stored', () => ingest.pendingCount === 0);
  const bulk = Math.round(rows / ((performance.now() - t0) / 1000));
  ingest.close();
  store.close();

  // Durable, one message at a time, each with its mark: the MQTT JSON source's pattern.
  store = openStore(path.join(dir, 'ingest-durable.db'), 'full');
  ingest = newIngest(store);
  const serialMessages = 3_000;
  const msgs = Array.from({ length: serialMessages }, (_, i) => makeReadings(perMessage, i * perMessage));
  t0 = performance.now();
  for (let i = 0; i < serialMessages; i++) {
    await ingest.acceptDurable('line1', msgs[i]!, gate, log, {
      key: String((i % 65535) + 1),
      hash: `h${i}`,
      redelivered: false,
    });
  }
  const serialS = (performance.now() - t0) / 1000;

  // Durable, many messages in one turn of the event loop: one transaction for all of them.
  const grouped = 20_000;
  const perTurn = 100;
  t0 = performance.now();
  for (let i = 0; i < grouped; i += perTurn) {
    const turn: Promise<unknown>[] = [];
    for (let j = i; j < i + perTurn; j++)
      turn.push(
        ingest.acceptDurable('line1', makeReadings(perMessage, j * perMessage), gate, log, {
          key: String((j % 65535) + 1),
          hash: `g${j}`,
          redelivered: false,
        }),
      );
    await Promise.all(turn);
  }
  const groupedS = (performance.now() - t0) / 1000;
  ingest.close();
  store.close();
  return {
    bulkReadingsPerSecond: bulk,
    durableSerial: {
      messages: serialMessages,
      readingsPerMessage: perMessage,
      messagesPerSecond: Math.round(serialMessages / serialS),
      readingsPerSecond: Math.round((serialMessages * perMessage) / serialS),
    },
    durableGrouped: {
      messages: grouped,
      perTurn,
      readingsPerSecond: Math.round((grouped * perMessage) / groupedS),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// c. MQTT JSON source, ack after commit

interface SourceFigure {
  synchronous: Sync;
  messages: number;
  readingsPerMessage: number;
  messagesPerSecond: number;
  readingsPerSecond: number;
}

async function sourceBench(dir: string, sync: Sync, messages: number, round: number): Promise<SourceFigure> {
  const broker = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
  const store = openStore(path.join(dir, `source-${sync}-${round}.db`), sync);
  const ingest = newIngest(store);
  const gate = new ReadingGate({}, TelemetryConfig.parse({}));
  const perMessage = 10;
  const ctx: SourceContext = {
    log,
    resolvePath: (p) => p,
    emit: () => undefined,
    reject: (reason, message, origin) => ingest.refuse('line1', reason, message, origin, log),
    readings: (batch) => ingest.accept('line1', batch, gate, log),
    readingsDurable: (batch, mark) => ingest.acceptDurable('line1', batch, gate, log, mark),
    reconnected: () => ingest.reconnected('line1'),
  };
  const config = MqttJsonSourceSchema.parse({
    type: 'mqtt-json',
    url: broker.url,
    clientId: `bench-source-${sync}`,
    qos: 1,
    reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
    subscriptions: [
      { topic: 'bench/+/telemetry', asset: '{1}', allNumericFields: true, timestampField: 'ts' },
    ],
  });
  try {
    // The first start makes the persistent session; the backlog is queued while it is away.
    let source = new MqttJsonSource('line1', config, ctx);
    await source.start(new AbortController().signal);
    await source.stop();
    const pub = await mqtt.connectAsync(broker.url);
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < messages; i++) {
      const payload: Record<string, number> = { ts: Date.now() };
      for (let f = 0; f < perMessage; f++) payload[`t${f}`] = i + f / 100;
      sends.push(pub.publishAsync(`bench/pump-${i % 10}/telemetry`, JSON.stringify(payload), { qos: 1 }));
    }
    await Promise.all(sends);
    await pub.endAsync();
    const expected = messages * perMessage;
    const t0 = performance.now();
    source = new MqttJsonSource('line1', config, ctx);
    await source.start(new AbortController().signal);
    await until(
      'the queued messages stored',
      () => store.countReadings() >= expected && ingest.pendingCount === 0,
    );
    const s = (performance.now() - t0) / 1000;
    await source.stop();
    return {
      synchronous: sync,
      messages,
      readingsPerMessage: perMessage,
      messagesPerSecond: Math.round(messages / s),
      readingsPerSecond: Math.round(expected / s),
    };
  } finally {
    ingest.close();
    store.close();
    await broker.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// d. upstream drain

interface DrainFigure {
  rows: number;
  batchSize: number;
  maxInFlight: number;
  rowsPerSecond: number;
  receivedBySubscriber: number;
}

async function drainBench(dir: string, rows: number, batchSize: number): Promise<DrainFigure> {
  const broker = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
  const store = openStore(path.join(dir, `drain-${batchSize}.db`), 'full');
  // As the daemon does when upstream forwards readings: they count as backlog from here on.
  store.setForwarded(['readings']);
  for (let i = 0; i < rows; i += 1000) store.saveReadings(makeReadings(Math.min(1000, rows - i), i));
  const sub = await mqtt.connectAsync(broker.url, { clean: true });
  let received = 0;
  sub.on('message', (_t, payload: Buffer) => {
    received += (JSON.parse(payload.toString()) as { items: unknown[] }).items.length;
  });
  await sub.subscribeAsync('bench/+/upstream/#', { qos: 1 });
  const config = UpstreamConfig.parse({
    url: broker.url,
    topicPrefix: 'bench',
    batchSize,
    maxRowsPerSecond: 1e9,
    maxInFlight: 8,
  });
  const forwarder = new UpstreamForwarder({
    config,
    deviceId: 'bench-gw',
    queue: store,
    log,
    pollIntervalMs: 10,
    statusIntervalMs: 0,
  });
  try {
    const t0 = performance.now();
    await forwarder.start();
    await until('the backlog drained', () => store.backlog('readings').rows === 0);
    const s = (performance.now() - t0) / 1000;
    await until('the subscriber got every row', () => received >= rows, 60_000).catch(() => undefined);
    return {
      rows,
      batchSize,
      maxInFlight: config.maxInFlight,
      rowsPerSecond: Math.round(rows / s),
      receivedBySubscriber: received,
    };
  } finally {
    await forwarder.stop(0);
    await sub.endAsync();
    store.close();
    await broker.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// e. disk bytes per reading

interface DiskFigure {
  rows: number;
  /** The readings table and its indexes, in pages SQLite uses (dbstat), per row. */
  tableBytesPerRow: number | null;
  /** The whole file after VACUUM, per row. */
  fileBytesPerRow: number;
}

function diskBench(dir: string, rows: number): DiskFigure {
  const file = path.join(dir, 'disk.db');
  const store = openStore(file, 'normal');
  for (let i = 0; i < rows; i += 1000) store.saveReadings(makeReadings(Math.min(1000, rows - i), i));
  store.close();
  const db = new Database(file);
  let table: number | null = null;
  try {
    const r = db
      .prepare(
        "SELECT SUM(pgsize) AS bytes FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'readings')",
      )
      .get() as { bytes: number };
    table = Math.round((r.bytes / rows) * 10) / 10;
  } catch {
    // dbstat is not compiled into this SQLite
  }
  db.exec('VACUUM');
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return {
    rows,
    tableBytesPerRow: table,
    fileBytesPerRow: Math.round((statSync(file).size / rows) * 10) / 10,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const rows = Number(arg('--rows') ?? 200_000);
  const messages = Number(arg('--messages') ?? 5_000);
  const rounds = Number(arg('--rounds') ?? 3);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-bench-sf-'));
  const m = machine();
  say(`machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}, Node ${m.node}; temp dir ${dir}`);
  try {
    const raw: RawFigure[] = [];
    for (const sync of ['full', 'normal'] as const)
      for (const batch of [1, 100, 1000]) {
        const n = batch === 1 ? Math.min(rows, 5_000) : rows;
        raw.push(rawMedian(dir, sync, batch, n, rounds));
        say(`a. raw ${sync} batch ${batch}: ${raw.at(-1)!.rowsPerSecond} rows/s`);
      }
    const ingest = await ingestBench(dir, rows);
    say(`b. ingest: ${JSON.stringify(ingest)}`);
    const source: SourceFigure[] = [];
    for (const sync of ['full', 'normal'] as const) {
      const runs: SourceFigure[] = [];
      for (let i = 0; i < rounds; i++) runs.push(await sourceBench(dir, sync, messages, i));
      runs.sort((a, b) => a.messagesPerSecond - b.messagesPerSecond);
      source.push(runs[Math.floor(runs.length / 2)]!);
      say(`c. source ${sync}: ${source.at(-1)!.messagesPerSecond} messages/s`);
    }
    const drain: DrainFigure[] = [];
    for (const batchSize of [200, 1000]) {
      drain.push(await drainBench(dir, rows, batchSize));
      say(`d. drain batch ${batchSize}: ${drain.at(-1)!.rowsPerSecond} rows/s`);
    }
    const disk = diskBench(dir, rows);
    say(`e. disk: ${JSON.stringify(disk)}`);

    say('');
    say(`Machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}, Node ${m.node}.`);
    say('');
    say('| measure | synchronous | figure |');
    say('|---|---|---|');
    for (const r of raw)
      say(
        `| a. raw better-sqlite3 insert, ${r.batch} row${r.batch > 1 ? 's' : ''} per commit | ${r.synchronous} | ${r.rowsPerSecond.toLocaleString('en')} rows/s (${r.usPerCommit} µs per commit) |`,
      );
    say(
      `| b. TelemetryIngest + Store, accept() in batches of 100 | full | ${ingest.bulkReadingsPerSecond.toLocaleString('en')} readings/s |`,
    );
    say(
      `| b. acceptDurable(), one ${ingest.durableSerial.readingsPerMessage}-reading message at a time | full | ${ingest.durableSerial.messagesPerSecond.toLocaleString('en')} messages/s (${ingest.durableSerial.readingsPerSecond.toLocaleString('en')} readings/s) |`,
    );
    say(
      `| b. acceptDurable(), ${ingest.durableGrouped.perTurn} messages per turn (group commit) | full | ${ingest.durableGrouped.readingsPerSecond.toLocaleString('en')} readings/s |`,
    );
    for (const s of source)
      say(
        `| c. MQTT JSON source, ack after commit, queued backlog of ${s.messages} QoS 1 messages | ${s.synchronous} | ${s.messagesPerSecond.toLocaleString('en')} messages/s (${s.readingsPerSecond.toLocaleString('en')} readings/s) |`,
      );
    for (const d of drain)
      say(
        `| d. upstream drain, batchSize ${d.batchSize}, maxInFlight ${d.maxInFlight}, no rate limit | full | ${d.rowsPerSecond.toLocaleString('en')} rows/s (${d.rows.toLocaleString('en')} rows) |`,
      );
    say(
      `| e. disk per reading: readings table + indexes (dbstat) / file after VACUUM | - | ${disk.tableBytesPerRow ?? 'n/a'} / ${disk.fileBytesPerRow} bytes |`,
    );
    const result = { machine: m, at: new Date().toISOString(), raw, ingest, source, drain, disk };
    say('');
    say(JSON.stringify(result, null, 2));
    const out = arg('--out');
    if (out) await writeFile(out, JSON.stringify(result, null, 2) + '\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
