import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpCameraSource } from '../../adapters/camera/http.js';
import { CameraHttpSource } from '../../runtime/config/schema.js';
import { VigilError } from '../../runtime/errors.js';
import { Recorder } from './recorder.js';

let jpeg: Buffer;
let png: Buffer;
const running: HttpCameraSource[] = [];

beforeAll(async () => {
  jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 40, b: 40 } } })
    .jpeg()
    .toBuffer();
  png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 40, g: 40, b: 200 } } })
    .png()
    .toBuffer();
});

afterEach(async () => {
  for (const s of running.splice(0)) await s.stop();
});

async function startSource(overrides: Record<string, unknown> = {}) {
  const rec = new Recorder();
  const cfg = CameraHttpSource.parse({ type: 'camera-http', listen: { port: 0 }, ...overrides });
  const source = new HttpCameraSource('line1', cfg, rec);
  running.push(source);
  await source.start(new AbortController().signal);
  const url = `http://127.0.0.1:${source.port}${cfg.path}`;
  return { source, rec, url };
}

async function post(url: string, body: Uint8Array | string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', body, headers });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, string>) : undefined };
}

/** POSTs a body sent with chunked encoding (no Content-Length), the way a streaming client does. */
function postChunked(url: string, total: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'Content-Type': 'image/jpeg' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    const piece = Buffer.alloc(64 * 1024, 0xab);
    piece[0] = 0xff;
    piece[1] = 0xd8;
    piece[2] = 0xff;
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.end();
    };
    req.on('response', () => (sent = total)); // stop sending once answered
    pump();
  });
}

