import net from 'node:net';
import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { VigilError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/log.js';
import { startOpsServer, type HealthReport, type OpsServer } from '../../runtime/ops/http.js';

function report(overrides: Partial<HealthReport> = {}): HealthReport {
  return {
    models: [{ name: 'defect', version: '1.2.0', backend: 'onnx', provider: 'cpu', ready: true }],
    sources: [{ name: 'cam1', state: 'running' }],
    store: { open: true },
    mqtt: { connected: false },
    ...overrides,
  };
}

describe('ops HTTP server', () => {
  const servers: OpsServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  async function start(health: () => HealthReport, extra: { registry?: Registry; alerts?: unknown[] } = {}) {
    const registry = extra.registry ?? new Registry();
    const seenLimits: number[] = [];
    const server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      log: silentLogger(),
      registry,
      health,
      api: {
        status: () => ({ device: 'gw-7', uptime: 1 }),
        alerts: async (limit) => {
          seenLimits.push(limit);
          return (extra.alerts ?? []).slice(0, limit);
        },
      },
    });
    servers.push(server);
    return { server, seenLimits };
  }

  it('answers /healthz while alive', async () => {
    const { server } = await start(() => report());
    expect(server.port).toBeGreaterThan(0);
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('is ready only with every model ready and the store open, and says why not', async () => {
    let current = report();
    const { server } = await start(() => current);

    let res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: 'ready',
      models: [{ name: 'defect', version: '1.2.0', backend: 'onnx', provider: 'cpu', ready: true }],
      sources: [{ name: 'cam1', state: 'running' }],
      mqtt: { connected: false },
    });

    current = report({
      models: [
        { name: 'defect', version: '1.2.0', backend: 'onnx', provider: 'cpu', ready: true },
        { name: 'scratch', version: '0.1.0', backend: 'tflite', provider: 'xnnpack', ready: false },
      ],
    });
    res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { status: string; models: { name: string; ready: boolean }[] };
    expect(body.status).toBe('not ready');
    expect(body.models.find((m) => m.name === 'scratch')?.ready).toBe(false);

    current = report({ store: { open: false } });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);

    // The caller's own verdict (e.g. shutting down) wins even when every part looks fine.
    current = { ...report(), ready: false };
    res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ready: false, status: 'not ready' });

    current = { ...report(), store: undefined, ready: true };
    res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ready: true });
  });

  it('serves Prometheus metrics with the registry content type', async () => {
    const registry = new Registry();
    const counter = new Counter({ name: 'vigil_test_frames_total', help: 'frames', registers: [registry] });
    counter.inc(3);
    const { server } = await start(() => report(), { registry });
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(registry.contentType);
    expect(await res.text()).toContain('vigil_test_frames_total 3');
  });

  it('serves the JSON API and validates limit', async () => {
    const alerts = [{ id: 'a3' }, { id: 'a2' }, { id: 'a1' }];
    const { server, seenLimits } = await start(() => report(), { alerts });
    expect(await (await fetch(`${server.url}/api/v1/status`)).json()).toEqual({ device: 'gw-7', uptime: 1 });

    let res = await fetch(`${server.url}/api/v1/alerts?limit=2`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ alerts: [{ id: 'a3' }, { id: 'a2' }] });
    res = await fetch(`${server.url}/api/v1/alerts`);
    expect(await res.json()).toEqual({ alerts });
    expect(seenLimits).toEqual([2, 50]);

    for (const bad of ['0', '-1', 'abc', '1.5', '100000']) {
      res = await fetch(`${server.url}/api/v1/alerts?limit=${bad}`);
      expect(res.status, `limit=${bad}`).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(/limit must be/);
    }
  });

  it('serves the status page shell linking the other endpoints, with no outside data in it', async () => {
    const { server } = await start(() =>
      report({
        sources: [{ name: '<cam>', state: 'failed' }],
        models: [
          { name: 'broken', ready: false, error: { code: 'VIGIL_ERR_MODEL_LOAD', message: 'file missing' } },
        ],
      }),
    );
    const res = await fetch(`${server.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    for (const link of ['/healthz', '/readyz', '/metrics', '/api/v1/status', '/api/v1/alerts']) {
      expect(html).toContain(`href="${link}`);
    }
    // Names from the outside reach the page only through /api/v1/live, rendered as text by
    // the page's script (test/ops/status-page*.test.ts); the shell itself never carries them.
    expect(html).not.toContain('<cam>');
  });

  it('returns 500 without details when a callback throws', async () => {
    const { server } = await start(() => {
      throw new Error('boom');
    });
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(500);
    expect(JSON.stringify(await res.json())).not.toContain('boom');
  });

  it('reports a taken port as VIGIL_ERR_PORT_IN_USE naming http.port', async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const port = (squatter.address() as net.AddressInfo).port;
    try {
      const err = await startOpsServer({
        host: '127.0.0.1',
        port,
        log: silentLogger(),
        registry: new Registry(),
        health: () => report(),
        api: { status: () => ({}), alerts: () => [] },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VigilError);
      expect((err as VigilError).code).toBe('VIGIL_ERR_PORT_IN_USE');
      expect((err as VigilError).message).toContain(String(port));
      expect((err as VigilError).message).toContain('http.port');
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });
});
