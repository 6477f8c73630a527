import sharp from 'sharp';
import { VigilError } from '../errors.js';
import type { ImageManifest, TelemetryManifest } from '../model/manifest.js';
import { decodeAndResize, normalize } from '../pipeline/preprocess.js';
import type { Reading } from '../telemetry/reading.js';
import { Windower } from '../telemetry/window.js';
import { TIME_COLUMN } from './holdout.js';

/**
 * Holdout samples as model inputs, through the very code the pipelines run: frames through
 * sharp's decodeAndResize and normalize (runtime/pipeline/preprocess.ts), telemetry rows as
 * readings through the Windower (runtime/telemetry/window.ts). A perturbation changes the raw
 * sample (the frame's pixels, a tag's values), never the tensor, so that it too goes through
 * the production path.
 */

/** A frame as the image pipeline feeds it to the engine. */
export async function imageInput(m: ImageManifest, frame: Uint8Array): Promise<Float32Array> {
  const layout = m.inputs[0]!.layout === 'NCHW' ? 'NCHW' : 'NHWC';
  return normalize(await decodeAndResize(frame, m.preprocessing), m.preprocessing, layout);
}

export interface RawImage {
  pixels: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** Decodes a frame to its own pixels, at its own size, for a perturbation. */
export async function rawImage(frame: Uint8Array): Promise<RawImage> {
  const { data, info } = await sharp(frame).raw().toBuffer({ resolveWithObject: true });
  return { pixels: data, width: info.width, height: info.height, channels: info.channels };
}

/** Encodes perturbed pixels as a lossless PNG: the frame a camera would have sent. */
export function encodePng(img: RawImage): Promise<Buffer> {
  return sharp(img.pixels, { raw: { width: img.width, height: img.height, channels: img.channels } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

/** Every colour value moved by `offset` (of 255), clamped; an alpha channel is left alone. */
export function brighten(img: RawImage, offset: number): RawImage {
  const out = Buffer.alloc(img.pixels.length);
  const colour = img.channels === 2 || img.channels === 4 ? img.channels - 1 : img.channels;
  for (let i = 0; i < img.pixels.length; i++) {
    const v = img.pixels[i]!;
    out[i] = i % img.channels < colour ? Math.min(255, Math.max(0, Math.round(v + offset))) : v;
  }
  return { ...img, pixels: out };
}

/**
 * The picture moved by (dx, dy) pixels (right and down positive) within the same frame; the
 * strip uncovered at the edge repeats the nearest edge pixels, as a slightly moved part would
 * leave the background.
 */
export function shift(img: RawImage, dx: number, dy: number): RawImage {
  const { width: w, height: h, channels: c } = img;
  const out = Buffer.alloc(img.pixels.length);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(h - 1, Math.max(0, y - dy));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(w - 1, Math.max(0, x - dx));
      img.pixels.copy(out, (y * w + x) * c, (sy * w + sx) * c, (sy * w + sx) * c + c);
    }
  }
  return { ...img, pixels: out };
}

const T0 = Date.UTC(2025, 0, 1);

/**
 * The window a telemetry pipeline would score after these rows: one batch of readings per row
 * (every tag and the axis), through a fresh Windower, and the last window it emits. Throws when
 * the rows make no full window (a gap the manifest's holdSteps does not bridge, say).
 */
export function telemetryInput(
  m: TelemetryManifest,
  columns: readonly string[],
  rows: readonly (readonly number[])[],
  id: string,
): Float32Array {
  const pre = m.preprocessing;
  const windower = new Windower({ preprocessing: pre });
  const timeCol = pre.axis.type === 'time' ? columns.indexOf(TIME_COLUMN) : -1;
  const asset = 'acceptance';
  let last: Float32Array | undefined;
  rows.forEach((row, i) => {
    const t = timeCol >= 0 ? T0 + row[timeCol]! * 1000 : T0 + i * 1000;
    const batch: Reading[] = [];
    columns.forEach((tag, c) => {
      if (c === timeCol) return;
      batch.push({
        source: 'acceptance',
        asset,
        tag,
        value: row[c]!,
        quality: 'good',
        sourceTime: t,
        receivedAt: t,
      });
    });
    const w = windower.push(batch).windows.at(-1);
    if (w) last = w.tensor;
  });
  const rest = windower.flush().windows.at(-1);
  if (rest) last = rest.tensor;
  if (!last) {
    const s = windower.stats();
    throw new VigilError(
      'VIGIL_ERR_INPUT_INVALID',
      `holdout sample ${id}: its ${rows.length} rows make no full window of ${pre.window} steps ` +
        `(skipped: ${JSON.stringify(s.skipped)}, dropped: ${JSON.stringify(s.dropped)}); check its axis column and values`,
    );
  }
  return last;
}

/** Rows with one column replaced, or moved by `add`; the rows themselves are not changed. */
export function withColumn(
  rows: readonly (readonly number[])[],
  col: number,
  value: (row: number, v: number) => number,
): number[][] {
  return rows.map((r, i) => r.map((v, c) => (c === col ? value(i, v) : v)));
}
