import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeAndResize } from '../../runtime/pipeline/preprocess.js';
import { exportDataset, modelPreprocessing } from '../../simulator/camera/export-dataset.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { Rng } from '../../simulator/camera/rng.js';
import { DEFECT_CLASSES, type DefectClass } from '../../simulator/camera/types.js';

async function grey(data: Buffer): Promise<{ pixels: Buffer; width: number; height: number }> {
  const { data: pixels, info } = await sharp(data).greyscale().raw().toBuffer({ resolveWithObject: true });
  return { pixels, width: info.width, height: info.height };
}

describe('Rng', () => {
  it('repeats its sequence for a seed and differs between seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const seqA = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(seqA);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(seqA);
    for (let i = 0; i < 1000; i++) {
      const v = a.next();
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
    }
  });
});

describe('renderFrame', () => {
  it('renders identical bytes for the same seed, and different bytes for another seed', async () => {
    for (const format of ['jpeg', 'png'] as const) {
      const a = await renderFrame({ width: 640, height: 480, label: 'crack', seed: 7, format });
      const b = await renderFrame({ width: 640, height: 480, label: 'crack', seed: 7, format });
      const c = await renderFrame({ width: 640, height: 480, label: 'crack', seed: 8, format });
      expect(a.data.equals(b.data)).toBe(true);
      expect(a.truth).toEqual(b.truth);
      expect(a.data.equals(c.data)).toBe(false);
    }
  });

  it('reports the requested label, with a box inside the frame for defects only', async () => {
    for (const label of DEFECT_CLASSES) {
      for (const seed of [1, 2, 3]) {
        const { truth, format } = await renderFrame({ width: 640, height: 480, label, seed, format: 'jpeg' });
        expect(format).toBe('jpeg');
        expect(truth.label).toBe(label);
        if (label === 'ok') {
          expect(truth.box).toBeUndefined();
          continue;
        }
        const box = truth.box!;
        expect(box.width).toBeGreaterThanOrEqual(3);
        expect(box.height).toBeGreaterThanOrEqual(3);
        expect(box.x).toBeGreaterThanOrEqual(0);
        expect(box.y).toBeGreaterThanOrEqual(0);
        expect(box.x + box.width).toBeLessThanOrEqual(640);
        expect(box.y + box.height).toBeLessThanOrEqual(480);
      }
    }
  });

  it('encodes a decodable image of the requested size and format', async () => {
    const cases: Array<[number, number, 'jpeg' | 'png']> = [
      [640, 480, 'jpeg'],
      [320, 240, 'png'],
      [1280, 720, 'jpeg'],
      [97, 61, 'png'],
    ];
    for (const [width, height, format] of cases) {
      const frame = await renderFrame({ width, height, label: 'scratch', seed: 11, format });
      const meta = await sharp(frame.data).metadata();
      expect(meta.format).toBe(format);
      expect(meta.width).toBe(width);
      expect(meta.height).toBe(height);
      const box = frame.truth.box!;
      expect(box.x + box.width).toBeLessThanOrEqual(width);
      expect(box.y + box.height).toBeLessThanOrEqual(height);
    }
  });

  it('refuses a frame size that is not a positive integer size', async () => {
    await expect(renderFrame({ width: 0, height: 480, label: 'ok', seed: 1, format: 'png' })).rejects.toThrow(
      /frame size/,
    );
    await expect(
      renderFrame({ width: 640.5, height: 480, label: 'ok', seed: 1, format: 'png' }),
    ).rejects.toThrow(/frame size/);
  });

  it('draws each defect inside its box and leaves the rest of the frame as the ok frame of that seed', async () => {
    for (const label of ['scratch', 'crack', 'inclusion'] as DefectClass[]) {
      for (const seed of [21, 22, 23, 24]) {
        const ok = await grey(
          (await renderFrame({ width: 640, height: 480, label: 'ok', seed, format: 'png' })).data,
        );
        const bad = await renderFrame({ width: 640, height: 480, label, seed, format: 'png' });
        const defect = await grey(bad.data);
        const box = bad.truth.box!;
        // A blur of sigma <= 1.4 spreads a defect by a few pixels past its box.
        const pad = 6;
        let strongInside = 0;
        let outsideMax = 0;
        for (let y = 0; y < 480; y++) {
          for (let x = 0; x < 640; x++) {
            const d = Math.abs(ok.pixels[y * 640 + x]! - defect.pixels[y * 640 + x]!);
            const inside = x >= box.x && x < box.x + box.width && y >= box.y && y < box.y + box.height;
            const near =
              x >= box.x - pad &&
              x < box.x + box.width + pad &&
              y >= box.y - pad &&
              y < box.y + box.height + pad;
            if (inside) {
              if (d >= 20) strongInside++;
            } else if (!near) {
              outsideMax = Math.max(outsideMax, d);
            }
          }
        }
        expect(outsideMax, `${label} seed ${seed} changed pixels outside its box`).toBe(0);
        // The defect must be a clear change where it is (>= 20 grey levels), not a faint one.
        expect(
          strongInside,
          `${label} seed ${seed} pixels clearly changed inside its box`,
        ).toBeGreaterThanOrEqual(15);
      }
    }
  });
});

describe('exportDataset', () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes model-sized pixels, labels and the first frames, reproducibly for a seed', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vigil-export-'));
    const opts = { count: 12, seed: 5, width: 320, height: 240, size: 64, keepImages: 3 };
    await exportDataset({ ...opts, out: path.join(dir, 'a') });
    await exportDataset({ ...opts, out: path.join(dir, 'b') });
    const pixels = await readFile(path.join(dir, 'a', 'pixels.u8'));
    expect(pixels.length).toBe(12 * 64 * 64);
    expect(pixels.equals(await readFile(path.join(dir, 'b', 'pixels.u8')))).toBe(true);
    const rows = (await readFile(path.join(dir, 'a', 'labels.csv'), 'utf8')).trim().split('\n');
    expect(rows[0]).toBe('index,label,seed,box_x,box_y,box_width,box_height,jpeg_bytes');
    expect(rows).toHaveLength(13);
    for (const row of rows.slice(1)) expect(DEFECT_CLASSES).toContain(row.split(',')[1]);
    expect((await readdir(path.join(dir, 'a', 'frames'))).sort()).toEqual(['0.jpg', '1.jpg', '2.jpg']);
    const meta = JSON.parse(await readFile(path.join(dir, 'a', 'meta.json'), 'utf8'));
    expect(meta.inputShape).toEqual([12, 64, 64, 1]);
    // The stored pixels are exactly the runtime's preprocessing of the stored frame.
    const frame = await readFile(path.join(dir, 'a', 'frames', '0.jpg'));
    expect([(await sharp(frame).metadata()).width, (await sharp(frame).metadata()).height]).toEqual([
      320, 240,
    ]);
    const decoded = await decodeAndResize(frame, modelPreprocessing(64));
    expect(Buffer.from(decoded.pixels).equals(pixels.subarray(0, 64 * 64))).toBe(true);
  });
});
