import { randomBytes } from 'node:crypto';
import vm from 'node:vm';
import { fastify } from 'fastify';
import { Registry } from 'prom-client';
import sharp from 'sharp';
import { v7 as uuidv7 } from 'uuid';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../runtime/log.js';
import type { Manifest } from '../../runtime/model/manifest.js';
import { FrameGallery, FrameNotKeptError } from '../../runtime/ops/frame-gallery.js';
import { PipelineHistory, metricDrops, type DropCounts } from '../../runtime/ops/history.js';
import { startOpsServer, type HealthReport, type OpsServer } from '../../runtime/ops/http.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { liveView } from '../../runtime/ops/status-page/live.js';
import { STATUS_HTML } from '../../runtime/ops/status-page/page.js';
import { STATUS_JS } from '../../runtime/ops/status-page/script.js';
import { statusPageRoutes } from '../../runtime/ops/status-routes.js';
import type { ScoredSample } from '../../runtime/pipeline/observer.js';
import type { Alert, Result } from '../../runtime/pipeline/result.js';

const manifest = {} as Manifest;

function result(pipeline: string, over: Partial<Result> = {}): Result {
  return {
    id: uuidv7(),
    sampleId: uuidv7(),
    pipeline,
    source: 'cam1',
    origin: 'frame.jpg',
    receivedAt: Date.now(),
    producedAt: Date.now(),
    model: { name: 'defect-cnn', version: '1.2.0', backend: 'onnxruntime-node', provider: 'cpu' },
    label: 'ok',
    confidence: 0.9,
    score: 0.1,
    threshold: 0.5,
    scores: { ok: 0.9, crack: 0.1 },
    latencyMs: 12,
    stages: { queue: 0, decode: 1, preprocess: 1, inference: 5, postprocess: 0, store: 1 },
    ...over,
  };
}

function alertFor(r: Result): Alert {
  return {
    id: uuidv7(),
    timestamp: new Date(r.producedAt).toISOString(),
    device: 'gw',
    pipeline: r.pipeline,
    source: r.source,
    sampleId: r.sampleId,
    origin: r.origin,
    kind: 'defect',
    severity: 'critical',
    label: 'crack',
    score: 0.97,
    threshold: r.threshold,
    model: r.model,
    latencyMs: r.latencyMs,
  };
}

function frameSample(r: Result, data: Buffer, alert?: Alert): ScoredSample {
  return {
    pipeline: r.pipeline,
    kind: 'frame',
    manifest,
    input: new Float32Array(4),
    result: r,
    alert,
    frame: { data, contentType: 'image/jpeg' },
  };
}

const jpeg = (width = 640, height = 480) =>
  sharp({ create: { width, height, channels: 3, background: { r: 90, g: 120, b: 150 } } })
    .jpeg()
    .toBuffer();

