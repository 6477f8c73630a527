/**
 * Data expectations benchmark (issue 8): what checking every reading costs on ingest. Measures,
 * never asserts:
 *  1. readings/s through TelemetryIngest into a real Store (the daemon's path: gate, expectations,
 *     batching, SQLite with the default synchronous=full) with no expectations, with 5 rules on
 *     every tag (range, notNull, maxRateOfChange, staleAfterSeconds, allowedValues), all met,
 *     and with the same rules broken by 1 % of the readings (flags stored, alerts raised);
 *  2. the same path into a sink that keeps nothing (no SQLite): the CPU cost of the checks
 *     against the rest of ingest, without the disk's noise;
 *  3. the check alone (ExpectationChecker.check), in ns per reading (best of `--runs`);
 *  4. the payload checks of an MQTT JSON source alone (PayloadChecker.checkPayload: 3 required
 *     fields and schema drift, whose shapeOf walks every field), in ns per message of 10 fields
 *     that keep their shape, beside JSON.parse of the same message, which the source does anyway.
 * Each variant runs `--runs` times (3 by default), alternating; the median is reported.
 * Run: npm run build && node dist/bench/expectations.js [--readings N] [--runs N] [--out FILE]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { StoreConfig, VigilConfig } from '../runtime/config/schema.js';
import { silentLogger } from '../runtime/log.js';
import { Metrics } from '../runtime/ops/metrics.js';
import type { AlertPublisher } from '../runtime/pipeline/pipeline.js';
import { DataQuality } from '../runtime/quality/data-quality.js';
import { Store } from '../runtime/store/store.js';
import { ReadingGate } from '../runtime/telemetry/gate.js';
import { TelemetryIngest } from '../runtime/telemetry/ingest.js';
import type { Reading } from '../runtime/telemetry/reading.js';

const say = (l: string) => process.stdout.write(l + '\n');
const ASSETS = 10;
const TAGS = 20;
/** Readings per message, as one JSON or Sparkplug message brings them. */
const PER_MESSAGE = 10;

type Variant = 'none' | 'rules' | 'rules-1pct-bad';

/** Values are whole numbers 0..99 that move by at most 1 per reading of a series: every rule is met. */
function readings(n: number, badEvery: number): Reading[] {
  const t0 = Date.now() - 3_600_000;
  const out: Reading[] = new Array<Reading>(n);
  for (let i = 0; i < n; i++) {
    const series = i % (ASSETS * TAGS);
    const round = Math.floor(i / (ASSETS * TAGS));
    const t = t0 + i;
    const bad = badEvery > 0 && i % badEvery === badEvery - 1;
    out[i] = {
      source: 'bench',
      asset: `pump-${series % ASSETS}`,
      tag: `t${Math.floor(series / ASSETS)}`,
      value: bad ? 500 : 40 + (round % 20),
      quality: 'good',
      sourceTime: t,
      serverTime: null,
      receivedAt: t,
    };
  }
  return out;
}

function sourcesConfig(withRules: boolean): Record<string, unknown> {
  const tags = Object.fromEntries(
    Array.from({ length: TAGS }, (_, j) => [
      `t${j}`,
      {
        range: { min: 0, max: 100 },
        notNull: true,
        maxRateOfChange: 1000,
        staleAfterSeconds: 3600,
        allowedValues: Array.from({ length: 100 }, (_, v) => v),
      },
    ]),
  );
  return {
    bench: {
      type: 'mqtt-json',
      url: 'mqtt://127.0.0.1:1',
      subscriptions: [{ topic: 'bench/+', asset: '{1}', allNumericFields: true }],
      ...(withRules ? { expectations: { tags } } : {}),
    },
  };
}

/** Alerts go to the store; nobody is connected to publish them to in a benchmark. */
const nowhere: AlertPublisher = {
  publishAlert: () => Promise.resolve({ ackMs: 0 }),
  publishResult: () => undefined,
};

