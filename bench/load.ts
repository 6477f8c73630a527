/**
 * Load drill (issue 8): camera frames over HTTP and telemetry over MQTT at rising rates against a
 * running Vigil daemon, with, per step, the daemon's own latency from frame arrival to result
 * stored (p50/p95/p99) against the budget, what it dropped and why, the HTTP answer time, and
 * what became of the telemetry. docs/CHAOS.md explains how to read it.
 *
 * Run: npm run build && npm run load -- [options]
 *   --rates 5,10,20,40,80       frames per second, one step each (whole numbers)
 *   --telemetry-rates LIST      MQTT messages per second per step (2 readings each); default 10x the
 *                               frame rate (50,100,200,400,800)
 *   --step S                    seconds per step (default 10)
 *   --size WxH                  frame size (default 640x480); frames are the simulator camera's JPEGs
 *   --pacing even|burst         even (default): frames evenly spaced; burst: autocannon's own
 *                               overallRate, which sends each second's frames at once
 *   --budget MS                 the latency budget the steps are judged against; with the drill's
 *                               own daemon also its pipeline's budgetMs (default: read from the
 *                               config the daemon was started with, 100); with --url, give the
 *                               pipeline's budgetMs (default 100, which the output says is assumed)
 *   --json FILE                 also write the results as JSON
 * Against a daemon of your own instead of the one the drill starts:
 *   --url OPS_URL               its ops server (/metrics, /api/v1/status), e.g. http://127.0.0.1:8470
 *   --camera-url URL            its camera-http endpoint (default http://127.0.0.1:8471/frames)
 *   --mqtt-url URL              the broker its mqtt-json source reads; messages go to
 *                               <topic>/<asset>/telemetry as {"ts": ms, "n": counter, "temp": number}
 *   --topic PREFIX              topic prefix (default plant)
 *   --pipeline NAME             the frame pipeline to read (default: the first in its status)
 *   --telemetry-source NAME     the source whose readings to count (default: every source)
 * The daemon the drill starts itself (brokers, upstream receiver) is bench/chaos/rig.ts; with it
 * the latency percentiles are exact (from every stored result), with --url they are estimated from
 * the vigil_latency_seconds histogram. Telemetry is published with mqtt.js (QoS 1, paced per 10 ms),
 * not autocannon, which speaks HTTP only. SIGINT or SIGTERM stops the load and the drill's own
 * daemon and brokers before exiting.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { machine, sleep } from './chaos/drill.js';
import { cleanUpOnSignals, interrupted, onInterrupt } from './chaos/interrupt.js';
import { fetchStatus } from './daemon-process.js';
import { FrameRun, renderFramePool, type FramePool, type Pacing } from './chaos/frames.js';
import {
  MetricsScrape,
  histogramQuantile,
  histogramShareWithin,
  histogramWindow,
  percentile,
} from './chaos/prom.js';
import { ChaosRig, DEFAULT_BUDGET_MS, LINE, PIPELINE } from './chaos/rig.js';
import { READINGS_PER_MESSAGE, TelemetryDriver } from './chaos/telemetry.js';
import type { UpstreamReceiver } from '../test/helpers/upstream-receiver.js';

export interface LoadOptions {
  rates: number[];
  telemetryRates: number[];
  stepS: number;
  width: number;
  height: number;
  pacing: Pacing;
  /**
   * The latency budget (ms) the steps are judged against. With the drill's own daemon it is also
   * the pipeline's budgetMs; absent, the budget is read from the config that daemon was started
   * with. With an existing daemon, absent means 100 ms, assumed (the daemon does not show it).
   */
  budgetMs?: number;
  /** An existing daemon; absent: the drill starts its own (ChaosRig). */
  external?: {
    opsUrl: string;
    cameraUrl: string;
    mqttUrl: string;
    topic: string;
    pipeline?: string;
    telemetrySource?: string;
  };
  say: (line: string) => void;
}

