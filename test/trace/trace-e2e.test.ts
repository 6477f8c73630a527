import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import sharp from 'sharp';
import sparkplug from 'sparkplug-payload';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Alert, Result, TelemetryDetails } from '../../runtime/pipeline/result.js';
import type { TelemetryPipelineStats } from '../../runtime/pipeline/telemetry-pipeline.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { ROOT, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { UpstreamReceiver } from '../helpers/upstream-receiver.js';
import { watch, type Watcher } from '../publish/subscriber.js';

/**
 * Trace ids end to end, through one real daemon (`vigil run`, log level debug), a local
 * Mosquitto (sources and alerts) and an upstream Mosquitto (store and forward):
 * - a frame POSTed with X-Request-Id: its id and the sha256 of its bytes are in the stored
 *   result, the alert published on the broker, the result stream, the upstream alert and result,
 *   and the debug log lines;
 * - telemetry published as JSON on MQTT: every reading is stored with its message's trace id
 *   (given at ingest), the window scored from a message has that id in details.traceIds (stored,
 *   published as result and alert, forwarded), and the upstream readings carry it;
 * - Sparkplug B with a payload uuid: the uuid is the readings' trace id, and the window's.
 */

const DEFECT = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const MEAN_RUL = path.join(ROOT, 'test/fixtures/telemetry-models/mean-rul');
const DEVICE = 'trace-gw';
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const tahu = sparkplug.get('spBv1.0')!;

type Item = Record<string, unknown> & { id: string; seq: number };

