import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  DaemonProcess,
  ReadingPublisher,
  UNBOUNDED_QUEUE,
  backlogOf,
  soakSource,
  verifyDelivery,
  type DaemonStatus,
} from '../../bench/soak.js';
import { metricValue, waitFor } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { UpstreamReceiver } from '../helpers/upstream-receiver.js';

/**
 * Store and forward through an upstream outage and through SIGTERMs, under a steady load of
 * readings: `vigil run` (its own process) reads numbered JSON readings from an input Mosquitto
 * (QoS 1, persistent session) and forwards them to an upstream Mosquitto that is stopped for a
 * few seconds and started again on the same port with its persistence (so that the receiver's
 * persistent session survives the restart). The backlog must grow, then drain completely, in
 * order, no faster than upstream.maxRowsPerSecond allows (a bound from the token bucket: over a
 * span of D seconds at most rate x D + burst rows, burst being max(rate, batchSize)), and every
 * reading published must arrive exactly once after de-duplication by id.
 */

const RATE = 200; // upstream.maxRowsPerSecond
const BATCH = 50; // upstream.batchSize
const BURST = Math.max(RATE, BATCH); // the token bucket's size
const SHUTDOWN_S = 4;
const LOAD = 40; // messages per second, 2 readings each: 80 readings/s
const OUTAGE_MS = 6_000;

let dir: string;
let input: RunningMosquitto;
let upstream: RunningMosquitto | undefined;
let upstreamPort: number;
let upstreamData: string;
let receiver: UpstreamReceiver;
let publisher: ReadingPublisher;
let configFile: string;
let httpUrl: string;
let daemon: DaemonProcess;
const lives: DaemonProcess[] = [];

function startDaemon(): DaemonProcess {
  daemon = new DaemonProcess(configFile, httpUrl);
  lives.push(daemon);
  return daemon;
}

async function ready(d: DaemonProcess): Promise<void> {
  if (!(await d.waitReady())) throw new Error(`vigil run did not become ready:\n${d.logs()}`);
}

async function status(): Promise<DaemonStatus> {
  const s = await daemon.status();
  if (!s) throw new Error(`no status from vigil run:\n${daemon.logs().slice(-5_000)}`);
  return s;
}

/** seq of the newest row waiting upstream. */
function backlogLastSeq(s: DaemonStatus): number {
  const r = s.upstream!.classes!.readings!;
  return r.oldestSeq === null ? r.ackedSeq : r.oldestSeq + r.rows - 1;
}

const backlogRows = async () => backlogOf(await status())?.readings ?? Number.NaN;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-sf-outage-'));
  input = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
  upstreamData = path.join(dir, 'upstream-broker');
  await mkdir(upstreamData);
  upstream = await startMosquitto({ dataDir: upstreamData, extraConfig: UNBOUNDED_QUEUE });
  upstreamPort = upstream.port;
  receiver = await UpstreamReceiver.start({ url: upstream.url });
  const httpPort = await freePort();
  httpUrl = `http://127.0.0.1:${httpPort}`;
  configFile = path.join(dir, 'vigil.yaml');
  await writeFile(
    configFile,
    stringify({
      version: 1,
      device: { id: 'outage-gw' },
      http: { port: httpPort },
      mqtt: { url: input.url },
      store: { path: path.join(dir, 'vigil.db'), synchronous: 'full' },
      upstream: {
        url: upstream.url,
        batchSize: BATCH,
        maxRowsPerSecond: RATE,
        maxInFlight: 4,
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
        flushOnStopSeconds: 2,
      },
      shutdown: { timeoutSeconds: SHUTDOWN_S },
      models: {},
      pipelines: {},
      sources: { line1: soakSource(input.url) },
    }),
  );
  await ready(startDaemon());
  await waitFor('source line1 up', async () =>
    (await status()).telemetry?.line1?.state === 'up' ? true : undefined,
  );
  publisher = await ReadingPublisher.connect(input.url, ['pump-1', 'pump-2', 'pump-3'], LOAD);
}, 60_000);

