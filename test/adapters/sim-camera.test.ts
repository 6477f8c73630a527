import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { FolderCameraSource } from '../../adapters/camera/folder.js';
import { HttpCameraSource } from '../../adapters/camera/http.js';
import { CameraFolderSource, CameraHttpSource } from '../../runtime/config/schema.js';
import { SimCamera } from '../../simulator/camera/camera.js';
import {
  FolderSink,
  HttpSink,
  type DeliveryResult,
  type FrameSink,
  type OutgoingFrame,
} from '../../simulator/camera/sinks.js';
import type { RenderOptions, RenderedFrame } from '../../simulator/camera/types.js';
import { Recorder } from './recorder.js';

/**
 * A stand-in for render.ts (owned elsewhere): a flat frame whose colour comes from the seed, so
 * the same seed gives the same bytes and the bytes say which frame they are.
 */
async function flatRender(opts: RenderOptions): Promise<RenderedFrame> {
  const v = opts.seed % 256;
  const img = sharp({
    create: { width: opts.width, height: opts.height, channels: 3, background: { r: v, g: 255 - v, b: 128 } },
  });
  const data = await (opts.format === 'jpeg' ? img.jpeg() : img.png()).toBuffer();
  return { data, format: opts.format, truth: { label: opts.label } };
}

/** A sink that keeps frames in memory. */
class MemorySink implements FrameSink {
  readonly target = 'memory';
  readonly frames: OutgoingFrame[] = [];
  async deliver(frame: OutgoingFrame): Promise<DeliveryResult> {
    this.frames.push(frame);
    return { ok: true };
  }
}

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('SimCamera', () => {
  it('delivers N frames at 20 fps through a FolderSink, and a FolderCameraSource reads each one whole', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-simcam-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const rec = new Recorder();
    const source = new FolderCameraSource(
      'cam',
      CameraFolderSource.parse({ type: 'camera-folder', path: dir, stableMs: 50 }),
      rec,
    );
    await source.start(new AbortController().signal);
    cleanup.push(() => source.stop());

    const errors: string[] = [];
    const written: OutgoingFrame[] = [];
    const sink = new FolderSink(dir, { chunks: 3, pauseMs: 30 });
    const recordingSink: FrameSink = {
      target: sink.target,
      deliver: (frame) => {
        written.push(frame);
        return sink.deliver(frame);
      },
    };
    const N = 12;
    const camera = new SimCamera({
      name: 'cam1',
      fps: 20,
      width: 160,
      height: 120,
      defectRate: 0.5,
      seed: 7,
      format: 'jpeg',
      sink: recordingSink,
      render: flatRender,
      maxFrames: N,
      onError: (message) => errors.push(message),
    });
    camera.start();
    await camera.finished;
    expect(errors).toEqual([]);
    expect(camera.stats).toMatchObject({ rendered: N, delivered: N, failed: 0 });

    await rec.until(() => rec.samples.length === N, `${N} samples`);
    expect(rec.rejections).toEqual([]);
    const byOrigin = new Map(rec.samples.map((s) => [s.origin, s.data]));
    expect([...byOrigin.keys()].sort()).toEqual(Array.from({ length: N }, (_, i) => camera.originOf(i + 1)));
    expect(camera.originOf(123)).toBe('cam1-000123.jpg');
    for (const frame of written) expect(byOrigin.get(frame.origin)!.equals(frame.data)).toBe(true);
    expect([...camera.truth.keys()].sort()).toEqual([...byOrigin.keys()].sort());
    for (const t of camera.truth.values()) expect(typeof t.sentAt).toBe('number');
    await sleep(100);
    expect(await readdir(dir)).toEqual([]); // all read and deleted
  });

  it('delivers frames through an HttpSink to an HttpCameraSource', async () => {
    const rec = new Recorder();
    const source = new HttpCameraSource(
      'line',
      CameraHttpSource.parse({ type: 'camera-http', listen: { port: 0 } }),
      rec,
    );
    await source.start(new AbortController().signal);
    cleanup.push(() => source.stop());
    const camera = new SimCamera({
      name: 'cam2',
      fps: 20,
      width: 64,
      height: 48,
      defectRate: 0,
      seed: 1,
      format: 'png',
      sink: new HttpSink(`http://127.0.0.1:${source.port}/frames`),
      render: flatRender,
      maxFrames: 5,
    });
    camera.start();
    await camera.finished;
    expect(camera.stats).toMatchObject({ delivered: 5, failed: 0 });
    expect(rec.samples.map((s) => s.origin).sort()).toEqual([1, 2, 3, 4, 5].map((n) => camera.originOf(n)));
    expect(rec.samples.every((s) => s.contentType === 'image/png')).toBe(true);
    expect([...camera.truth.values()].every((t) => t.label === 'ok')).toBe(true);
  });

  it('reports a failing sink without stopping', async () => {
    const errors: string[] = [];
    const camera = new SimCamera({
      name: 'cam3',
      fps: 50,
      width: 32,
      height: 32,
      defectRate: 0,
      seed: 1,
      format: 'jpeg',
      sink: new HttpSink('http://127.0.0.1:9/frames', { timeoutMs: 2000 }), // port 9: nothing listens
      render: flatRender,
      maxFrames: 3,
      onError: (message) => errors.push(message),
    });
    camera.start();
    await camera.finished;
    expect(camera.stats).toMatchObject({ rendered: 3, delivered: 0, failed: 3 });
    expect(errors).toHaveLength(3);
    expect(errors[0]).toContain('POST http://127.0.0.1:9/frames failed');
  });

  it('draws the same labels and frame seeds for the same seed, and other ones for another seed', async () => {
    const run = async (seed: number) => {
      const seen: RenderOptions[] = [];
      const camera = new SimCamera({
        name: 'c',
        fps: 200,
        width: 32,
        height: 32,
        defectRate: 0.3,
        seed,
        format: 'jpeg',
        sink: new MemorySink(),
        render: async (opts) => {
          seen.push(opts);
          return { data: Buffer.from([opts.seed]), format: 'jpeg', truth: { label: opts.label } };
        },
        maxFrames: 40,
      });
      camera.start();
      await camera.finished;
      return seen.map((o) => `${o.label}/${o.seed}`);
    };
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    expect(a).toHaveLength(40);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    const defects = a.filter((x) => !x.startsWith('ok/')).length;
    expect(defects).toBeGreaterThan(0);
    expect(defects).toBeLessThan(40);
  });

  it('never overlaps renders: ticks during a slow render are skipped and counted', async () => {
    let active = 0;
    let maxActive = 0;
    const camera = new SimCamera({
      name: 'slow',
      fps: 100,
      width: 32,
      height: 32,
      defectRate: 0,
      seed: 3,
      format: 'jpeg',
      sink: new MemorySink(),
      render: async (opts) => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(60); // six frame intervals
        active--;
        return { data: Buffer.from([1]), format: opts.format, truth: { label: opts.label } };
      },
      maxFrames: 4,
    });
    camera.start();
    await camera.finished;
    expect(maxActive).toBe(1);
    expect(camera.stats.rendered).toBe(4);
    expect(camera.stats.skipped).toBeGreaterThan(0);
  });
});
