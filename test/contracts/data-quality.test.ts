import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { HttpSink } from '../../simulator/camera/sinks.js';
import { ROOT, startDaemon, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { MessageLog, describeFailures, loadContracts, type Seen } from './support.js';

/**
 * The data_quality alert contract against real messages: `vigil run` with data expectations
 * declared in its config (a range on one tag and schema-drift tracking on a JSON MQTT source, an
 * image format on a camera), both pipelines under the `flag` policy with results published.
 * Out-of-spec readings and frames raise data_quality alerts and clear them once the data is back
 * in spec; a payload that gains a field is reported as schema drift; flagged inputs are scored
 * and their results say so. Every message on `vigil/#` must match its schema (strict copy).
 */

const DEVICE = 'dq-gw';
const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const MEAN_RUL = path.join(ROOT, 'test/fixtures/telemetry-models/mean-rul');

const contracts = loadContracts();
const log = new MessageLog();
let broker: RunningMosquitto;
let daemon: RunningDaemon | undefined;
let plant: MqttClient | undefined;
let dir: string;
let camPort: number;

interface DqAlert {
  id: string;
  kind: string;
  source: string;
  dataQuality: {
    state: string;
    rule: string;
    tag?: string;
    asset?: string;
    clears?: string;
    fields?: { added: string[] };
  };
}
const dq = (m: Seen) => m.payload as DqAlert;
const isDq = (m: Seen) => m.topic === `vigil/${DEVICE}/alerts/data_quality`;

beforeAll(async () => {
  broker = await startMosquitto();
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-contracts-dq-'));
  await log.subscribe(broker.url, 'mqtt', 'dq-watch');
  const httpPort = await freePort();
  // Two free ports that differ (the OS may hand the same one out twice in a row).
  do camPort = await freePort();
  while (camPort === httpPort);
  const configFile = path.join(dir, 'vigil.yaml');
  await writeFile(
    configFile,
    stringify({
      version: 1,
      device: { id: DEVICE },
      http: { host: '127.0.0.1', port: httpPort },
      mqtt: { url: broker.url },
      store: { path: path.join(dir, 'vigil.db'), synchronous: 'normal' },
      models: {
        defect: { package: PACKAGE },
        rul: { package: MEAN_RUL, warmupRuns: 1 },
      },
      sources: {
        cam: {
          type: 'camera-http',
          listen: { host: '127.0.0.1', port: camPort },
          maxBodyBytes: 2_000_000,
          expectations: { image: { formats: ['png'] }, alert: { raiseAfter: 2, clearAfterReadings: 2 } },
        },
        plant: {
          type: 'mqtt-json',
          url: broker.url,
          clientId: 'dq-plant-source',
          subscriptions: [
            {
              topic: 'plant/+/data',
              asset: '{1}',
              tags: { a: 'a', b: 'b', c: 'c', cycle: 'cycle' },
              timestampField: 'ts',
            },
          ],
          expectations: {
            tags: { a: { range: { min: 0, max: 100 } } },
            alert: { raiseAfter: 3, windowSeconds: 60, clearAfterReadings: 3 },
            payload: { schemaDrift: true },
          },
        },
      },
      pipelines: {
        inspection: {
          sources: ['cam'],
          model: 'defect',
          budgetMs: 5_000,
          publishResults: true,
          dataQuality: { policy: 'flag' },
        },
        engines: {
          sources: ['plant'],
          model: 'rul',
          publishResults: true,
          dataQuality: { policy: 'flag' },
        },
      },
    }),
  );
  daemon = await startDaemon(configFile, httpPort, { timeoutMs: 60_000 });
}, 120_000);

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await plant?.endAsync(true);
  await log.close();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function frames(format: 'jpeg' | 'png', seed: number): Promise<void> {
  const camera = new SimCamera({
    name: 'cam',
    fps: 5,
    width: 320,
    height: 240,
    defectRate: 0.3,
    seed,
    format,
    sink: new HttpSink(`http://127.0.0.1:${camPort}/frames`),
    render: renderFrame,
    maxFrames: 4,
  });
  camera.start();
  await camera.finished;
}

describe('data_quality alerts against their contract (vigil run → Mosquitto)', () => {
  it('out-of-range readings, schema drift and out-of-spec frames raise data_quality alerts that match alert.data_quality', async () => {
    plant = await mqtt.connectAsync(broker.url, { clientId: 'dq-plant' });
    const start = Date.now() - 60_000;
    const send = async (cycle: number, a: number, extra: Record<string, number> = {}) => {
      await plant!.publishAsync(
        'plant/unit7/data',
        JSON.stringify({ ts: start + cycle * 1000, cycle, a, b: 50, c: 50, ...extra }),
        { qos: 1 },
      );
      await new Promise((r) => setTimeout(r, 100));
    };
    // In spec, then tag a out of its range 3 times (raises), then back in spec (clears).
    for (let cycle = 1; cycle <= 6; cycle++) await send(cycle, 50);
    for (let cycle = 7; cycle <= 9; cycle++) await send(cycle, 150);
    for (let cycle = 10; cycle <= 14; cycle++) await send(cycle, 50);
    const raised = await log.waitFor(
      'data_quality raised for tag a',
      (m) => isDq(m) && dq(m).dataQuality.rule === 'range' && dq(m).dataQuality.state === 'raised',
    );
    expect(dq(raised)).toMatchObject({
      kind: 'data_quality',
      source: 'plant',
      dataQuality: { tag: 'a', asset: 'unit7' },
    });
    await log.waitFor(
      'data_quality cleared for tag a',
      (m) => isDq(m) && dq(m).dataQuality.state === 'cleared' && dq(m).dataQuality.clears === dq(raised).id,
    );
    await log.waitFor(
      'a result flagged for the out-of-range readings',
      (m) =>
        m.topic === `vigil/${DEVICE}/results/engines` &&
        (m.payload as { dataQuality?: { flagged?: boolean } }).dataQuality?.flagged === true,
    );

    // The payload gains a field: schema drift, with the field's name.
    await send(15, 50, { d: 1 });
    const drift = await log.waitFor(
      'schema_drift raised',
      (m) => isDq(m) && dq(m).dataQuality.rule === 'schema_drift',
    );
    expect(dq(drift).dataQuality.fields?.added).toContain('d');

    // Frames in a format out of spec (jpeg, only png expected), then in spec.
    await frames('jpeg', 3);
    const image = await log.waitFor(
      'data_quality raised for the frames',
      (m) => isDq(m) && dq(m).dataQuality.rule === 'image' && dq(m).dataQuality.state === 'raised',
    );
    expect(dq(image).source).toBe('cam');
    await log.waitFor(
      'a frame result flagged',
      (m) =>
        m.topic === `vigil/${DEVICE}/results/inspection` &&
        (m.payload as { dataQuality?: { flagged?: boolean } }).dataQuality?.flagged === true,
    );
    await frames('png', 4);
    await log.waitFor(
      'data_quality cleared for the frames',
      (m) => isDq(m) && dq(m).dataQuality.rule === 'image' && dq(m).dataQuality.state === 'cleared',
    );

    const checked = await log.checkAll(contracts, 'data-quality');
    expect(
      checked.filter((c) => c.errors.length > 0),
      `messages that break their contract:\n${describeFailures(checked)}`,
    ).toEqual([]);
    const files = new Set(checked.map((c) => c.entry!.file));
    expect(files).toContain('alert.data_quality.schema.json');
    expect(files).toContain('result.schema.json');
  }, 180_000);
});