async function ingestRun(
  dir: string,
  variant: Variant,
  data: Reading[],
  run: number,
  withStore = true,
): Promise<number> {
  const file = path.join(dir, `${variant}-${run}.db`);
  const store = Store.open(
    file,
    StoreConfig.parse({ path: 'x', retentionHours: 1e6, maxRows: 1e9, maxReadings: 1e9 }),
    silentLogger(),
  );
  const sink = withStore ? store : { saveReadings: () => undefined };
  const metrics = new Metrics({ processMetrics: false });
  const config = VigilConfig.parse({
    device: { id: 'bench' },
    models: {},
    sources: sourcesConfig(variant !== 'none'),
    pipelines: {},
  });
  const quality = new DataQuality({
    deviceId: 'bench',
    sources: config.sources,
    sink: store,
    publisher: nowhere,
    metrics,
    log: silentLogger(),
  });
  const ingest = new TelemetryIngest({
    sink,
    metrics,
    log: silentLogger(),
    batchSize: 1000,
    flushIntervalMs: 100,
  });
  const gate = new ReadingGate({}, config.telemetry, quality.expectationsFor('bench'));
  const log = silentLogger();
  const t0 = performance.now();
  for (let i = 0; i < data.length; i += PER_MESSAGE)
    ingest.accept('bench', data.slice(i, i + PER_MESSAGE), gate, log);
  ingest.close();
  const rate = data.length / ((performance.now() - t0) / 1000);
  await quality.stop();
  store.close();
  await rm(file, { force: true });
  await rm(`${file}-wal`, { force: true });
  await rm(`${file}-shm`, { force: true });
  return Math.round(rate);
}

/** ns per reading of the check alone, every rule met (a fresh checker, after a warm-up on another). */
function checkOnly(data: Reading[]): number {
  const config = VigilConfig.parse({
    device: { id: 'bench' },
    models: {},
    sources: sourcesConfig(true),
    pipelines: {},
  });
  const checker = () =>
    new DataQuality({
      deviceId: 'bench',
      sources: config.sources,
      sink: { saveAlert: () => undefined },
      publisher: nowhere,
      metrics: new Metrics({ processMetrics: false }),
      log: silentLogger(),
    }).expectationsFor('bench')!;
  const now = Date.now();
  let flagged = 0;
  const warm = checker();
  for (const r of data) if (warm.check(r, now)) flagged++;
  const measured = checker();
  const t0 = performance.now();
  for (const r of data) if (measured.check(r, now)) flagged++;
  const ns = ((performance.now() - t0) * 1e6) / data.length;
  if (flagged > 0) throw new Error(`${flagged} readings broke a rule: the benchmark data is wrong`);
  return ns;
}

/** A device's message of 10 leaf fields (2 of them in an object), as an MQTT JSON source parses it. */
function payloadText(i: number): string {
  return JSON.stringify({
    ts: 1_718_000_000_000 + i,
    temperature: 20 + (i % 7) / 10,
    pressure: 1.2,
    flow: 3 + (i % 5),
    vibration: 0.02,
    current: 4.1,
    voltage: 230,
    state: 'running',
    meta: { serial: 'SN-1234', fw: '1.2.3' },
  });
}

/**
 * ns per message of the payload checks alone, every message meeting them (same shape, required
 * fields present), and of JSON.parse of the same messages for scale. Parsed outside the timing:
 * the source parses each message once whether or not it checks it.
 */
