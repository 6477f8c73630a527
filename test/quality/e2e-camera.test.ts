import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ROOT, metricValue, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { watch, type Watcher } from '../publish/subscriber.js';

// Image expectations as the daemon wires them: `vigil run` with an HTTP camera that expects
// JPEG frames of at least 320x240, read by two pipelines of the shipped defect model, one that
// skips out-of-spec frames and one that scores them with a flag. Frames are POSTed over HTTP;
// the data_quality alert comes from Mosquitto, the counts from /metrics.

const DEVICE = 'dq-cam-gw';
let dir: string;
let broker: RunningMosquitto;
let daemon: RunningDaemon;
let alerts: Watcher;
let results: Watcher;
let cameraUrl: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-dq-cam-'));
  broker = await startMosquitto();
  const httpPort = await freePort();
  const cameraPort = await freePort();
  cameraUrl = `http://127.0.0.1:${cameraPort}/frames`;
  const config = {
    version: 1,
    device: { id: DEVICE },
    http: { port: httpPort },
    mqtt: { url: broker.url },
    store: { path: path.join(dir, 'vigil.db') },
    models: { defect: { package: path.join(ROOT, 'models/defect/packages/defect-fp32-onnx') } },
    sources: {
      cam: {
        type: 'camera-http',
        listen: { port: cameraPort },
        expectations: {
          image: { formats: ['jpeg'], minWidth: 320, minHeight: 240 },
          alert: { raiseAfter: 2 },
        },
      },
    },
    pipelines: {
      strict: { sources: ['cam'], model: 'defect', budgetMs: 5000, dataQuality: { policy: 'skip' } },
      lenient: {
        sources: ['cam'],
        model: 'defect',
        budgetMs: 5000,
        publishResults: true,
        dataQuality: { policy: 'flag' },
      },
    },
  };
  const file = path.join(dir, 'vigil.yaml');
  await writeFile(file, stringify(config));
  alerts = await watch(broker.url, `vigil/${DEVICE}/alerts/data_quality`);
  results = await watch(broker.url, `vigil/${DEVICE}/results/lenient`);
  daemon = await startDaemon(file, httpPort, { timeoutMs: 60_000 });
}, 90_000);

afterAll(async () => {
  await alerts?.end();
  await results?.end();
  await daemon?.stop();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function post(width: number, height: number, format: 'jpeg' | 'png', id: string): Promise<void> {
  const img = sharp({ create: { width, height, channels: 3, background: { r: 120, g: 120, b: 120 } } });
  const body = await (format === 'png' ? img.png() : img.jpeg()).toBuffer();
  const res = await fetch(cameraUrl, {
    method: 'POST',
    headers: { 'content-type': `image/${format}`, 'x-request-id': id },
    body,
  });
  expect(res.status).toBe(202);
}

describe('image expectations end to end (vigil run, HTTP camera, Mosquitto)', () => {
  it('skip drops out-of-spec frames, flag scores them with the reason, and a data_quality alert is raised', async () => {
    await post(640, 480, 'jpeg', 'good-1');
    await waitFor('the good frame scored by both pipelines', async () => {
      const m = await (await fetch(`${daemon.url}/metrics`)).text();
      return metricValue(m, 'vigil_samples_processed_total', { pipeline: 'strict' }) === 1 &&
        metricValue(m, 'vigil_samples_processed_total', { pipeline: 'lenient' }) === 1
        ? true
        : undefined;
    });
    await post(640, 480, 'png', 'png-1');
    await waitFor('the first bad frame handled', async () => {
      const m = await (await fetch(`${daemon.url}/metrics`)).text();
      return metricValue(m, 'vigil_samples_processed_total', { pipeline: 'lenient' }) === 2
        ? true
        : undefined;
    });
    await post(160, 120, 'jpeg', 'small-1');

    const raised = await alerts.waitFor(
      (m) => (m.json['dataQuality'] as { state: string }).state === 'raised',
    );
    expect(raised.json).toMatchObject({
      kind: 'data_quality',
      label: 'image',
      source: 'cam',
      // The first pipeline that reads the camera (config order); every reader in dataQuality.
      pipeline: 'strict',
      sampleId: 'small-1',
      model: { name: 'defect-cnn', backend: 'onnxruntime-node', provider: 'cpu' },
      dataQuality: {
        state: 'raised',
        rule: 'image',
        message: expect.stringMatching(
          /: width 160 is under minWidth 320; height 120 is under minHeight 240$/,
        ),
        traceId: 'small-1',
        pipelines: ['strict', 'lenient'],
      },
    });

    const flagged = await results.waitFor((m) => m.json['sampleId'] === 'small-1');
    expect(flagged.json['dataQuality']).toMatchObject({
      flagged: true,
      violations: [
        { source: 'cam', rule: 'image', message: expect.stringContaining('width 160 is under minWidth 320') },
      ],
    });
    const png = await results.waitFor((m) => m.json['sampleId'] === 'png-1');
    expect(png.json['dataQuality']).toMatchObject({
      violations: [{ rule: 'image', message: expect.stringContaining('format png is not one of jpeg') }],
    });
    const good = await results.waitFor((m) => m.json['sampleId'] === 'good-1');
    expect(good.json['dataQuality']).toBeUndefined();

    const m = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(
      metricValue(m, 'vigil_samples_dropped_total', { pipeline: 'strict', reason: 'data_quality' }),
    ).toBe(2);
    expect(metricValue(m, 'vigil_samples_processed_total', { pipeline: 'strict' })).toBe(1);
    expect(metricValue(m, 'vigil_samples_processed_total', { pipeline: 'lenient' })).toBe(3);
    // Two pipelines checked each frame; each frame is counted once.
    expect(
      metricValue(m, 'vigil_expectation_violations_total', { source: 'cam', rule: 'image', tag: '' }),
    ).toBe(2);
  });
});