describe('trace ids from input to result, alert, log and upstream', () => {
  let local: RunningMosquitto;
  let upstreamBroker: RunningMosquitto;
  let receiver: UpstreamReceiver;
  let daemon: RunningDaemon;
  let watcher: Watcher;
  let plant: MqttClient;
  let dir: string;
  let dbPath: string;
  let camPort: number;

  beforeAll(async () => {
    [local, upstreamBroker] = await Promise.all([startMosquitto(), startMosquitto()]);
    receiver = await UpstreamReceiver.start({ url: upstreamBroker.url });
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-trace-'));
    dbPath = path.join(dir, 'vigil.db');
    const httpPort = await freePort();
    camPort = await freePort();
    const cfg = path.join(dir, 'vigil.yaml');
    await writeFile(
      cfg,
      stringify({
        version: 1,
        device: { id: DEVICE },
        log: { level: 'debug' },
        http: { host: '127.0.0.1', port: httpPort },
        mqtt: { url: local.url },
        upstream: {
          url: upstreamBroker.url,
          classes: ['alerts', 'results', 'readings'],
          reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
        },
        store: { path: dbPath },
        models: { defect: { package: DEFECT }, rul: { package: MEAN_RUL, warmupRuns: 1 } },
        sources: {
          cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: camPort } },
          plant: {
            type: 'mqtt-json',
            url: local.url,
            clientId: `vigil-trace-plant-${process.pid}`,
            reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
            subscriptions: [
              {
                topic: 'plant/+/data',
                asset: '{1}',
                tags: { a: 'a', b: 'b', c: 'c', cycle: 'cycle' },
                timestampField: 'ts',
              },
            ],
          },
          spb: {
            type: 'sparkplug-b',
            url: local.url,
            groupId: 'tracegrp',
            reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
          },
        },
        pipelines: {
          // Threshold 0: every frame raises an alert, so that it travels the whole path.
          inspection: { sources: ['cam'], model: 'defect', threshold: 0, publishResults: true },
          // RUL = the window's mean; 50 with two windows in a row raises (as in telemetry-daemon.test.ts).
          engines: { sources: ['plant'], model: 'rul', threshold: 50, publishResults: true },
          edge: { sources: ['spb'], model: 'rul', threshold: 50, publishResults: true },
        },
      }),
    );
    watcher = await watch(local.url, `vigil/${DEVICE}/#`);
    daemon = await startDaemon(cfg, httpPort);
    await waitFor('the MQTT sources', async () => {
      const s = (await (await fetch(`${daemon.url}/api/v1/status`)).json()) as {
        telemetry: Record<string, { state: string }>;
      };
      return s.telemetry.plant?.state === 'up' && s.telemetry.spb?.state === 'up' ? true : undefined;
    });
    plant = await mqtt.connectAsync(local.url, { clientId: `trace-plant-${process.pid}` });
  });

  afterAll(async () => {
    await plant?.endAsync(true);
    await watcher?.end();
    const code = await daemon?.stop();
    await receiver?.stop();
    await Promise.all([local?.stop(), upstreamBroker?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  function logLines(): Array<Record<string, unknown>> {
    return daemon
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  function db<T>(fn: (d: Database.Database) => T): T {
    const d = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      return fn(d);
    } finally {
      d.close();
    }
  }

  const upstreamItems = (cls: 'alerts' | 'results' | 'readings') =>
    receiver.items(cls).map((r) => r.item as unknown as Item);

  async function telemetryStats(pipeline: string): Promise<TelemetryPipelineStats> {
    const s = (await (await fetch(`${daemon.url}/api/v1/status`)).json()) as {
      telemetryPipelines: Record<string, TelemetryPipelineStats>;
    };
    return s.telemetryPipelines[pipeline]!;
  }

  it('follows a camera frame by its X-Request-Id and its sha256 into result, alert, log and upstream', async () => {
    const body = await sharp({
      create: { width: 320, height: 240, channels: 3, background: { r: 60, g: 90, b: 140 } },
    })
      .jpeg()
      .toBuffer();
    const sha = createHash('sha256').update(body).digest('hex');
    const requestId = `line3-cam2-${Date.now()}`;
    const res = await fetch(`http://127.0.0.1:${camPort}/frames`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': requestId },
      body,
    });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id: requestId });

    // On the local broker: the alert and the result stream.
    const alert = (
      await watcher.waitFor((m) => m.topic.includes('/alerts/') && m.json.sampleId === requestId)
    ).json as unknown as Alert;
    expect(alert.payloadSha256).toBe(sha);
    const published = (
      await watcher.waitFor(
        (m) => m.topic === `vigil/${DEVICE}/results/inspection` && m.json.sampleId === requestId,
      )
    ).json as unknown as Result;
    expect(published).toMatchObject({ payloadSha256: sha, alertId: alert.id });

    // In the store: the result row has the hash of the bytes sent.
    const row = db((d) =>
      d.prepare('SELECT id, alert_id, payload_sha256 FROM results WHERE sample_id = ?').get(requestId),
    );
    expect(row).toEqual({ id: published.id, alert_id: alert.id, payload_sha256: sha });

    // Upstream: the alert and the result, each with the sample id and the hash.
    await receiver.until(
      () =>
        upstreamItems('alerts').some((i) => i.id === alert.id) &&
        upstreamItems('results').some((i) => i.id === published.id),
      'the frame alert and result upstream',
    );
    expect(upstreamItems('alerts').find((i) => i.id === alert.id)).toMatchObject({
      sampleId: requestId,
      payloadSha256: sha,
    });
    expect(upstreamItems('results').find((i) => i.id === published.id)).toMatchObject({
      sampleId: requestId,
      payloadSha256: sha,
      alertId: alert.id,
    });

    // The debug log: received, stored, published, all under the request id.
    const lines = await waitFor('the alert-published line', () => {
      const all = logLines().filter((l) => l.sampleId === requestId);
      return all.some((l) => l.msg === 'alert published') ? all : undefined;
    });
    expect(lines.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['frame received', 'frame offered', 'result stored', 'alert published']),
    );
    expect(lines.find((l) => l.msg === 'result stored')).toMatchObject({
      resultId: published.id,
      alertId: alert.id,
    });
  });

  it('follows an MQTT JSON message by its trace id into readings, the window result, its alert and upstream', async () => {
    const start = Date.now() - 60_000;
    for (let cycle = 1; cycle <= 8; cycle++) {
      const v = cycle <= 5 ? 80 : 20;
      await plant.publishAsync(
        'plant/unit7/data',
        JSON.stringify({ ts: start + cycle * 1000, cycle, a: v, b: v, c: v }),
        { qos: 1 },
      );
      // One cycle at a time: every window is scored, none superseded.
      if (cycle >= 4)
        await waitFor(`window ${cycle}`, async () =>
          (await telemetryStats('engines')).windowsScored === cycle - 3 ? true : undefined,
        );
    }

    // Windows are cut from readings as they are accepted, before the batch is committed.
    await waitFor('the 32 readings of unit7 in the store', () =>
      db((d) => d.prepare("SELECT count(*) AS n FROM readings WHERE asset = 'unit7'").get() as { n: number })
        .n === 32
        ? true
        : undefined,
    );
    // Stored: each message's 4 readings share one UUIDv7 given at ingest; messages differ.
    const stored = db(
      (d) =>
        d
          .prepare("SELECT tag, value, trace_id, source_time FROM readings WHERE asset = 'unit7' ORDER BY id")
          .all() as Array<{ tag: string; value: number; trace_id: string; source_time: number }>,
    );
    expect(stored).toHaveLength(32);
    const traceOf = new Map<number, string>();
    for (const r of stored) {
      expect(r.trace_id).toMatch(UUID_V7);
      const cycle = (r.source_time - start) / 1000;
      if (traceOf.has(cycle)) expect(r.trace_id).toBe(traceOf.get(cycle));
      else traceOf.set(cycle, r.trace_id);
    }
    expect(new Set(traceOf.values()).size).toBe(8);
    const t8 = traceOf.get(8)!;

    // The window ending at cycle 8 raised the alert: its details name message 8.
    const raised = (
      await watcher.waitFor(
        (m) =>
          m.topic === `vigil/${DEVICE}/alerts/failure_risk` && (m.json as unknown as Alert).asset === 'unit7',
      )
    ).json as unknown as Alert;
    expect(raised.details).toMatchObject({ state: 'raised', axisEnd: 8, traceIds: [t8] });
    const result8 = (
      await watcher.waitFor(
        (m) =>
          m.topic === `vigil/${DEVICE}/results/engines` && (m.json.details as TelemetryDetails).axisEnd === 8,
      )
    ).json as unknown as Result;
    expect(result8.details?.traceIds).toEqual([t8]);
    expect(result8.alertId).toBe(raised.id);
    // Every published window result names exactly the message of its last cycle.
    const results = watcher.received.filter((m) => m.topic === `vigil/${DEVICE}/results/engines`);
    expect(results.map((m) => (m.json.details as TelemetryDetails).traceIds)).toEqual(
      [4, 5, 6, 7, 8].map((c) => [traceOf.get(c)]),
    );

    // The store finds the result by the message's trace id (the query docs/OBSERVABILITY.md shows).
    const found = db((d) =>
      d.prepare("SELECT r.id FROM results r, json_each(r.details, '$.traceIds') t WHERE t.value = ?").all(t8),
    );
    expect(found).toEqual([{ id: result8.id }]);

    // Upstream: the readings with their trace ids, the result and the alert with details.traceIds.
    await receiver.until(
      () =>
        upstreamItems('readings').filter((i) => i.asset === 'unit7').length === 32 &&
        upstreamItems('results').some((i) => i.id === result8.id) &&
        upstreamItems('alerts').some((i) => i.id === raised.id),
      'unit7 upstream',
    );
    const upReadings = upstreamItems('readings').filter((i) => i.asset === 'unit7') as unknown as Reading[];
    expect(upReadings.map((r) => r.traceId)).toEqual(stored.map((r) => r.trace_id));
    expect(
      upReadings
        .filter((r) => r.traceId === t8)
        .map((r) => [r.tag, r.value])
        .sort(),
    ).toEqual([
      ['a', 20],
      ['b', 20],
      ['c', 20],
      ['cycle', 8],
    ]);
    expect(
      (upstreamItems('results').find((i) => i.id === result8.id) as unknown as Result).details?.traceIds,
    ).toEqual([t8]);
    expect(
      (upstreamItems('alerts').find((i) => i.id === raised.id) as unknown as Alert).details?.traceIds,
    ).toEqual([t8]);

    // The debug line of the scored window names the message too.
    const line = logLines().find((l) => l.msg === 'result stored' && l.resultId === result8.id);
    expect(line).toMatchObject({ level: 20, asset: 'unit7', traceIds: [t8] });
  });

  it("takes a Sparkplug B payload's uuid as the trace id of its readings and of the window", async () => {
    const start = Date.now() - 60_000;
    const topic = (type: string, device?: string) =>
      `spBv1.0/tracegrp/${type}/edge1${device ? `/${device}` : ''}`;
    const values = (cycle: number) => {
      const v = cycle <= 5 ? 80 : 20;
      return [
        { name: 'cycle', type: 'Double', value: cycle },
        { name: 'a', type: 'Double', value: v },
        { name: 'b', type: 'Double', value: v },
        { name: 'c', type: 'Double', value: v },
      ];
    };
    const send = (t: string, payload: Record<string, unknown>) =>
      plant.publishAsync(t, Buffer.from(tahu.encodePayload(payload)), { qos: 0 });
    await send(topic('NBIRTH'), {
      timestamp: start,
      seq: 0,
      metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }],
    });
    // The DBIRTH brings cycle 1; the DDATAs cycles 2..8. Each message names itself in its uuid.
    await send(topic('DBIRTH', 'unit9'), {
      timestamp: start + 1000,
      seq: 1,
      uuid: 'spb-unit9-c1',
      metrics: values(1),
    });
    for (let cycle = 2; cycle <= 8; cycle++) {
      await send(topic('DDATA', 'unit9'), {
        timestamp: start + cycle * 1000,
        seq: cycle,
        uuid: `spb-unit9-c${cycle}`,
        metrics: values(cycle),
      });
      if (cycle >= 4)
        await waitFor(`window ${cycle}`, async () =>
          (await telemetryStats('edge')).windowsScored === cycle - 3 ? true : undefined,
        );
    }
    // Sparkplug readings are not acknowledged to the sender: they reach the store in the next
    // batch (telemetry.flushIntervalMs), which can be after the window was scored.
    await waitFor('the 32 readings of unit9 in the store', () =>
      db((d) => d.prepare("SELECT count(*) AS n FROM readings WHERE asset = 'unit9'").get() as { n: number })
        .n === 32
        ? true
        : undefined,
    );
    const traces = db(
      (d) =>
        d.prepare("SELECT DISTINCT trace_id FROM readings WHERE asset = 'unit9' ORDER BY id").all() as Array<{
          trace_id: string;
        }>,
    );
    expect(traces.map((t) => t.trace_id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((c) => `spb-unit9-c${c}`));
    const raised = (
      await watcher.waitFor(
        (m) =>
          m.topic === `vigil/${DEVICE}/alerts/failure_risk` && (m.json as unknown as Alert).asset === 'unit9',
      )
    ).json as unknown as Alert;
    expect(raised.details).toMatchObject({ state: 'raised', axisEnd: 8, traceIds: ['spb-unit9-c8'] });
  });
});
