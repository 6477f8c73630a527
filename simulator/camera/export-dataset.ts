#!/usr/bin/env node
/**
 * Exports a labelled data set from the simulated camera for the defect model pipeline
 * (models/defect/build.sh):
 *
 *   node dist/simulator/camera/export-dataset.js --out DIR --count N --seed S \
 *     [--width 640 --height 480] [--size 128] [--keep-images K]
 *
 * Each frame is rendered as JPEG and then preprocessed by the runtime's own decodeAndResize, so
 * that training sees exactly the pixels production sees. (This tool is the one sanctioned place
 * where simulator/ imports from runtime/.)
 *
 * Writes DIR/pixels.u8 (N x size x size uint8, row-major NHWC with C=1), DIR/labels.csv,
 * DIR/meta.json and the first K encoded frames as DIR/frames/<index>.jpg.
 */
import { mkdir, open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeAndResize } from '../../runtime/pipeline/preprocess.js';
import type { ImagePreprocessing } from '../../runtime/model/manifest.js';
import { renderFrame } from './render.js';
import { Rng } from './rng.js';
import { DEFECT_CLASSES, type DefectClass } from './types.js';

/** Class mix of an exported set: good parts are the most common, defects equally split. */
const CLASS_WEIGHTS: Record<DefectClass, number> = { ok: 0.4, scratch: 0.2, crack: 0.2, inclusion: 0.2 };

export interface ExportOptions {
  out: string;
  count: number;
  seed: number;
  width: number;
  height: number;
  size: number;
  keepImages: number;
}

/** Seed of frame `index` in a set with seed `setSeed`: distinct sets never share a frame seed. */
export function frameSeed(setSeed: number, index: number): number {
  return (Math.imul(setSeed >>> 0, 0x01000193) ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
}

/** The preprocessing the defect model packages declare; kept here so the two cannot drift apart. */
export function modelPreprocessing(size: number): ImagePreprocessing {
  return {
    type: 'image',
    width: size,
    height: size,
    colorSpace: 'grayscale',
    resize: 'fill',
    normalize: { mean: [0], std: [255] },
    maxInputPixels: 16777216,
  };
}

function pickLabel(rng: Rng): DefectClass {
  let r = rng.next();
  for (const label of DEFECT_CLASSES) {
    r -= CLASS_WEIGHTS[label];
    if (r < 0) return label;
  }
  return 'ok';
}

export async function exportDataset(opts: ExportOptions, progress?: (done: number) => void): Promise<void> {
  const pre = modelPreprocessing(opts.size);
  await mkdir(path.join(opts.out, 'frames'), { recursive: true });
  const pixelsFile = await open(path.join(opts.out, 'pixels.u8'), 'w');
  const rows: string[] = ['index,label,seed,box_x,box_y,box_width,box_height,jpeg_bytes'];
  const counts: Record<string, number> = {};
  const labelRng = new Rng(opts.seed);
  try {
    for (let index = 0; index < opts.count; index++) {
      const label = pickLabel(labelRng);
      const seed = frameSeed(opts.seed, index);
      const frame = await renderFrame({
        width: opts.width,
        height: opts.height,
        label,
        seed,
        format: 'jpeg',
      });
      const decoded = await decodeAndResize(frame.data, pre);
      await pixelsFile.write(decoded.pixels);
      if (index < opts.keepImages) await writeFile(path.join(opts.out, 'frames', `${index}.jpg`), frame.data);
      const box = frame.truth.box;
      rows.push(
        [
          index,
          label,
          seed,
          box?.x ?? '',
          box?.y ?? '',
          box?.width ?? '',
          box?.height ?? '',
          frame.data.length,
        ].join(','),
      );
      counts[label] = (counts[label] ?? 0) + 1;
      if (progress && (index + 1) % 500 === 0) progress(index + 1);
    }
  } finally {
    await pixelsFile.close();
  }
  await writeFile(path.join(opts.out, 'labels.csv'), rows.join('\n') + '\n');
  const meta = {
    count: opts.count,
    seed: opts.seed,
    frameWidth: opts.width,
    frameHeight: opts.height,
    inputShape: [opts.count, opts.size, opts.size, 1],
    labels: DEFECT_CLASSES,
    counts,
    preprocessing: pre,
    pixelsFile: 'pixels.u8',
    exportedAt: new Date().toISOString(),
  };
  await writeFile(path.join(opts.out, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
}

function parseIntOption(
  name: string,
  value: string | undefined,
  fallback: number | undefined,
  min: number,
): number {
  if (value === undefined) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be an integer >= ${min}, got '${value}'`);
  return n;
}

function parseCli(argv: string[]): ExportOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      count: { type: 'string' },
      seed: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      size: { type: 'string' },
      'keep-images': { type: 'string' },
    },
    strict: true,
  });
  if (!values.out) throw new Error('--out DIR is required');
  return {
    out: values.out,
    count: parseIntOption('count', values.count, undefined, 1),
    seed: parseIntOption('seed', values.seed, undefined, 0),
    width: parseIntOption('width', values.width, 640, 32),
    height: parseIntOption('height', values.height, 480, 32),
    size: parseIntOption('size', values.size, 128, 8),
    keepImages: parseIntOption('keep-images', values['keep-images'], 0, 0),
  };
}

async function main(): Promise<void> {
  let opts: ExportOptions;
  try {
    opts = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(
      `export-dataset: ${(err as Error).message}\n` +
        'usage: export-dataset --out DIR --count N --seed S [--width 640 --height 480] [--size 128] [--keep-images K]\n',
    );
    process.exitCode = 2;
    return;
  }
  const started = Date.now();
  await exportDataset(opts, (done) => process.stderr.write(`export-dataset: ${done}/${opts.count} frames\n`));
  process.stderr.write(
    `export-dataset: wrote ${opts.count} frames to ${opts.out} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
}

// Run only as a program, not when imported (by tests).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`export-dataset failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