export interface LoadStep {
  rate: number;
  telemetryRate: number;
  frames: {
    sent: number;
    /** Frames the daemon accepted (vigil_frames_in_total, every camera source). */
    accepted: number;
    /** 202 answers the driver read (a few fewer: autocannon drops the answers in flight when a run stops). */
    answered202: number;
    refused: Record<string, number>;
    unanswered: number;
    achievedRate: number;
    /** Results stored in the step (vigil_samples_processed_total). */
    stored: number;
    dropped: Record<string, number>;
    budgetExceeded: number;
    /** HTTP answer time (202), ms. */
    http: { p50: number | null; p99: number | null };
    /** Arrival to stored, ms: exact from every stored result when the drill runs the daemon. */
    latencyMs: {
      p50: number | null;
      p95: number | null;
      p99: number | null;
      max: number | null;
      exact: boolean;
    };
    /** Estimated from the histogram, ms (always). */
    histogramMs: { p50: number | null; p95: number | null; p99: number | null };
    /** Share of stored frames within the budget. */
    withinBudget: number | null;
  };
  telemetry: {
    messagesAcked: number;
    readingsSent: number;
    accepted: number;
    refused: Record<string, number>;
    stored: number;
    dropped: number;
    /** p99 of one batch write to SQLite, ms (histogram). */
    writeP99Ms: number | null;
    /**
     * Seconds after the step ended until every reading sent in it was taken (accepted or refused)
     * and written: near 0 while the daemon keeps up; null when it did not within 60 s.
     */
    catchUpS: number | null;
  };
  /** CPU the daemon used in the step, in cores (1.0 = one core busy). */
  daemonCpuCores: number | null;
  /** CPU this load driver used (autocannon, MQTT client, the drill's brokers excluded), in cores. */
  driverCpuCores: number;
  /** The host's 1-minute load average at the end of the step: other work skews the figures. */
  hostLoadAvg1m: number;
  meetsBudget: boolean;
}

export interface LoadResult {
  machine: ReturnType<typeof machine>;
  options: Omit<LoadOptions, 'say'>;
  budgetMs: number;
  /** Where budgetMs comes from: --budget, the started daemon's config, or assumed (100 ms). */
  budgetFrom: 'option' | 'daemon config' | 'assumed';
  pipeline: string;
  frameBytes: number;
  steps: LoadStep[];
}

const round = (x: number | null | undefined, d = 1): number | null =>
  x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d;

const cpuTotal = (u: NodeJS.CpuUsage) => u.user + u.system;

function cpuSeconds(m: MetricsScrape): number | undefined {
  const s = m.samples.find((x) => x.name.endsWith('process_cpu_seconds_total'));
  return s?.value;
}

async function settleStep(opsUrl: string, pipeline: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = await fetchStatus(opsUrl);
    const p = s?.pipelines?.[pipeline];
    if (p) {
      const dropped = Object.values(p.dropped ?? {}).reduce((a, b) => a + b, 0);
      if ((p.seen ?? 0) === (p.processed ?? 0) + dropped) return;
    }
    await sleep(100);
  }
}

