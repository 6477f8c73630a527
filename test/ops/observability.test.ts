import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../runtime/pipeline/result.js';
import { ROOT, startDaemon, waitFor, type RunningDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';

/**
 * One real daemon (`vigil run`, log level debug, every frame an alert) serves two claims:
 * - deploy/grafana/vigil-dashboard.json is a well-formed Grafana dashboard whose every PromQL
 *   metric name is one the daemon really exports (a renamed metric breaks this test, not a
 *   dashboard in a control room);
 * - a sample id follows a frame from the HTTP ingest to the alert: the id a camera sends in
 *   X-Request-Id (or a W3C traceparent) is the sample id in the ingest, result and alert-published
 *   log lines, in the stored result and in the published and stored alert.
 */

const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/vigil-dashboard.json');

interface Target {
  expr: string;
  refId: string;
  datasource: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  __inputs: Array<{ name: string; type: string; pluginId: string }>;
  templating: {
    list: Array<{
      name: string;
      type: string;
      query: unknown;
      datasource?: { uid: string };
      allValue?: string;
    }>;
  };
  panels: Panel[];
}

/** Metric names in a PromQL expression: vigil_* identifiers (label names and values never start so). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(vigil_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
}

/** Families of a Prometheus text scrape: name -> type, from the # TYPE lines. */
function families(scrape: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

/** Whether a name used in PromQL is a series of a family the daemon exports. */
function exported(name: string, fams: Map<string, string>): boolean {
  if (fams.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && (fams.get(base) === 'histogram' || fams.get(base) === 'summary');
}

function balanced(expr: string): boolean {
  const open: string[] = [];
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  let quoted = false;
  for (const ch of expr) {
    if (ch === '"') quoted = !quoted;
    if (quoted) continue;
    if ('([{'.includes(ch)) open.push(ch);
    else if (ch in pairs && open.pop() !== pairs[ch]) return false;
  }
  return open.length === 0 && !quoted;
}

async function frame(seed: number): Promise<Buffer> {
  return sharp({
    create: { width: 320, height: 240, channels: 3, background: { r: 40 + seed, g: 90, b: 140 } },
  })
    .jpeg()
    .toBuffer();
}

describe('observability against a running daemon', () => {
  let broker: RunningMosquitto;
  let daemon: RunningDaemon;
  let sub: MqttClient;
  let dir: string;
  let camPort: number;
  let dbPath: string;
  const alerts: Alert[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-observability-'));
    const httpPort = await freePort();
    camPort = await freePort();
    dbPath = path.join(dir, 'vigil.db');
    const cfg = path.join(dir, 'vigil.yaml');
    await writeFile(
      cfg,
      [
        'version: 1',
        'device: { id: obs-gw }',
        'log: { level: debug }',
        `http: { host: 127.0.0.1, port: ${httpPort} }`,
        `mqtt: { url: "${broker.url}" }`,
        `upstream: { url: "${broker.url}", classes: [alerts] }`,
        `store: { path: ${dbPath} }`,
        `models: { defect: { package: ${PACKAGE} } }`,
        `sources: { cam: { type: camera-http, listen: { host: 127.0.0.1, port: ${camPort} } } }`,
        // Threshold 0: every frame is an alert, so that each one travels the whole path.
        'pipelines: { inspection: { sources: [cam], model: defect, threshold: 0 } }',
      ].join('\n'),
    );
    sub = await mqtt.connectAsync(broker.url, { clientId: 'obs-subscriber' });
    sub.on('message', (topic, payload) => {
      if (topic.includes('/alerts/')) alerts.push(JSON.parse(payload.toString()) as Alert);
    });
    await sub.subscribeAsync('vigil/obs-gw/alerts/#', { qos: 1 });
    daemon = await startDaemon(cfg, httpPort);
  });

  afterAll(async () => {
    await sub?.endAsync();
    const code = await daemon?.stop();
    await broker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  async function post(headers: Record<string, string>, seed: number) {
    const res = await fetch(`http://127.0.0.1:${camPort}/frames`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', ...headers },
      body: await frame(seed),
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { id: string };
    expect(res.headers.get('x-request-id')).toBe(body.id);
    return body.id;
  }

  function logLines(): Array<Record<string, unknown>> {
    return daemon
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  describe('sample id from ingest to alert', () => {
    it("keeps the camera's X-Request-Id as the sample id in logs, store and alert", async () => {
      const requestId = `line3-cam2-${Date.now()}`;
      expect(await post({ 'x-request-id': requestId }, 1)).toBe(requestId);

      const published = await waitFor('the alert of the frame on MQTT', () =>
        alerts.find((a) => a.sampleId === requestId),
      );
      const lines = await waitFor('the alert-published log line', () => {
        const all = logLines().filter((l) => l.sampleId === requestId);
        return all.some((l) => l.msg === 'alert published') ? all : undefined;
      });
      // `jq -c 'select(.sampleId == "<id>")'` over the log gives this, in this order.
      const byMsg = (msg: string) => lines.find((l) => l.msg === msg);
      const received = byMsg('frame received');
      const result = byMsg('result stored');
      const sent = byMsg('alert published');
      expect(received, 'ingest line').toMatchObject({ level: 20, source: 'cam', idFromClient: true });
      expect(result, 'result line').toMatchObject({
        level: 20,
        pipeline: 'inspection',
        alertId: published.id,
      });
      expect(sent, 'alert-published line').toMatchObject({
        level: 20,
        pipeline: 'inspection',
        alertId: published.id,
        resultId: result?.resultId,
        kind: published.kind,
      });
      expect(lines.indexOf(received!)).toBeLessThan(lines.indexOf(result!));
      expect(lines.indexOf(result!)).toBeLessThan(lines.indexOf(sent!));

      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      try {
        const row = db.prepare('SELECT id, alert_id FROM results WHERE sample_id = ?').get(requestId) as
          { id: string; alert_id: string } | undefined;
        expect(row).toEqual({ id: result?.resultId, alert_id: published.id });
      } finally {
        db.close();
      }
      const api = (await (await fetch(`${daemon.url}/api/v1/alerts?limit=50`)).json()) as { alerts: Alert[] };
      expect(api.alerts.find((a) => a.id === published.id)?.sampleId).toBe(requestId);
    });

    it('takes the trace id of a traceparent header, and ignores an id that is not safe to log', async () => {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      expect(await post({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` }, 2)).toBe(traceId);
      await waitFor('the traceparent alert', () => alerts.find((a) => a.sampleId === traceId));

      const unsafe = await post({ 'x-request-id': 'evil\tid {"level":60}' }, 3);
      expect(unsafe).toMatch(/^[0-9a-f-]{36}$/);
      const ours = await post({}, 4);
      expect(ours).toMatch(/^[0-9a-f-]{36}$/);
      expect(ours).not.toBe(unsafe);
      await waitFor('our own id on an alert', () => alerts.find((a) => a.sampleId === ours));
      const received = logLines().find((l) => l.msg === 'frame received' && l.sampleId === ours);
      expect(received?.idFromClient).toBe(false);
      expect(daemon.logs()).not.toContain('evil');
    });
  });

  describe('Grafana dashboard', () => {
    let dashboard: Dashboard;
    beforeAll(async () => {
      dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
    });

    it('is an importable dashboard: Prometheus input, device and pipeline variables, panels on a grid', () => {
      expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
      expect(dashboard.uid).toBe('vigil-gateway');
      expect(dashboard.__inputs).toEqual([
        expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }),
      ]);
      const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
      for (const name of ['device', 'pipeline']) {
        expect(vars.get(name)?.type, name).toBe('query');
        expect(vars.get(name)?.datasource?.uid, name).toBe('${DS_PROMETHEUS}');
        // All must also match gateways scraped without a device label.
        expect(vars.get(name)?.allValue, name).toBe('.*');
      }
      const ids = dashboard.panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      const cells = new Set<string>();
      for (const p of dashboard.panels) {
        const g = p.gridPos;
        expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
        for (let x = g.x; x < g.x + g.w; x++)
          for (let y = g.y; y < g.y + g.h; y++) {
            expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
            cells.add(`${x},${y}`);
          }
        if (p.type === 'row') continue;
        expect(p.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
        expect(p.targets?.length, p.title).toBeGreaterThan(0);
        const refIds = p.targets!.map((t) => t.refId);
        expect(new Set(refIds).size, p.title).toBe(refIds.length);
        for (const t of p.targets!) {
          expect(t.datasource.uid, p.title).toBe('${DS_PROMETHEUS}');
          expect(balanced(t.expr), `${p.title}: ${t.expr}`).toBe(true);
          if (metricNames(t.expr).length > 0) expect(t.expr, p.title).toContain('device=~"$device"');
        }
      }
    });

    it('covers what an operator watches, with metric names the daemon exports', async () => {
      // Samples in the histograms and counters first, so that a scrape has them all.
      await post({}, 5);
      await waitFor('a processed frame', async () => {
        const text = await (await fetch(`${daemon.url}/metrics`)).text();
        return /^vigil_latency_seconds_count\{pipeline="inspection"\} [1-9]/m.test(text) ? true : undefined;
      });
      const scrape = await (await fetch(`${daemon.url}/metrics`)).text();
      const fams = families(scrape);
      const exprs = [
        ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
        ...dashboard.templating.list.map((v) => JSON.stringify(v.query)),
      ];
      const used = [...new Set(exprs.flatMap(metricNames))].sort();
      const missing = used.filter((n) => !exported(n, fams));
      expect(missing, 'metric names in the dashboard that /metrics does not export').toEqual([]);

      const wanted = [
        'vigil_latency_seconds_bucket', // e2e latency against the budget
        'vigil_samples_processed_total', // throughput
        'vigil_samples_dropped_total', // drops by reason
        'vigil_alerts_total', // alerts by kind
        'vigil_model_info', // versions in service
        'vigil_upstream_backlog_rows',
        'vigil_upstream_backlog_age_seconds',
        'vigil_upstream_rows_delivered_total',
        'vigil_upstream_connected',
        'vigil_source_up',
        'vigil_readings_total',
        'vigil_input_errors_total',
        'vigil_process_process_resident_memory_bytes',
        'vigil_process_process_cpu_seconds_total',
        'vigil_process_nodejs_eventloop_lag_p99_seconds',
        'vigil_drift_score',
        'vigil_drift_active',
        'vigil_drift_alerts_total',
        'vigil_http_auth_failures_total',
      ];
      expect(
        wanted.filter((n) => !used.includes(n)),
        'not on the dashboard',
      ).toEqual([]);
    });
  });
});
