import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DriftStatus } from '../../runtime/drift/types.js';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { HttpSink } from '../../simulator/camera/sinks.js';
import { ROOT, metricValue, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { watch, type Watcher } from '../publish/subscriber.js';
import { contractErrors, keepMessages } from '../contracts/support.js';

// The drift wiring of the daemon, end to end: `vigil run` (the compiled CLI) with the shipped
// defect package, the simulator camera POSTing frames to its camera-http source, a lighting
// change injected with SimCamera.setLighting, and the drift alert seen where an operator sees
// it: on MQTT (alerts/drift), in /api/v1/status (drift) and in /metrics. A short window keeps
// it quick; the statistics with the default settings are measured in camera-drift.test.ts.

const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const DEVICE = 'drift-gw';

let broker: RunningMosquitto;
let daemon: RunningDaemon;
let watcher: Watcher;
let dir: string;
let camera: SimCamera | undefined;

async function drift(): Promise<DriftStatus | undefined> {
  const s = (await (await fetch(`${daemon.url}/api/v1/status`)).json()) as {
    drift?: Record<string, DriftStatus>;
  };
  return s.drift?.['inspection'];
}

async function metrics(): Promise<string> {
  return (await fetch(`${daemon.url}/metrics`)).text();
}

beforeAll(async () => {
  broker = await startMosquitto();
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-drift-daemon-'));
  const httpPort = await freePort();
  const camPort = await freePort();
  const cfg = path.join(dir, 'vigil.yaml');
  await writeFile(
    cfg,
    [
      'version: 1',
      `device: { id: ${DEVICE} }`,
      `http: { host: 127.0.0.1, port: ${httpPort} }`,
      `mqtt: { url: "${broker.url}" }`,
      `store: { path: ${dir}/vigil.db, synchronous: normal }`,
      `models: { defect: { package: ${PACKAGE} } }`,
      'sources:',
      `  cam: { type: camera-http, listen: { host: 127.0.0.1, port: ${camPort} }, maxBodyBytes: 2000000 }`,
      'pipelines:',
      '  inspection:',
      '    sources: [cam]',
      '    model: defect',
      '    budgetMs: 5000',
      '    drift: { windowSamples: 200, evaluateEverySamples: 50, consecutive: 2 }',
    ].join('\n'),
  );
  watcher = await watch(broker.url, `vigil/${DEVICE}/alerts/drift`);
  daemon = await startDaemon(cfg, httpPort);
  camera = new SimCamera({
    name: 'cam',
    fps: 40,
    width: 640,
    height: 480,
    defectRate: 0.2,
    seed: 21,
    format: 'jpeg',
    sink: new HttpSink(`http://127.0.0.1:${camPort}/frames`),
    render: renderFrame,
    maxInFlight: 2,
  });
});

afterAll(async () => {
  await camera?.stop();
  await watcher?.end();
  if (daemon) expect(await daemon.stop()).toBe(0);
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('drift monitoring in vigil run', () => {
  it('raises a drift alert after a lighting change and clears it after the light is back: MQTT, status, metrics', async () => {
    camera!.start();
    // A full window of ordinary frames, evaluated and found undrifted.
    const before = await waitFor(
      'a first evaluation',
      async () => {
        const d = await drift();
        return d && d.input.length > 0 ? d : undefined;
      },
      60_000,
    );
    expect(before).toMatchObject({
      model: 'defect-cnn',
      version: '1.0.0',
      windowSamples: 200,
      active: false,
      alerts: 0,
    });
    expect(before.input.map((m) => m.name)).toEqual(['brightness', 'contrast', 'sharpness']);
    expect(before.output.map((m) => `${m.name}/${m.test}`)).toEqual(['score/ks', 'class/psi']);
    for (const m of [...before.input, ...before.output])
      expect(Object.keys(m).sort()).toEqual(['drifted', 'name', 'samples', 'test', 'threshold', 'value']);

    // 40 % less light on the line.
    camera!.setLighting({ gain: 0.6 });
    const raised = await watcher.waitFor(
      (m) => (m.json['drift'] as { state?: string })?.state === 'raised',
      60_000,
    );
    expect(raised.topic).toBe(`vigil/${DEVICE}/alerts/drift`);
    expect(raised.json).toMatchObject({
      kind: 'drift',
      severity: 'warning',
      device: DEVICE,
      pipeline: 'inspection',
      origin: 'inspection',
      model: { name: 'defect-cnn', version: '1.0.0', backend: 'onnxruntime-node' },
      drift: { state: 'raised', window: { samples: 200 }, model: { name: 'defect-cnn', version: '1.0.0' } },
    });
    const during = (await drift())!;
    expect(during).toMatchObject({ active: true, alerts: 1, lastChange: raised.json['timestamp'] });
    let text = await metrics();
    expect(metricValue(text, 'vigil_drift_active', { pipeline: 'inspection' })).toBe(1);
    expect(metricValue(text, 'vigil_drift_alerts_total', { pipeline: 'inspection', state: 'raised' })).toBe(
      1,
    );
    expect(metricValue(text, 'vigil_alerts_total', { pipeline: 'inspection', kind: 'drift' })).toBe(1);
    expect(
      metricValue(text, 'vigil_drift_score', {
        pipeline: 'inspection',
        feature: 'input.brightness',
        test: 'psi',
      }),
    ).toBeGreaterThan(0.25);
    expect(
      metricValue(text, 'vigil_drift_score', { pipeline: 'inspection', feature: 'output.score', test: 'ks' }),
    ).toBeGreaterThan(0);
    // In the alert history of the API too, delivered.
    const history = (await (await fetch(`${daemon.url}/api/v1/alerts?limit=50`)).json()) as unknown;
    expect(JSON.stringify(history)).toContain(raised.json['id'] as string);

    camera!.setLighting(undefined);
    const cleared = await watcher.waitFor(
      (m) => (m.json['drift'] as { state?: string })?.state === 'cleared',
      60_000,
    );
    expect(cleared.json).toMatchObject({
      kind: 'drift',
      severity: 'info',
      drift: { clears: raised.json['id'] },
    });
    // Both match the published contract (docs/CONTRACTS.md, docs/schemas/v1/alert.drift.schema.json).
    const drifts = watcher.received.map((m) => ({ topic: m.topic, payload: m.json }));
    await keepMessages('drift', drifts);
    for (const m of drifts) expect(contractErrors(m.topic, m.payload), m.topic).toEqual([]);
    expect(await drift()).toMatchObject({ active: false, alerts: 1 });
    text = await metrics();
    expect(metricValue(text, 'vigil_drift_active', { pipeline: 'inspection' })).toBe(0);
    expect(metricValue(text, 'vigil_drift_alerts_total', { pipeline: 'inspection', state: 'cleared' })).toBe(
      1,
    );
    await camera!.stop();
  });
});
