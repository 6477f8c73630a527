import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { HttpSink } from '../../simulator/camera/sinks.js';
import { ROOT, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { MessageLog, describeFailures, field, loadContracts, type Seen } from './support.js';

/**
 * Payload contracts against real messages: `vigil run` (the compiled CLI, its own process) with
 * a camera pipeline (the shipped defect model), two telemetry pipelines (a RUL and an anomaly
 * model) fed JSON over MQTT, results publishing on, and store and forward to a second Mosquitto.
 * A plain mqtt.js client subscribed to `vigil/#` on both brokers checks every message it gets
 * against the schema its topic maps to in docs/schemas/<version>/index.json, with the strict
 * copy of the schemas (an undocumented field fails), and that every kind of message was seen:
 * the offline last will (the daemon is killed) and the offline status of an orderly stop too.
 */

const DEVICE = 'contracts-gw';
const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const FIXTURES = path.join(ROOT, 'test/fixtures/telemetry-models');

const contracts = loadContracts();
const log = new MessageLog();
let broker: RunningMosquitto;
let upstream: RunningMosquitto;
let daemon: RunningDaemon | undefined;
let plant: MqttClient | undefined;
let dir: string;
let configFile: string;
let httpPort: number;
let camPort: number;

const detailState = (m: Seen): unknown =>
  ((m.payload as { details?: { state?: string } }).details ?? {}).state;
const on = (suffix: string) => (m: Seen) => m.broker === 'mqtt' && m.topic === `vigil/${DEVICE}/${suffix}`;

async function telemetryStats(pipeline: string): Promise<{ windowsScored: number } | undefined> {
  const s = (await (await fetch(`${daemon!.url}/api/v1/status`)).json()) as {
    telemetryPipelines?: Record<string, { windowsScored: number }>;
  };
  return s.telemetryPipelines?.[pipeline];
}

beforeAll(async () => {
  [broker, upstream] = await Promise.all([startMosquitto(), startMosquitto()]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-contracts-'));
  await log.subscribe(broker.url, 'mqtt', 'contracts-watch');
  await log.subscribe(upstream.url, 'upstream', 'contracts-watch-upstream');
  httpPort = await freePort();
  // Two free ports that differ (the OS may hand the same one out twice in a row).
  do camPort = await freePort();
  while (camPort === httpPort);
  configFile = path.join(dir, 'vigil.yaml');
  await writeFile(
    configFile,
    stringify({
      version: 1,
      device: { id: DEVICE },
      http: { host: '127.0.0.1', port: httpPort },
      mqtt: { url: broker.url, statusIntervalSeconds: 1 },
      store: { path: path.join(dir, 'vigil.db'), synchronous: 'normal' },
      upstream: { url: upstream.url, clientId: 'contracts-gw-upstream' },
      models: {
        defect: { package: PACKAGE },
        rul: { package: path.join(FIXTURES, 'mean-rul'), warmupRuns: 1 },
        anomaly: { package: path.join(FIXTURES, 'iforest-anomaly'), warmupRuns: 1 },
      },
      sources: {
        cam: {
          type: 'camera-http',
          listen: { host: '127.0.0.1', port: camPort },
          maxBodyBytes: 2_000_000,
        },
        plant: {
          type: 'mqtt-json',
          url: broker.url,
          clientId: 'contracts-plant-source',
          subscriptions: [
            {
              topic: 'plant/+/data',
              asset: '{1}',
              tags: { a: 'a', b: 'b', c: 'c', cycle: 'cycle' },
              timestampField: 'ts',
            },
          ],
        },
      },
      pipelines: {
        inspection: {
          sources: ['cam'],
          model: 'defect',
          budgetMs: 5_000,
          publishResults: true,
          severity: { crack: 'critical' },
        },
        engines: { sources: ['plant'], model: 'rul', assets: ['unit7'], publishResults: true },
        pumps: { sources: ['plant'], model: 'anomaly', assets: ['pump1'], publishResults: true },
      },
    }),
  );
  daemon = await startDaemon(configFile, httpPort, { timeoutMs: 60_000 });
}, 120_000);

afterAll(async () => {
  // Killed or stopped by the test: nothing left to stop (its exit event has been and gone).
  if (daemon && daemon.proc.exitCode === null && daemon.proc.signalCode === null) await daemon.stop();
  await plant?.endAsync(true);
  await log.close();
  await Promise.all([broker?.stop(), upstream?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Engine unit7 (counter axis): a RUL that falls below the raise level and comes back past clear. */
async function runEngine(client: MqttClient): Promise<void> {
  const start = Date.now() - 60_000;
  for (let cycle = 1; cycle <= 18; cycle++) {
    // RUL = mean of 4 cycles: 80 for 5 cycles, 10 for 7 (raised at [6..9]), 80 again (cleared at [12..15]).
    const v = cycle <= 5 || cycle >= 13 ? 80 : 10;
    await client.publishAsync(
      'plant/unit7/data',
      JSON.stringify({ ts: start + cycle * 1000, cycle, a: v, b: v, c: v }),
      { qos: 1 },
    );
    // One cycle at a time, so that every window is scored (none superseded).
    if (cycle >= 4)
      await waitFor(`engine window ${cycle}`, async () =>
        ((await telemetryStats('engines'))?.windowsScored ?? 0) >= cycle - 3 ? true : undefined,
      );
  }
}

/** Pump pump1 (time axis): the fixture's recorded case, a spike in tag b that raises and clears an anomaly. */
async function runPump(client: MqttClient): Promise<void> {
  const cases = JSON.parse(await readFile(path.join(FIXTURES, 'cases/iforest-cases.json'), 'utf8')) as {
    tags: string[];
    raw: number[][];
  };
  const base = Math.floor(Date.now() / 1000) * 1000 - 120_000;
  for (const [k, row] of cases.raw.entries()) {
    const message: Record<string, number> = { ts: base + k * 1000 + 250 };
    cases.tags.forEach((tag, j) => (message[tag] = row[j]!));
    await client.publishAsync('plant/pump1/data', JSON.stringify(message), { qos: 1 });
    await new Promise((r) => setTimeout(r, 30));
    // The spike's windows end at 30..41 and are final with the next step's readings: whichever of
    // them a busy machine scores raises the alert; wait for it before the normal rows clear it.
    if (k === 42)
      await log.waitFor('anomaly raised', (m) => on('alerts/anomaly')(m) && detailState(m) === 'raised');
  }
}

describe('payload contracts of real messages (vigil run → Mosquitto)', () => {
  it('every message Vigil publishes matches the schema of its topic, and every kind was seen', async () => {
    const camera = new SimCamera({
      name: 'cam',
      fps: 8,
      width: 320,
      height: 240,
      defectRate: 0.5,
      seed: 5,
      format: 'jpeg',
      sink: new HttpSink(`http://127.0.0.1:${camPort}/frames`),
      render: renderFrame,
      maxFrames: 24,
    });
    camera.start();
    plant = await mqtt.connectAsync(broker.url, { clientId: 'contracts-plant' });
    await runEngine(plant);
    await runPump(plant);
    await camera.finished;

    await log.waitFor('a defect alert', on('alerts/defect'));
    await log.waitFor('a frame result', on('results/inspection'));
    for (const state of ['raised', 'cleared']) {
      await log.waitFor(
        `failure_risk ${state}`,
        (m) => on('alerts/failure_risk')(m) && detailState(m) === state,
      );
      await log.waitFor(`anomaly ${state}`, (m) => on('alerts/anomaly')(m) && detailState(m) === state);
    }
    await log.waitFor('an engine result', on('results/engines'));
    await log.waitFor('a pump result', on('results/pumps'));
    for (const cls of ['alerts', 'results', 'readings'])
      await log.waitFor(
        `upstream ${cls}`,
        (m) => m.broker === 'upstream' && m.topic === `vigil/${DEVICE}/upstream/${cls}`,
      );
    await log.waitFor('the online status', (m) => on('status')(m) && field(m, 'state') === 'online');

    // The daemon dies: the broker publishes its last will.
    daemon!.proc.kill('SIGKILL');
    await log.waitFor(
      'the offline last will',
      (m) => on('status')(m) && field(m, 'state') === 'offline' && field(m, 'reason') === 'connection lost',
    );
    // Started again and stopped in order: the offline status it publishes itself.
    const restartAt = log.seen.length;
    daemon = await startDaemon(configFile, httpPort, { timeoutMs: 60_000 });
    await log.waitFor(
      'the online status after the restart',
      (m) => on('status')(m) && field(m, 'state') === 'online',
      20_000,
      restartAt,
    );
    expect(await daemon.stop()).toBe(0);
    await log.waitFor(
      'the offline status of an orderly stop',
      (m) => on('status')(m) && field(m, 'state') === 'offline' && field(m, 'reason') === 'stopped',
    );
    // A subscriber arriving now gets the status from the broker's retained store.
    const lateAt = log.seen.length;
    await log.subscribe(broker.url, 'mqtt', 'contracts-late', `vigil/${DEVICE}/status`);
    const retained = await log.waitFor('the retained status', on('status'), 10_000, lateAt);
    expect(retained.retained).toBe(true);
    expect(retained.payload).toMatchObject({ state: 'offline', reason: 'stopped' });

    const checked = await log.checkAll(contracts, 'messages');
    expect(
      checked.filter((c) => c.errors.length > 0),
      `messages that break their contract:\n${describeFailures(checked)}`,
    ).toEqual([]);

    // Every message type this run produces was checked, each carrying its schema id.
    const byFile = new Map<string, number>();
    for (const c of checked) byFile.set(c.entry!.file, (byFile.get(c.entry!.file) ?? 0) + 1);
    for (const file of [
      'alert.defect.schema.json',
      'alert.telemetry.schema.json',
      'result.schema.json',
      'status.schema.json',
      'upstream.schema.json',
    ])
      expect(byFile.get(file) ?? 0, `messages checked against ${file}`).toBeGreaterThan(0);
    for (const c of checked) {
      expect((c.payload as { schema?: unknown }).schema, c.topic).toBe(c.entry!.schemaId);
      // Only messages the index says are retained may come from the broker's retained store.
      if (c.retained) expect(c.entry!.retained, `${c.topic} came retained`).toBe(true);
    }
  }, 240_000);
});