describe('frame gallery', () => {
  it('keeps the last frames per pipeline and the last alert frames, newest first', async () => {
    const g = new FrameGallery({ perPipeline: 3, alertsPerPipeline: 2 });
    const data = await jpeg();
    const a: Result[] = [];
    for (let i = 0; i < 6; i++) {
      const r = result('line', { origin: `f${i}.jpg` });
      a.push(r);
      g.scored(frameSample(r, data, i === 1 || i === 2 ? alertFor(r) : undefined));
    }
    g.scored(frameSample(result('other'), data));
    // Telemetry windows are not frames.
    g.scored({ ...frameSample(result('line'), data), kind: 'window', frame: undefined });
    const v = g.view();
    expect(v.line!.latest.map((f) => f.origin)).toEqual(['f5.jpg', 'f4.jpg', 'f3.jpg']);
    expect(v.line!.alerts.map((f) => f.origin)).toEqual(['f2.jpg', 'f1.jpg']);
    expect(v.line!.alerts[0]!.alert).toEqual({ kind: 'defect', severity: 'critical' });
    expect(v.other!.latest).toHaveLength(1);
    expect(v.line!.latest[0]).toMatchObject({
      id: a[5]!.id,
      label: 'ok',
      score: 0.1,
      threshold: 0.5,
      version: '1.2.0',
    });
    expect(g.size).toBe(3 + 2 + 1);
  });

  it('makes a 320 px JPEG thumbnail on request, once, and only for its pipeline', async () => {
    const g = new FrameGallery();
    const r = result('line');
    g.scored(frameSample(r, await jpeg(1280, 960)));
    expect(g.thumbnail('other', r.id)).toBeUndefined();
    expect(g.thumbnail('line', uuidv7())).toBeUndefined();
    const first = g.thumbnail('line', r.id)!;
    expect(g.thumbnail('line', r.id)).toBe(first);
    const meta = await sharp(await first).metadata();
    expect(meta.format).toBe('jpeg');
    expect(meta.width).toBe(320);
    expect(meta.height).toBe(240);
    // A small frame is not enlarged.
    const small = result('line');
    g.scored(frameSample(small, await jpeg(160, 120)));
    expect((await sharp(await g.thumbnail('line', small.id)!).metadata()).width).toBe(160);
  });

  it('keeps a listed frame fetchable for a grace period after it left, and forgets unlisted ones at once', async () => {
    let now = 0;
    const g = new FrameGallery({ perPipeline: 1, alertsPerPipeline: 0, graceMs: 5_000, now: () => now });
    const data = await jpeg(64, 48);
    const listed = result('line');
    g.scored(frameSample(listed, data));
    g.view();
    const unlisted = result('line');
    g.scored(frameSample(unlisted, data));
    g.scored(frameSample(result('line'), data));
    expect(g.thumbnail('line', unlisted.id)).toBeUndefined();
    expect(g.thumbnail('line', listed.id)).toBeDefined();
    now = 5_001;
    expect(g.thumbnail('line', listed.id)).toBeUndefined();
    expect(g.size).toBe(1);
  });

  it('passes on boxes only in the shape the page draws', async () => {
    const g = new FrameGallery();
    const data = await jpeg(64, 48);
    const good = result('line', {
      boxes: [{ x: 0.1, y: 0.2, width: 0.3, height: 0.4, label: 'crack' }],
    } as Partial<Result>);
    const pixels = result('line', { boxes: [{ x: 10, y: 20, width: 30, height: 40 }] } as Partial<Result>);
    g.scored(frameSample(good, data));
    g.scored(frameSample(pixels, data));
    const [p, q] = g.view().line!.latest;
    expect(p!.boxes).toBeUndefined();
    expect(q!.boxes).toEqual([{ x: 0.1, y: 0.2, width: 0.3, height: 0.4, label: 'crack' }]);
  });
});