/** pipelines.<pipeline>.budgetMs of a config file (the schema's default, 100, when absent). */
async function configuredBudget(configFile: string, pipeline: string): Promise<number> {
  const config = parseYaml(await readFile(configFile, 'utf8')) as {
    pipelines?: Record<string, { budgetMs?: number }>;
  };
  return config.pipelines?.[pipeline]?.budgetMs ?? DEFAULT_BUDGET_MS;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const say = o.say;
  const pool: FramePool = await renderFramePool(24, o.width, o.height);
  let rig: ChaosRig | undefined;
  let telemetry: TelemetryDriver | undefined;
  // Interrupted (SIGINT/SIGTERM): the daemon and brokers are child processes; stop them.
  const forget = onInterrupt(async () => {
    await telemetry?.close().catch(() => undefined);
    await rig?.stop();
  });
  try {
    let opsUrl: string;
    let cameraUrl: string;
    let mqttUrl: string;
    let receiver: UpstreamReceiver | undefined;
    if (o.external) {
      ({ opsUrl, cameraUrl, mqttUrl } = o.external);
    } else {
      say('load: starting brokers and vigil run');
      rig = await ChaosRig.start({
        logLevel: 'warn',
        ...(o.budgetMs !== undefined ? { budgetMs: o.budgetMs } : {}),
      });
      opsUrl = rig.opsUrl;
      cameraUrl = rig.cameraUrl;
      mqttUrl = rig.plant.url;
      receiver = rig.receiver;
    }
    const status = await fetchStatus(opsUrl);
    if (!status) throw new Error(`no daemon answers at ${opsUrl}/api/v1/status`);
    const pipeline = o.external?.pipeline ?? (o.external ? Object.keys(status.pipelines ?? {})[0] : PIPELINE);
    if (!pipeline || !status.pipelines?.[pipeline])
      throw new Error(
        `the daemon at ${opsUrl} has no frame pipeline ${pipeline ?? ''}: name one with --pipeline`,
      );
    // The telemetry sources whose readings are counted.
    const telemetrySources = o.external
      ? o.external.telemetrySource
        ? [o.external.telemetrySource]
        : (status.sources ?? []).filter((x) => !x.type.startsWith('camera-')).map((x) => x.name)
      : [LINE];
    telemetry = await TelemetryDriver.connect({
      url: mqttUrl,
      rate: o.telemetryRates[0] ?? 0,
      assets: 8,
      topicPrefix: o.external?.topic ?? 'plant',
    });
    // The budget the percentiles are judged against: the pipeline's budgetMs. The daemon shows it
    // only through its budget counter, so it is read from the config the drill started it with.
    let budgetMs: number;
    let budgetFrom: LoadResult['budgetFrom'];
    if (rig) {
      budgetMs = await configuredBudget(rig.configFile, pipeline);
      budgetFrom = o.budgetMs !== undefined ? 'option' : 'daemon config';
    } else if (o.budgetMs !== undefined) {
      budgetMs = o.budgetMs;
      budgetFrom = 'option';
    } else {
      budgetMs = DEFAULT_BUDGET_MS;
      budgetFrom = 'assumed';
      say(
        `load: judging against a budget of ${budgetMs} ms, assumed: the daemon does not show its pipelines' ` +
          `budgetMs; give ${pipeline}'s with --budget MS`,
      );
    }
    say(`load: warming up for 3 s at ${o.rates[0]} frames/s`);
    const warm = new FrameRun({
      url: cameraUrl,
      rate: o.rates[0] ?? 5,
      pool,
      idPrefix: `warm-${process.pid}`,
      pacing: o.pacing,
    });
    await sleep(3_000);
    await warm.stop();
    await settleStep(opsUrl, pipeline, 10_000);

    const steps: LoadStep[] = [];
    for (const [i, rate] of o.rates.entries()) {
      const telemetryRate = o.telemetryRates[i] ?? o.telemetryRates.at(-1) ?? 0;
      say(
        `load: step ${i + 1}/${o.rates.length}: ${rate} frames/s, ${telemetryRate} telemetry msg/s for ${o.stepS} s`,
      );
      const before = await MetricsScrape.fetch(opsUrl);
      const driverCpu = process.cpuUsage();
      const ackedBefore = telemetry.ackedMessages;
      const run = new FrameRun({
        url: cameraUrl,
        rate,
        pool,
        // The step's index too: two steps at the same rate must not pool their results.
        idPrefix: `load-${process.pid}-s${i + 1}-r${rate}`,
        pacing: o.pacing,
      });
      if (telemetryRate > 0) telemetry.start(telemetryRate);
      await sleep(o.stepS * 1000);
      const frames = await run.stop();
      await telemetry.stop(10_000);
      const stopAt = Date.now();
      await settleStep(opsUrl, pipeline, 15_000);
      // The step's telemetry is taken once every reading sent was accepted or refused and written:
      // beyond what the daemon can take, messages wait in the broker (QoS 1) and are taken late.
      const readingsSent = (telemetry.ackedMessages - ackedBefore) * READINGS_PER_MESSAGE;
      const taken = (m: MetricsScrape) =>
        telemetrySources.reduce(
          (n, source) =>
            n +
            m.sum('vigil_readings_total', { source }) -
            before.sum('vigil_readings_total', { source }) +
            m.sum('vigil_input_errors_total', { source }) -
            before.sum('vigil_input_errors_total', { source }),
          0,
        );
      let telemetryCatchUpS: number | null = null;
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        const m = await MetricsScrape.fetch(opsUrl);
        if (taken(m) >= readingsSent && m.sum('vigil_readings_pending') === 0) {
          telemetryCatchUpS = round((Date.now() - stopAt) / 1000, 2);
          break;
        }
        await sleep(100);
      }
      const after = await MetricsScrape.fetch(opsUrl);
      const elapsedS = (stopAt - before.at) / 1000;
      const diff = (name: string, labels: Record<string, string> = {}) =>
        after.sum(name, labels) - before.sum(name, labels);
      const dropped: Record<string, number> = {};
      const a = after.by('vigil_samples_dropped_total', 'reason', { pipeline });
      const b = before.by('vigil_samples_dropped_total', 'reason', { pipeline });
      for (const [k, v] of Object.entries(a)) if (v - (b[k] ?? 0) > 0) dropped[k] = v - (b[k] ?? 0);
      const w = histogramWindow(before, after, 'vigil_latency_seconds', { pipeline });
      const hq = (q: number) => round((histogramQuantile(w, q) ?? NaN) * 1000);
      let latencyMs: LoadStep['frames']['latencyMs'] = {
        p50: hq(0.5),
        p95: hq(0.95),
        p99: hq(0.99),
        max: null,
        exact: false,
      };
      if (receiver) {
        // Every result of this step's frames reached the receiver once the backlog drained.
        await rig!.waitFor(
          'the step to be forwarded upstream',
          async () =>
            Object.values((await fetchStatus(opsUrl))?.upstream?.classes ?? {}).every((c) => c.rows === 0),
          30_000,
        );
        // By id prefix: frames sent as the run stopped have no answer on record but a result.
        const prefix = `${run.options.idPrefix}-`;
        const values = receiver
          .items('results')
          .map((r) => r.item as { sampleId: string; latencyMs: number })
          .filter((r) => r.sampleId.startsWith(prefix))
          .map((r) => r.latencyMs);
        latencyMs = {
          p50: round(percentile(values, 50)),
          p95: round(percentile(values, 95)),
          p99: round(percentile(values, 99)),
          max: round(percentile(values, 100)),
          exact: true,
        };
      }
      const ww = histogramWindow(before, after, 'vigil_readings_write_seconds');
      const cpuA = cpuSeconds(after);
      const cpuB = cpuSeconds(before);
      const acked = telemetry.ackedMessages - ackedBefore;
      const refusedReadings: Record<string, number> = {};
      for (const source of telemetrySources) {
        const ra = after.by('vigil_input_errors_total', 'reason', { source });
        const rb = before.by('vigil_input_errors_total', 'reason', { source });
        for (const [k, v] of Object.entries(ra))
          if (v - (rb[k] ?? 0) > 0) refusedReadings[k] = (refusedReadings[k] ?? 0) + v - (rb[k] ?? 0);
      }
      const acceptedReadings = telemetrySources.reduce(
        (n, source) => n + diff('vigil_readings_total', { source }),
        0,
      );
      const stored = diff('vigil_samples_processed_total', { pipeline });
      const totalDropped = Object.values(dropped).reduce((x, y) => x + y, 0);
      const step: LoadStep = {
        rate,
        telemetryRate,
        frames: {
          sent: frames.sent,
          accepted: diff('vigil_frames_in_total'),
          answered202: frames.accepted,
          refused: frames.refused,
          unanswered: frames.unanswered,
          achievedRate: frames.achievedRate,
          stored,
          dropped,
          budgetExceeded: diff('vigil_budget_exceeded_total', { pipeline }),
          http: { p50: frames.http.p50, p99: frames.http.p99 },
          latencyMs,
          histogramMs: { p50: hq(0.5), p95: hq(0.95), p99: hq(0.99) },
          withinBudget: round(histogramShareWithin(w, budgetMs / 1000) ?? NaN, 4),
        },
        telemetry: {
          messagesAcked: acked,
          readingsSent,
          accepted: acceptedReadings,
          refused: refusedReadings,
          stored: diff('vigil_readings_stored_total'),
          dropped: diff('vigil_readings_dropped_total'),
          writeP99Ms: round((histogramQuantile(ww, 0.99) ?? NaN) * 1000, 2),
          catchUpS: telemetryCatchUpS,
        },
        daemonCpuCores: cpuA !== undefined && cpuB !== undefined ? round((cpuA - cpuB) / elapsedS, 2) : null,
        driverCpuCores: round(
          cpuTotal(process.cpuUsage(driverCpu)) / 1e6 / ((Date.now() - before.at) / 1000),
          2,
        )!,
        hostLoadAvg1m: round(os.loadavg()[0]!, 2)!,
        meetsBudget: totalDropped === 0 && (latencyMs.p99 ?? Infinity) <= budgetMs,
      };
      steps.push(step);
      say(`  ${formatStepLine(step)}`);
      await sleep(1_000);
    }
    return {
      machine: machine(),
      options: { ...o, say: undefined } as unknown as Omit<LoadOptions, 'say'>,
      budgetMs,
      budgetFrom,
      pipeline,
      frameBytes: pool.meanBytes,
      steps,
    };
  } finally {
    await telemetry?.close().catch(() => undefined);
    await rig?.stop();
    forget();
  }
}