afterAll(async () => {
  await publisher?.close();
  for (const d of lives) await d.kill();
  await receiver?.stop();
  await upstream?.stop();
  await input?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('store and forward through an upstream outage and SIGTERMs (vigil run)', () => {
  it('keeps a backlog while the upstream broker is down and drains it completely, in order, within maxRowsPerSecond', async () => {
    publisher.start();
    await receiver.until(() => receiver.count('readings') >= 200, 'live readings upstream');
    expect((await status()).upstream?.state).toBe('connected');

    // The outage: readings keep being accepted and stored, and wait.
    await upstream!.stop();
    upstream = undefined;
    const outageStart = Date.now();
    let peak = 0;
    while (Date.now() - outageStart < OUTAGE_MS) {
      peak = Math.max(peak, await backlogRows());
      await new Promise((r) => setTimeout(r, 250));
    }
    const during = await status();
    const metricsDuring = await daemon.metrics();
    const backlogAtRestart = backlogOf(during)!.readings!;
    expect(during.upstream?.state).not.toBe('connected');
    // 6 s at 80 readings/s: well over 300 rows wait (not exact: the load runs on a timer).
    expect(backlogAtRestart).toBeGreaterThan(300);
    expect(metricValue(metricsDuring, 'vigil_upstream_backlog_rows', { class: 'readings' })).toBeGreaterThan(
      300,
    );
    expect(during.upstream?.classes?.readings?.ageSeconds ?? 0).toBeGreaterThanOrEqual(3);

    const before = receiver.count('readings');
    upstream = await startMosquitto({
      port: upstreamPort,
      dataDir: upstreamData,
      extraConfig: UNBOUNDED_QUEUE,
    });
    // Drained: what waits is no older than the live load's own delay.
    await waitFor(
      'the backlog to drain',
      async () => {
        const s = await status();
        const r = s.upstream?.classes?.readings;
        return r && r.rows < 100 && (r.ageSeconds ?? 0) < 1 ? s : undefined;
      },
      30_000,
    );
    // The drain: from the first row after the restart to the last row stored before it (rows
    // arrive in seq order, so everything between is backlog too), timed by when the daemon sent
    // them (sentAt): the receiver's own reconnect may bunch their arrival.
    const lastWaiting = backlogLastSeq(during);
    const drained = receiver.items('readings').slice(before);
    const end = drained.findIndex((r) => r.item.seq >= lastWaiting);
    expect(end).toBeGreaterThanOrEqual(0);
    const backlogRun = drained.slice(0, end + 1);
    const spanS = (backlogRun.at(-1)!.sentAt - backlogRun[0]!.sentAt) / 1000;
    const measured = backlogRun.length / Math.max(spanS, 0.001);
    const afterDrain = await status();
    console.log(
      `store-forward outage: backlog ${backlogAtRestart} rows at the restart (peak ${peak}); ` +
        `${backlogRun.length} rows drained in ${spanS.toFixed(2)} s: ${measured.toFixed(0)} rows/s, ` +
        `${((backlogRun.length - BURST) / Math.max(spanS, 0.001)).toFixed(0)} rows/s beyond the burst ` +
        `(maxRowsPerSecond ${RATE}, burst ${BURST}); status drainRowsPerSecond ` +
        `${afterDrain.upstream?.drainRowsPerSecond?.toFixed(0)}`,
    );
    // The token bucket's bound, with one batch of slack for a message already on its way.
    expect(backlogRun.length).toBeLessThanOrEqual(RATE * spanS + BURST + BATCH);
    expect(backlogRun.length).toBeGreaterThanOrEqual(backlogAtRestart);

    // Then completely: stop the load and wait for every reading.
    await publisher.stop();
    const expected = publisher.expectedKeys();
    await receiver.until(() => receiver.count('readings') >= expected.size, 'every reading upstream', 20_000);
    await waitFor('an empty backlog', async () => ((await backlogRows()) === 0 ? true : undefined));
    expect(metricValue(await daemon.metrics(), 'vigil_upstream_backlog_rows', { class: 'readings' })).toBe(0);
    const verdict = verifyDelivery(receiver, expected);
    const check = receiver.check();
    expect(verdict, JSON.stringify(check)).toMatchObject({
      lost: 0,
      duplicatesAfterDedup: 0,
      extra: 0,
      orderViolations: [],
    });
    expect(check.orderViolations).toEqual([]);
    expect(check.gaps).toEqual([]);
    expect(check.malformed).toEqual([]);
  }, 60_000);

  it('exits within shutdown.timeoutSeconds on SIGTERM under load, upstream up or down, and loses nothing', async () => {
    publisher.start();
    await new Promise((r) => setTimeout(r, 1_500));
    const bound = SHUTDOWN_S * 1000 + 1_500;

    // Upstream up: the backlog is flushed for at most flushOnStopSeconds.
    const up = await daemon.terminate();
    expect(up.code, daemon.logs().slice(-5_000)).toBe(0);
    expect(up.ms).toBeLessThan(bound);
    await ready(startDaemon());
    await new Promise((r) => setTimeout(r, 1_500));

    // Upstream down: nothing can be flushed, the daemon must still keep its bound.
    await upstream!.stop();
    upstream = undefined;
    await new Promise((r) => setTimeout(r, 1_000));
    const down = await daemon.terminate();
    expect(down.code, daemon.logs().slice(-5_000)).toBe(0);
    expect(down.ms).toBeLessThan(bound);
    console.log(
      `store-forward SIGTERM under load: exit in ${up.ms} ms (upstream up), ${down.ms} ms (upstream down)`,
    );

    upstream = await startMosquitto({
      port: upstreamPort,
      dataDir: upstreamData,
      extraConfig: UNBOUNDED_QUEUE,
    });
    await ready(startDaemon());
    await new Promise((r) => setTimeout(r, 1_000));
    await publisher.stop();
    const expected = publisher.expectedKeys();
    await receiver.until(() => receiver.count('readings') >= expected.size, 'every reading upstream', 20_000);
    await waitFor('an empty backlog', async () => ((await backlogRows()) === 0 ? true : undefined));
    const verdict = verifyDelivery(receiver, expected);
    expect(verdict).toMatchObject({ lost: 0, duplicatesAfterDedup: 0, extra: 0, orderViolations: [] });
    const check = receiver.check();
    expect(check.orderViolations).toEqual([]);
    expect(check.gaps).toEqual([]);
  }, 60_000);
});