function payloadOnly(messages: number): { checkNs: number; parseNs: number } {
  const config = VigilConfig.parse({
    device: { id: 'bench' },
    models: {},
    sources: {
      bench: {
        type: 'mqtt-json',
        url: 'mqtt://127.0.0.1:1',
        subscriptions: [{ topic: 'bench/+', asset: '{1}', allNumericFields: true }],
        expectations: {
          payload: { requiredFields: ['ts', 'temperature', 'meta.serial'], schemaDrift: true },
        },
      },
    },
    pipelines: {},
  });
  const texts = Array.from({ length: messages }, (_, i) => payloadText(i));
  let t0 = performance.now();
  const parsed = texts.map((t) => JSON.parse(t) as unknown);
  const parseNs = ((performance.now() - t0) * 1e6) / messages;
  const hook = () =>
    new DataQuality({
      deviceId: 'bench',
      sources: config.sources,
      sink: { saveAlert: () => undefined },
      publisher: nowhere,
      metrics: new Metrics({ processMetrics: false }),
      log: silentLogger(),
    }).payloadHookFor('bench')!;
  let broke = 0;
  const message = (payload: unknown, i: number) => ({
    subscription: 'bench/+',
    topic: `bench/pump-${i % ASSETS}`,
    asset: `pump-${i % ASSETS}`,
    payload,
    receivedAt: 0,
  });
  const warm = hook();
  parsed.forEach((p, i) => {
    if (warm.checkPayload(message(p, i))) broke++;
  });
  const measured = hook();
  const msgs = parsed.map(message);
  t0 = performance.now();
  for (const m of msgs) if (measured.checkPayload(m)) broke++;
  const checkNs = ((performance.now() - t0) * 1e6) / messages;
  if (broke > 0) throw new Error(`${broke} messages broke a payload rule: the benchmark data is wrong`);
  return { checkNs, parseNs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
  };
  const n = Number(opt('--readings', '200000'));
  const runs = Number(opt('--runs', '3'));
  const out = args.includes('--out') ? opt('--out', '') : undefined;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-bench-expect-'));
  try {
    const good = readings(n, 0);
    const someBad = readings(n, 100);
    const rates: Record<Variant, number[]> = { none: [], rules: [], 'rules-1pct-bad': [] };
    const cpuOnly: Record<'none' | 'rules', number[]> = { none: [], rules: [] };
    const checkNs: number[] = [];
    const payloadNs: Array<{ checkNs: number; parseNs: number }> = [];
    // One warm-up of each, not counted: JIT and SQLite's first file growth.
    await ingestRun(dir, 'none', good.slice(0, 20_000), -1);
    await ingestRun(dir, 'rules', good.slice(0, 20_000), -1);
    for (let run = 0; run < runs; run++) {
      rates.none.push(await ingestRun(dir, 'none', good, run));
      rates.rules.push(await ingestRun(dir, 'rules', good, run));
      rates['rules-1pct-bad'].push(await ingestRun(dir, 'rules-1pct-bad', someBad, run));
      cpuOnly.none.push(await ingestRun(dir, 'none', good, run, false));
      cpuOnly.rules.push(await ingestRun(dir, 'rules', good, run, false));
      checkNs.push(checkOnly(good));
      payloadNs.push(payloadOnly(Math.min(n, 100_000)));
    }
    const result = {
      machine: `${os.cpus().length}-core ${os.arch()}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`,
      readings: n,
      tags: TAGS,
      assets: ASSETS,
      rulesPerTag: 5,
      runs,
      readingsPerSecond: Object.fromEntries(
        Object.entries(rates).map(([k, v]) => [k, { median: median(v), runs: v }]),
      ),
      overheadRatio: {
        rules: Math.round((median(rates.none) / median(rates.rules)) * 1000) / 1000,
        'rules-1pct-bad': Math.round((median(rates.none) / median(rates['rules-1pct-bad'])) * 1000) / 1000,
      },
      withoutStore: {
        readingsPerSecond: Object.fromEntries(
          Object.entries(cpuOnly).map(([k, v]) => [k, { median: median(v), runs: v }]),
        ),
        overheadRatio: Math.round((median(cpuOnly.none) / median(cpuOnly.rules)) * 1000) / 1000,
      },
      checkOnlyNsPerReading: { best: Math.round(Math.min(...checkNs)), runs: checkNs.map(Math.round) },
      payloadChecksNsPerMessage: {
        fields: 10,
        requiredFields: 3,
        best: Math.round(Math.min(...payloadNs.map((p) => p.checkNs))),
        runs: payloadNs.map((p) => Math.round(p.checkNs)),
        jsonParseBest: Math.round(Math.min(...payloadNs.map((p) => p.parseNs))),
      },
    };
    say(JSON.stringify(result, null, 2));
    if (out) await writeFile(out, JSON.stringify(result, null, 2) + '\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
