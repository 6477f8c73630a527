import { mkdtemp, readdir, rm, utimes, writeFile, open, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FolderCameraSource, hasEndMarker, type FolderCameraOptions } from '../../adapters/camera/folder.js';
import { CameraFolderSource } from '../../runtime/config/schema.js';
import { Recorder } from './recorder.js';

let jpeg: Buffer;
let png: Buffer;
const running: Array<{ source: FolderCameraSource; dir: string }> = [];

beforeAll(async () => {
  jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 90, g: 90, b: 90 } } })
    .jpeg()
    .toBuffer();
  png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 10, g: 200, b: 10 } } })
    .png()
    .toBuffer();
});

afterEach(async () => {
  for (const { source, dir } of running.splice(0)) {
    await source.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'vigil-folder-'));
}

async function startSource(
  dir: string,
  overrides: Record<string, unknown> = {},
  options: FolderCameraOptions = {},
): Promise<{ source: FolderCameraSource; rec: Recorder }> {
  const rec = new Recorder();
  const cfg = CameraFolderSource.parse({ type: 'camera-folder', path: dir, stableMs: 100, ...overrides });
  const source = new FolderCameraSource('cam1', cfg, rec, { rescanMs: 300, ...options });
  running.push({ source, dir });
  await source.start(new AbortController().signal);
  return { source, rec };
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

describe('FolderCameraSource', () => {
  it('turns a complete JPEG into one sample with its name and bytes, then deletes the file', async () => {
    const dir = await tempDir();
    const { source, rec } = await startSource(dir);
    expect(source.state()).toBe('up');
    await writeFile(path.join(dir, 'part-0001.jpg'), jpeg);
    await rec.until(() => rec.samples.length === 1, 'one sample');
    const s = rec.samples[0]!;
    expect(s).toMatchObject({
      kind: 'frame',
      source: 'cam1',
      origin: 'part-0001.jpg',
      contentType: 'image/jpeg',
    });
    expect(s.data.equals(jpeg)).toBe(true);
    expect(s.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    await sleep(100);
    expect(await exists(path.join(dir, 'part-0001.jpg'))).toBe(false);
    expect(rec.rejections).toEqual([]);
  });

  it('leaves its files in place while the store refuses writes, and takes them once it takes writes again', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    let refusing = true;
    rec.storeRefusing = () => refusing;
    await writeFile(path.join(dir, 'held-0001.jpg'), jpeg);
    await sleep(900); // several polls and a rescan (300 ms): stable, complete, and still not taken
    expect(rec.samples).toEqual([]);
    expect(await exists(path.join(dir, 'held-0001.jpg'))).toBe(true);
    refusing = false;
    await rec.until(() => rec.samples.length === 1, 'the held frame');
    expect(rec.samples[0]!.origin).toBe('held-0001.jpg');
    expect(rec.samples[0]!.data.equals(jpeg)).toBe(true);
    expect(rec.rejections).toEqual([]);
  });

  it('takes PNG files too', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    await writeFile(path.join(dir, 'shot.PNG'), png);
    await rec.until(() => rec.samples.length === 1, 'one PNG sample');
    expect(rec.samples[0]!.contentType).toBe('image/png');
    expect(rec.samples[0]!.data.equals(png)).toBe(true);
  });

  it('emits a file written in pieces with pauses exactly once, and whole', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    const file = path.join(dir, 'slow.jpg');
    const fh = await open(file, 'w');
    const piece = Math.ceil(jpeg.length / 4);
    for (let i = 0; i < 4; i++) {
      await fh.write(jpeg, i * piece, Math.min(piece, jpeg.length - i * piece), i * piece);
      if (i < 3) await sleep(70); // longer than stableMs / 2
    }
    await fh.close();
    await rec.until(() => rec.samples.length === 1, 'the slow file');
    await sleep(400); // a second emission would show up by now
    expect(rec.samples).toHaveLength(1);
    expect(rec.samples[0]!.data.equals(jpeg)).toBe(true);
    expect(rec.rejections).toEqual([]);
  });

  it('refuses a zero-byte file as empty', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    await writeFile(path.join(dir, 'zero.jpg'), Buffer.alloc(0));
    await rec.until(() => rec.rejections.length === 1, 'a rejection');
    expect(rec.rejections[0]).toMatchObject({ reason: 'empty', origin: 'zero.jpg' });
  });

  it('refuses a JPEG that stops half-way as incomplete and moves it into rejected/', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir, {}, { incompleteAfterMs: 2000 });
    const cut = jpeg.subarray(0, Math.floor(jpeg.length / 2));
    await writeFile(path.join(dir, 'cut.jpg'), cut);
    await sleep(400); // stable (stableMs 100) by now, but not yet given up
    expect(rec.rejections).toEqual([]);
    await rec.until(() => rec.rejections.length === 1, 'the incomplete rejection');
    expect(rec.rejections[0]).toMatchObject({ reason: 'incomplete', origin: 'cut.jpg' });
    await sleep(300);
    expect(await readdir(path.join(dir, 'rejected'))).toEqual(['cut.jpg']);
    expect(await exists(path.join(dir, 'cut.jpg'))).toBe(false);
    expect(rec.samples).toEqual([]);
  });

  it('refuses random bytes named .jpg as not_an_image and moves them aside', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    await writeFile(
      path.join(dir, 'noise.jpg'),
      Buffer.from('this is not an image, just some text\n'.repeat(20)),
    );
    await rec.until(() => rec.rejections.length === 1, 'a rejection');
    expect(rec.rejections[0]).toMatchObject({ reason: 'not_an_image', origin: 'noise.jpg' });
    await sleep(200);
    expect(await readdir(path.join(dir, 'rejected'))).toEqual(['noise.jpg']);
  });

  it('refuses files over maxFileBytes as too_large', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir, { maxFileBytes: 100 });
    await writeFile(path.join(dir, 'big.jpg'), jpeg);
    await rec.until(() => rec.rejections.length === 1, 'a rejection');
    expect(rec.rejections[0]).toMatchObject({ reason: 'too_large', origin: 'big.jpg' });
  });

  it('ignores other extensions, dotfiles and temporary names', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    const ignored = ['notes.txt', '.hidden.jpg', 'frame.jpg.part', 'frame.jpg~', 'upload.tmp', 'raw.bmp'];
    for (const name of ignored) await writeFile(path.join(dir, name), jpeg);
    await writeFile(path.join(dir, 'real.jpg'), jpeg);
    await rec.until(() => rec.samples.length === 1, 'the real frame');
    await sleep(500); // two rescans
    expect(rec.samples.map((s) => s.origin)).toEqual(['real.jpg']);
    expect(rec.rejections).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual([...ignored].sort());
  });

  it('picks up files that were there before it started, oldest first', async () => {
    const dir = await tempDir();
    const names = ['c.jpg', 'a.jpg', 'b.png'];
    const base = Date.now() / 1000 - 100;
    for (const [i, name] of names.entries()) {
      const file = path.join(dir, name);
      await writeFile(file, name.endsWith('.png') ? png : jpeg);
      await utimes(file, base + i, base + i); // c oldest, then a, then b
    }
    const { rec } = await startSource(dir);
    await rec.until(() => rec.samples.length === 3, 'three samples');
    expect(rec.samples.map((s) => s.origin)).toEqual(names);
  });

  it('creates the folder when it is missing', async () => {
    const parent = await tempDir();
    const dir = path.join(parent, 'camera', 'drop');
    const { rec } = await startSource(dir);
    running.push({ source: running.at(-1)!.source, dir: parent });
    await writeFile(path.join(dir, 'first.jpg'), jpeg);
    await rec.until(() => rec.samples.length === 1, 'a sample');
  });

  it('keeps working after bad files: a good file after them still arrives', async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir);
    await writeFile(path.join(dir, '1-empty.jpg'), Buffer.alloc(0));
    await writeFile(path.join(dir, '2-noise.jpg'), Buffer.from('garbage garbage garbage'));
    await writeFile(path.join(dir, '3-cut.jpg'), jpeg.subarray(0, 100));
    await rec.until(() => rec.rejections.length === 3, 'three rejections');
    await writeFile(path.join(dir, '4-good.jpg'), jpeg);
    await rec.until(() => rec.samples.length === 1, 'the good frame');
    expect(rec.samples[0]!.origin).toBe('4-good.jpg');
    expect(rec.rejections.map((r) => `${r.origin}:${r.reason}`).sort()).toEqual([
      '1-empty.jpg:empty',
      '2-noise.jpg:not_an_image',
      '3-cut.jpg:incomplete',
    ]);
  });

  it("with afterRead 'keep' leaves the file and does not emit it twice, but takes a rewrite as a new frame", async () => {
    const dir = await tempDir();
    const { rec } = await startSource(dir, { afterRead: 'keep' });
    const file = path.join(dir, 'latest.jpg');
    await writeFile(file, jpeg);
    await rec.until(() => rec.samples.length === 1, 'one sample');
    await sleep(700); // two rescans
    expect(rec.samples).toHaveLength(1);
    expect(await exists(file)).toBe(true);
    await writeFile(file, png.subarray(0)); // same name, new content (and size)
    const renamed = path.join(dir, 'latest.png');
    await writeFile(renamed, png);
    await rec.until(() => rec.samples.length === 3, 'two more samples');
  });

  it('stops on its abort signal, and does not start on an aborted one', async () => {
    const dir = await tempDir();
    const rec = new Recorder();
    const cfg = CameraFolderSource.parse({ type: 'camera-folder', path: dir });
    const first = new FolderCameraSource('cam1', cfg, rec);
    running.push({ source: first, dir });
    const aborted = new AbortController();
    aborted.abort();
    await first.start(aborted.signal);
    expect(first.state()).toBe('stopped');

    const second = new FolderCameraSource('cam1', cfg, rec);
    running.push({ source: second, dir });
    const ac = new AbortController();
    await second.start(ac.signal);
    expect(second.state()).toBe('up');
    ac.abort();
    expect(second.state()).toBe('stopped');
    await writeFile(path.join(dir, 'late.jpg'), jpeg);
    await sleep(400);
    expect(rec.samples).toEqual([]);
  });

  it('stop() is idempotent and ends in state stopped', async () => {
    const dir = await tempDir();
    const { source } = await startSource(dir);
    await source.stop();
    await source.stop();
    expect(source.state()).toBe('stopped');
  });
});

describe('hasEndMarker', () => {
  it('finds the JPEG EOI, behind zero padding too, and the PNG IEND chunk', () => {
    expect(hasEndMarker('jpeg', jpeg.subarray(-16))).toBe(true);
    expect(hasEndMarker('jpeg', Buffer.concat([jpeg.subarray(-16), Buffer.alloc(20)]))).toBe(true);
    expect(hasEndMarker('jpeg', jpeg.subarray(-40, -10))).toBe(false);
    expect(hasEndMarker('png', png.subarray(-16))).toBe(true);
    expect(hasEndMarker('png', png.subarray(-40, -4))).toBe(false);
  });
});