describe('HttpCameraSource', () => {
  it('answers 503 with Retry-After while the store refuses writes, counts it, and takes frames again after', async () => {
    const { rec, url } = await startSource();
    let refusing = true;
    rec.storeRefusing = () => refusing;
    const res = await fetch(url, { method: 'POST', body: jpeg, headers: { 'Content-Type': 'image/jpeg' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(((await res.json()) as { code: string }).code).toBe('store_unavailable');
    expect(rec.samples).toHaveLength(0);
    expect(rec.rejections.map((r) => r.reason)).toEqual(['store_unavailable']);
    refusing = false;
    const again = await post(url, jpeg, { 'Content-Type': 'image/jpeg' });
    expect(again.status).toBe(202);
    expect(rec.samples).toHaveLength(1);
  });

  it('accepts a JPEG and a PNG with 202 and emits them as samples', async () => {
    const { source, rec, url } = await startSource();
    expect(source.state()).toBe('up');
    const a = await post(url, jpeg, { 'Content-Type': 'image/jpeg', 'X-Frame-Origin': 'cam-000001.jpg' });
    const b = await post(`${url}?origin=cam-000002.png`, png, { 'Content-Type': 'image/png' });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(rec.samples).toHaveLength(2);
    expect(rec.samples[0]).toMatchObject({
      kind: 'frame',
      source: 'line1',
      origin: 'cam-000001.jpg',
      contentType: 'image/jpeg',
    });
    expect(rec.samples[0]!.id).toBe(a.json!.id);
    expect(rec.samples[0]!.data.equals(jpeg)).toBe(true);
    expect(rec.samples[1]).toMatchObject({ origin: 'cam-000002.png', contentType: 'image/png' });
    expect(rec.samples[1]!.data.equals(png)).toBe(true);
  });

  it('sniffs application/octet-stream and names unnamed frames by remote address', async () => {
    const { rec, url } = await startSource();
    const r = await post(url, png, { 'Content-Type': 'application/octet-stream' });
    expect(r.status).toBe(202);
    expect(rec.samples[0]!.contentType).toBe('image/png');
    expect(rec.samples[0]!.origin).toMatch(/^(::ffff:)?127\.0\.0\.1#\d+$/);
  });

  it('answers 400 empty to an empty body', async () => {
    const { rec, url } = await startSource();
    const r = await post(url, new Uint8Array(0), { 'Content-Type': 'image/jpeg' });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: 'empty' });
    expect(rec.rejections.map((x) => x.reason)).toEqual(['empty']);
  });

  it('answers 400 not_an_image to text, even when it claims to be a JPEG', async () => {
    const { rec, url } = await startSource();
    const r = await post(url, 'hello, I am a frame', {
      'Content-Type': 'image/jpeg',
      'X-Frame-Origin': 'liar.jpg',
    });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: 'not_an_image' });
    expect(typeof r.json!.error).toBe('string');
    expect(rec.rejections).toEqual([expect.objectContaining({ reason: 'not_an_image', origin: 'liar.jpg' })]);
    expect(rec.samples).toEqual([]);
  });

  it('answers 413 to 8 MB over a 1 MB limit, and still serves afterwards', async () => {
    const { rec, url } = await startSource({ maxBodyBytes: 1024 * 1024 });
    const big = Buffer.alloc(8 * 1024 * 1024, 0x11);
    jpeg.copy(big, 0, 0, 3);
    const r = await post(url, big, { 'Content-Type': 'image/jpeg' });
    expect(r.status).toBe(413);
    expect(r.json).toMatchObject({ code: 'too_large' });
    // Without Content-Length the limit is enforced while reading.
    expect(await postChunked(url, 8 * 1024 * 1024)).toBe(413);
    expect(rec.rejections.map((x) => x.reason)).toEqual(['too_large', 'too_large']);
    const ok = await post(url, jpeg, { 'Content-Type': 'image/jpeg' });
    expect(ok.status).toBe(202);
    expect(rec.samples).toHaveLength(1);
  });

  it('answers 404 to other paths, 405 to other methods, 415 to other media types', async () => {
    const { source, rec } = await startSource();
    const base = `http://127.0.0.1:${source.port}`;
    expect((await post(`${base}/elsewhere`, jpeg, { 'Content-Type': 'image/jpeg' })).status).toBe(404);
    const get = await fetch(`${base}/frames`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const form = await post(`${base}/frames`, jpeg, { 'Content-Type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(415);
    expect(rec.rejections.map((x) => x.reason)).toEqual(['bad_request', 'bad_request', 'bad_request']);
  });

  it('counts an upload cut off half-way as incomplete', async () => {
    const { source, rec } = await startSource();
    const sock = net.connect(source.port!, '127.0.0.1');
    await new Promise((resolve) => sock.once('connect', resolve));
    sock.write(
      `POST /frames HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nX-Frame-Origin: cut.jpg\r\n` +
        `Content-Length: ${jpeg.length}\r\n\r\n`,
    );
    sock.write(jpeg.subarray(0, 100));
    await sleep(100); // let the server see the partial body first
    sock.destroy();
    await rec.until(() => rec.rejections.length === 1, 'the incomplete rejection');
    expect(rec.rejections[0]).toMatchObject({ reason: 'incomplete', origin: 'cut.jpg' });
    expect(rec.samples).toEqual([]);
  });

  it('answers 400 to a request target that is not a URL, and keeps serving', async () => {
    const { source, rec, url } = await startSource();
    const sock = net.connect(source.port!, '127.0.0.1');
    await new Promise((resolve) => sock.once('connect', resolve));
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString()));
    sock.write('POST http://[/frames HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    await rec.until(() => rec.rejections.length === 1, 'the malformed request refused');
    expect(rec.rejections[0]).toMatchObject({ reason: 'bad_request' });
    await sleep(50);
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    sock.destroy();
    expect((await post(url, jpeg, { 'Content-Type': 'image/jpeg' })).status).toBe(202);
  });

  it('serves the next good frame after each bad one', async () => {
    const { rec, url } = await startSource({ maxBodyBytes: 4096 });
    const bad: Array<[Uint8Array | string, string]> = [
      [new Uint8Array(0), 'image/jpeg'],
      ['not an image', 'image/png'],
      [Buffer.alloc(10_000, 0xff), 'image/jpeg'],
      [jpeg, 'text/plain'],
    ];
    for (const [i, [body, type]] of bad.entries()) {
      expect((await post(url, body, { 'Content-Type': type })).status).toBeGreaterThanOrEqual(400);
      const good = await post(url, jpeg, { 'Content-Type': 'image/jpeg', 'X-Frame-Origin': `good-${i}` });
      expect(good.status).toBe(202);
    }
    expect(rec.samples.map((s) => s.origin)).toEqual(['good-0', 'good-1', 'good-2', 'good-3']);
    expect(rec.rejections.map((r) => r.reason)).toEqual([
      'empty',
      'not_an_image',
      'too_large',
      'bad_request',
    ]);
  });

  it('reports a taken port as VIGIL_ERR_PORT_IN_USE naming the config key', async () => {
    const { source } = await startSource();
    const rec = new Recorder();
    const cfg = CameraHttpSource.parse({ type: 'camera-http', listen: { port: source.port } });
    const second = new HttpCameraSource('line2', cfg, rec);
    const err = await second.start(new AbortController().signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe('VIGIL_ERR_PORT_IN_USE');
    expect((err as VigilError).message).toContain('sources.line2.listen.port');
    expect((err as VigilError).message).toContain(String(source.port));
    expect(second.state()).toBe('down');
  });

  it('stop() closes the port and is idempotent', async () => {
    const { source, url } = await startSource();
    await Promise.all([source.stop(), source.stop()]);
    expect(source.state()).toBe('stopped');
    await expect(fetch(url, { method: 'POST', body: jpeg })).rejects.toThrow();
  });
});