const show = (v: number | null | undefined) => (v === null || v === undefined ? '—' : String(v));
const reasons = (r: Record<string, number>) =>
  Object.keys(r).length === 0
    ? '0'
    : Object.entries(r)
        .map(([k, v]) => `${v} ${k}`)
        .join(', ');

function formatStepLine(s: LoadStep): string {
  return (
    `${s.rate} fps: stored ${s.frames.stored}/${s.frames.accepted}, dropped ${reasons(s.frames.dropped)}, ` +
    `p50/p95/p99 ${show(s.frames.latencyMs.p50)}/${show(s.frames.latencyMs.p95)}/${show(s.frames.latencyMs.p99)} ms; ` +
    `telemetry ${s.telemetry.accepted}/${s.telemetry.readingsSent} readings`
  );
}

export function formatLoad(r: LoadResult): string {
  const m = r.machine;
  const out = [
    `machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.os}, Node ${m.node}, load average ${m.loadAvg1m} at the end`,
    `pipeline ${r.pipeline}, budget ${r.budgetMs} ms (${r.budgetFrom === 'assumed' ? 'assumed: give it with --budget' : `from the ${r.budgetFrom}`}), frames ${r.options.width}x${r.options.height} JPEG (~${Math.round(r.frameBytes / 1024)} KiB), ` +
      `${r.options.pacing} pacing, ${r.options.stepS} s per step; latency = frame arrival to result stored ` +
      `(${r.steps[0]?.frames.latencyMs.exact ? 'exact, from every stored result' : 'estimated from the vigil_latency_seconds histogram'})`,
    '',
    '| frames/s | achieved | accepted | stored | dropped (reason) | p50 ms | p95 ms | p99 ms | max ms | within budget | HTTP p50/p99 ms | telemetry msg/s | readings accepted / sent | refused | stored | write p99 ms | telemetry caught up after (s) | CPU daemon / driver (cores) | host load | meets budget |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of r.steps) {
    const f = s.frames;
    const t = s.telemetry;
    out.push(
      `| ${s.rate} | ${f.achievedRate} | ${f.accepted} | ${f.stored} | ${reasons(f.dropped)} | ${show(f.latencyMs.p50)} | ` +
        `${show(f.latencyMs.p95)} | ${show(f.latencyMs.p99)} | ${show(f.latencyMs.max)} | ` +
        `${f.withinBudget === null ? '—' : `${Math.round(f.withinBudget * 1000) / 10} %`} | ${show(f.http.p50)} / ${show(f.http.p99)} | ` +
        `${s.telemetryRate} | ${t.accepted} / ${t.readingsSent} | ${reasons(t.refused)} | ${t.stored} | ${show(t.writeP99Ms)} | ${show(t.catchUpS)} | ` +
        `${show(s.daemonCpuCores)} / ${s.driverCpuCores} | ${s.hostLoadAvg1m} | ${s.meetsBudget ? 'yes' : 'no'} |`,
    );
  }
  return out.join('\n');
}