describe('frame gallery memory bound', () => {
  const MB = 1_000_000;
  const budget = 16 * 1024 * 1024;
  let big: Buffer | undefined;
  // A real 5 MB image (noise, stored uncompressed), as a 12 MP camera's PNG is a real 20 MB one.
  async function bigFrame(): Promise<Buffer> {
    big ??= await sharp(randomBytes(1300 * 1282 * 3), { raw: { width: 1300, height: 1282, channels: 3 } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    // Each frame its own allocation, as the pipeline hands them over.
    return Buffer.from(big);
  }

  it('keeps frames of 30 × 5 MB from 2 pipelines within the budget, the newest ones', async () => {
    const g = new FrameGallery({ maxBytes: budget });
    const frame = await bigFrame();
    expect(frame.length).toBeGreaterThan(5 * MB);
    expect(frame.length).toBeLessThan(5.1 * MB);
    const order: Result[] = [];
    for (let i = 0; i < 30; i++) {
      const r = result(i % 2 === 0 ? 'line-a' : 'line-b', { origin: `f${i}.png` });
      order.push(r);
      g.scored(frameSample(r, Buffer.from(frame), i % 5 === 0 ? alertFor(r) : undefined));
      expect(g.retainedBytes()).toBeLessThanOrEqual(budget);
    }
    // 3 frames of 5 MB fit in 16 MiB, 4 do not: the last 3 to arrive, whichever pipeline.
    expect(g.size).toBe(3);
    expect(g.retainedBytes()).toBe(3 * frame.length);
    const v = g.view();
    const listed = [
      ...v['line-a']!.latest,
      ...v['line-b']!.latest,
      ...v['line-a']!.alerts,
      ...v['line-b']!.alerts,
    ];
    expect(listed.map((f) => f.origin).sort()).toEqual(['f27.png', 'f28.png', 'f29.png']);
    // Every listed frame has a thumbnail to show; a forgotten one has none.
    for (const f of listed) {
      const pipeline = order.find((r) => r.id === f.id)!.pipeline;
      const meta = await sharp(await g.thumbnail(pipeline, f.id)!).metadata();
      expect(meta).toMatchObject({ format: 'jpeg', width: 320 });
    }
    expect(g.thumbnail('line-a', order[0]!.id)).toBeUndefined();
    expect(g.thumbnail('line-b', order[25]!.id)).toBeUndefined();
  });

  it('lets go of a frame once its thumbnail is made, and keeps the thumbnail longer', async () => {
    const g = new FrameGallery({ maxBytes: budget });
    const frame = await bigFrame();
    const first = result('line');
    g.scored(frameSample(first, Buffer.from(frame)));
    g.scored(frameSample(result('line'), Buffer.from(frame)));
    expect(g.retainedBytes()).toBe(2 * frame.length);
    g.view();
    const thumb = await g.thumbnail('line', first.id)!;
    // Only the thumbnail is counted now: a few KB instead of 5 MB.
    expect(g.retainedBytes()).toBe(frame.length + thumb.length);
    expect(thumb.length).toBeLessThan(MB);
    // Newer big frames push out the older big ones, not the small thumbnail.
    for (let i = 0; i < 6; i++) {
      g.scored(frameSample(result('line'), Buffer.from(frame)));
      expect(g.retainedBytes()).toBeLessThanOrEqual(budget);
    }
    expect(g.view().line!.latest.map((f) => f.id)).toContain(first.id);
    expect(await g.thumbnail('line', first.id)).toBe(thumb);
    expect(g.retainedBytes()).toBe(3 * frame.length + thumb.length);
  });

  it('keeps the bytes of a frame whose thumbnail is being made, and never keeps one over the budget', async () => {
    const g = new FrameGallery({ maxBytes: budget });
    const frame = await bigFrame();
    const asked = result('line');
    g.scored(frameSample(asked, Buffer.from(frame)));
    const pending = g.thumbnail('line', asked.id)!;
    // Asked for, not yet made: newer frames go before it does.
    for (let i = 0; i < 5; i++) g.scored(frameSample(result('line'), Buffer.from(frame)));
    expect(g.retainedBytes()).toBeLessThanOrEqual(budget);
    expect(g.view().line!.latest.map((f) => f.id)).toContain(asked.id);
    expect((await sharp(await pending).metadata()).width).toBe(320);

    const small = new FrameGallery({ maxBytes: 4 * MB });
    small.scored(frameSample(result('line'), Buffer.from(frame)));
    expect(small.size).toBe(0);
    expect(small.retainedBytes()).toBe(0);
    expect(small.view()).toEqual({});
  });

  it('answers 404 for a thumbnail whose frame left before its turn to be encoded', async () => {
    const g = new FrameGallery({ perPipeline: 1, alertsPerPipeline: 0 });
    const data = await jpeg(64, 48);
    const r = result('line');
    g.scored(frameSample(r, data));
    const thumb = g.thumbnail('line', r.id)!;
    // Not listed, so forgotten at once when the next frame takes its place.
    g.scored(frameSample(result('line'), data));
    await expect(thumb).rejects.toBeInstanceOf(FrameNotKeptError);
    await expect(thumb).rejects.toMatchObject({ statusCode: 404 });
    expect(g.thumbnail('line', r.id)).toBeUndefined();
    expect(g.retainedBytes()).toBe(data.buffer.byteLength);
  });
});

describe('pipeline history', () => {
  function window(pipeline: string, latencyMs: number): ScoredSample {
    const r = result(pipeline, { latencyMs });
    return { pipeline, kind: 'window', manifest, input: new Float32Array(1), result: r };
  }

  it('records per-interval percentiles, rate, drops by reason and over-budget counts', async () => {
    let now = 1_000_000;
    let drops: DropCounts = {};
    const h = new PipelineHistory({
      budgets: { line: 50, pump: 100 },
      drops: () => drops,
      log: silentLogger(),
      intervalMs: 2_000,
      windowMs: 10_000,
      clock: () => now,
    });
    for (let ms = 1; ms <= 100; ms++)
      h.scored(frameSample(result('line', { latencyMs: ms }), Buffer.alloc(0)));
    drops = { line: { kind: 'frame', reasons: { deadline: 3 } } };
    now += 2_000;
    await h.tick();
    let v = h.view();
    expect(v.fields).toEqual(['t', 'rate', 'p50', 'p95', 'p99', 'dropped', 'overBudget']);
    expect(v.pipelines.line).toMatchObject({ kind: 'frame', budgetMs: 50, droppedByReason: { deadline: 3 } });
    expect(v.pipelines.line!.points).toEqual([[now, 50, 50, 95, 99, 3, 50]]);
    // A pipeline that scored nothing has an empty point, not a missing one.
    expect(v.pipelines.pump!.points).toEqual([[now, 0, null, null, null, 0, 0]]);

    h.scored(window('pump', 7));
    drops = { line: { kind: 'frame', reasons: { deadline: 5, superseded: 1 } } };
    now += 2_000;
    await h.tick();
    v = h.view(now - 1);
    expect(v.pipelines.line!.points).toEqual([[now, 0, null, null, null, 3, 0]]);
    expect(v.pipelines.line!.droppedByReason).toEqual({ deadline: 5, superseded: 1 });
    expect(v.pipelines.pump).toMatchObject({ kind: 'window', points: [[now, 0.5, 7, 7, 7, 0, 0]] });

    // Bounded to the window: 10 s of 2 s points.
    for (let i = 0; i < 10; i++) {
      now += 2_000;
      await h.tick();
    }
    v = h.view();
    expect(v.pipelines.line!.points).toHaveLength(5);
    expect(v.pipelines.line!.droppedByReason).toEqual({});
  });

  it('reads drops from the pipelines metrics', async () => {
    const metrics = new Metrics();
    metrics.dropped.inc({ pipeline: 'line', reason: 'deadline' }, 4);
    metrics.dropped.inc({ pipeline: 'line', reason: 'superseded' });
    metrics.windowsSkipped.inc({ pipeline: 'pump', reason: 'gap' }, 2);
    expect(await metricDrops(metrics)()).toEqual({
      line: { kind: 'frame', reasons: { deadline: 4, superseded: 1 } },
      pump: { kind: 'window', reasons: { gap: 2 } },
    });
  });
});

describe('live view', () => {
  const health: HealthReport = {
    ready: true,
    models: [
      {
        name: 'defect',
        model: 'defect-cnn',
        version: '1.2.0',
        backend: 'onnx',
        provider: 'cpu',
        ready: true,
      },
      { name: 'broken', ready: false, error: { code: 'VIGIL_ERR_MODEL_LOAD', message: 'file missing' } },
    ],
    sources: [
      { name: 'cam1', type: 'camera-folder', state: 'up' },
      { name: 'opcua', type: 'opcua', state: 'down' },
    ],
    mqtt: { connected: true },
  };

  it('reads the daemon status defensively and says why it is not ready', () => {
    for (const status of [
      undefined,
      'nonsense',
      42,
      { upstream: 'x', store: [], telemetryPipelines: null },
    ]) {
      const v = liveView({ now: 1, statusAt: 1, health, ready: false, status, alerts: [null, 'x', {}] });
      expect(v.reasons).toEqual(['model broken: file missing']);
      expect(v.alerts).toEqual([]);
      expect(v.drift).toBeUndefined();
      expect(v.upstream).toEqual({ enabled: false, classes: {} });
    }
  });

  it('carries models with rollout, telemetry sources, store, upstream and drift', () => {
    const v = liveView({
      now: 1,
      statusAt: 1,
      health,
      ready: false,
      status: {
        device: 'gw',
        rollout: {
          defect: {
            state: 'shadow',
            candidate: { version: '1.3.0' },
            lastDecision: { reason: 'too_slow', message: 'p95 over' },
          },
        },
        telemetry: {
          opcua: {
            readings: { good: 5, bad: 1 },
            rejected: { malformed: 2 },
            reconnects: 1,
            lastReadingAt: 9,
          },
        },
        store: { classes: { alerts: { rows: 3, bytes: 100, quotaBytes: 1000 } }, outbox: { alerts: 1 } },
        upstream: {
          enabled: true,
          state: 'connected',
          drainRowsPerSecond: 4,
          classes: { alerts: { rows: 2, ageSeconds: 5, deliveredThisRun: 7 } },
        },
        drift: {
          line: {
            model: 'defect-cnn',
            version: '1.2.0',
            windowSamples: 500,
            active: true,
            alerts: 1,
            input: [
              { name: 'brightness', test: 'psi', value: 0.4, threshold: 0.2, drifted: true, samples: 500 },
            ],
            output: [{ name: 'score', test: 'ks', value: 0.1, threshold: 0.2, drifted: false, samples: 500 }],
          },
        },
      },
      alerts: [
        {
          id: 'a1',
          kind: 'defect',
          severity: 'critical',
          model: { name: 'm', version: '1' },
          publishedAt: null,
        },
      ],
    });
    expect(v.device).toBe('gw');
    expect(v.models[0]!.rollout).toEqual({
      state: 'shadow',
      candidate: '1.3.0',
      reason: 'too_slow',
      message: 'p95 over',
    });
    expect(v.models[1]!.error).toBe('file missing');
    expect(v.sources[1]).toMatchObject({
      name: 'opcua',
      readings: 6,
      rejected: { malformed: 2 },
      reconnects: 1,
    });
    expect(v.sources[0]!.readings).toBeUndefined();
    expect(v.store).toEqual({
      classes: { alerts: { rows: 3, bytes: 100, quotaBytes: 1000 } },
      outboxAlerts: 1,
      error: undefined,
    });
    expect(v.upstream.classes.alerts).toEqual({ rows: 2, ageSeconds: 5, delivered: 7 });
    expect(v.drift!.line!.input[0]).toMatchObject({ name: 'brightness', drifted: true });
    expect(v.alerts[0]).toMatchObject({ id: 'a1', model: 'm', published: false });
  });
});

describe('status page routes', () => {
  const servers: OpsServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  async function start(gallery?: FrameGallery) {
    const server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      log: silentLogger(),
      registry: new Registry(),
      health: () => ({ models: [], sources: [{ name: '<cam>', state: 'up' }], mqtt: { connected: false } }),
      api: { status: () => ({ device: '<script>alert(1)</script>' }), alerts: () => [] },
      statusPage: { gallery },
    });
    servers.push(server);
    return server;
  }

  it('serves a page with a strict CSP, no inline script and nothing from the outside in its markup', async () => {
    const server = await start();
    const res = await fetch(`${server.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = res.headers.get('content-security-policy')!;
    for (const d of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"])
      expect(csp).toContain(d);
    expect(csp).not.toMatch(/unsafe/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).toBe(STATUS_HTML);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(html).not.toMatch(/\son[a-z]+=/);
    expect(html).not.toContain('<cam>');
    for (const link of ['/healthz', '/readyz', '/metrics', '/api/v1/status', '/api/v1/alerts']) {
      expect(html).toContain(`href="${link}`);
    }
    const js = await fetch(`${server.url}/status.js`);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    // It parses (a template literal slip in the module would not).
    expect(() => new vm.Script(STATUS_JS)).not.toThrow();
    expect(await js.text()).toBe(STATUS_JS);
    // Revalidation by ETag costs no body.
    const css = await fetch(`${server.url}/status.css`);
    const again = await fetch(`${server.url}/status.css`, {
      headers: { 'if-none-match': css.headers.get('etag')! },
    });
    expect(again.status).toBe(304);
  });

  it('serves the live JSON, refuses a bad since, and serves kept frames only', async () => {
    const gallery = new FrameGallery();
    const r = result('line');
    gallery.scored(frameSample(r, await jpeg()));
    const server = await start(gallery);
    const res = await fetch(`${server.url}/api/v1/live`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('server-timing')).toMatch(/total;dur=\d/);
    const live = (await res.json()) as {
      device: string;
      frames: Record<string, { latest: { id: string }[] }>;
      sources: unknown[];
    };
    // JSON carries names as data; the page writes them as text.
    expect(live.device).toBe('<script>alert(1)</script>');
    expect(live.frames.line!.latest[0]!.id).toBe(r.id);
    expect((await fetch(`${server.url}/api/v1/live?since=abc`)).status).toBe(400);

    const thumb = await fetch(`${server.url}/api/v1/frames/line/${r.id}.jpg`);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('content-type')).toBe('image/jpeg');
    expect(thumb.headers.get('cache-control')).toContain('immutable');
    expect((await sharp(Buffer.from(await thumb.arrayBuffer())).metadata()).width).toBe(320);
    for (const bad of [
      `other/${r.id}.jpg`,
      `line/${uuidv7()}.jpg`,
      `line/${r.id}.png`,
      'line/..%2F..%2Fetc%2Fpasswd',
    ]) {
      expect((await fetch(`${server.url}/api/v1/frames/${bad}`)).status, bad).toBe(404);
    }
  });

  it('works without a gallery or history', async () => {
    const server = await start();
    const live = (await (await fetch(`${server.url}/api/v1/live`)).json()) as {
      frames: unknown;
      history?: unknown;
    };
    expect(live.frames).toEqual({});
    expect(live.history).toBeUndefined();
    expect((await fetch(`${server.url}/api/v1/frames/line/${uuidv7()}.jpg`)).status).toBe(404);
  });

  it('reuses status() between polls, for longer when it is expensive', async () => {
    let calls = 0;
    let costMs = 0;
    const app = fastify();
    await app.register(statusPageRoutes, {
      health: () => ({ models: [], sources: [], mqtt: { connected: true } }),
      isReady: () => true,
      status: () => {
        calls++;
        const until = performance.now() + costMs;
        while (performance.now() < until);
        return { device: 'gw' };
      },
      alerts: () => [],
      statusMaxAgeMs: 0,
    });
    const live = async () =>
      (await app.inject({ method: 'GET', url: '/api/v1/live' })).json<{ statusAt: number }>();
    // Cheap (well under 2 ms): read again on a poll 200 ms later.
    await live();
    await new Promise((r) => setTimeout(r, 200));
    await live();
    expect(calls).toBe(2);
    // 20 ms to compute: reused for at least 2 s.
    costMs = 20;
    await new Promise((r) => setTimeout(r, 200));
    const first = await live();
    const second = await live();
    expect(calls).toBe(3);
    expect(second.statusAt).toBe(first.statusAt);
    await app.close();
  });
});