function value(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

const OPTIONS = [
  '--rates',
  '--telemetry-rates',
  '--step',
  '--size',
  '--pacing',
  '--budget',
  '--json',
  '--url',
  '--camera-url',
  '--mqtt-url',
  '--topic',
  '--pipeline',
  '--telemetry-source',
];

/** Every argument is `--option value`: a misspelt option (or --duration for --step) fails instead of being ignored. */
function checkOptions(args: string[]): void {
  for (let i = 0; i < args.length; i += 2) {
    if (!OPTIONS.includes(args[i]!))
      throw new Error(`unknown option ${args[i]}: the load drill takes ${OPTIONS.join(', ')}`);
    if (args[i + 1] === undefined) throw new Error(`${args[i]} needs a value`);
  }
}

function list(text: string, name: string): number[] {
  const xs = text.split(',').map((x) => Number(x.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x) || x < 0))
    throw new Error(`${name} takes numbers like 5,10,20`);
  return xs;
}

function positive(text: string, name: string): number {
  const n = Number(text);
  if (!(n > 0)) throw new Error(`${name} takes a number of seconds above 0, not ${text}`);
  return n;
}

const started = Date.now();
const progress = (line: string) =>
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);

export function parseLoadArgs(
  args: string[],
  say: (l: string) => void = progress,
): LoadOptions & { json?: string } {
  checkOptions(args);
  const rates = list(value(args, '--rates') ?? '5,10,20,40,80', '--rates');
  const telemetryRates = value(args, '--telemetry-rates')
    ? list(value(args, '--telemetry-rates')!, '--telemetry-rates')
    : rates.map((r) => r * 10);
  const size = /^(\d+)x(\d+)$/.exec(value(args, '--size') ?? '640x480');
  if (!size) throw new Error('--size takes WIDTHxHEIGHT, e.g. 640x480');
  const pacing = (value(args, '--pacing') ?? 'even') as Pacing;
  if (pacing !== 'even' && pacing !== 'burst') throw new Error('--pacing takes even or burst');
  const url = value(args, '--url');
  const json = value(args, '--json');
  const budget = value(args, '--budget');
  if (budget !== undefined && !(Number(budget) > 0))
    throw new Error(`--budget takes the latency budget in milliseconds, e.g. 100, not ${budget}`);
  return {
    rates,
    telemetryRates,
    stepS: positive(value(args, '--step') ?? '10', '--step'),
    width: Number(size[1]),
    height: Number(size[2]),
    pacing,
    ...(budget !== undefined ? { budgetMs: Number(budget) } : {}),
    ...(url
      ? {
          external: {
            opsUrl: url.replace(/\/$/, ''),
            cameraUrl: value(args, '--camera-url') ?? 'http://127.0.0.1:8471/frames',
            mqttUrl: value(args, '--mqtt-url') ?? 'mqtt://127.0.0.1:1883',
            topic: value(args, '--topic') ?? 'plant',
            ...(value(args, '--pipeline') ? { pipeline: value(args, '--pipeline')! } : {}),
            ...(value(args, '--telemetry-source')
              ? { telemetrySource: value(args, '--telemetry-source')! }
              : {}),
          },
        }
      : {}),
    ...(json ? { json } : {}),
    say,
  };
}

async function main(): Promise<void> {
  const o = parseLoadArgs(process.argv.slice(2));
  cleanUpOnSignals((line) => console.error(`\nload: ${line}`));
  const r = await runLoad(o);
  console.log('');
  console.log(formatLoad(r));
  if (o.json) {
    await writeFile(o.json, JSON.stringify(r, null, 2) + '\n');
    console.log(`\nresults written to ${o.json}`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    // Interrupted: the signal handler exits (130/143) once it has undone what was started.
    if (interrupted()) return;
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
