import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { VigilError } from '../errors.js';
import type { ImagePreprocessing } from '../model/manifest.js';

sharp.concurrency(1);

export interface DecodedImage {
  /** Resized pixels, HWC, 8 bits per channel, as the manifest's colour space says. */
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: number;
  /** Size of the frame as it arrived. */
  sourceWidth: number;
  sourceHeight: number;
}

const MAGIC: Array<{ type: string; bytes: number[] }> = [
  { type: 'jpeg', bytes: [0xff, 0xd8, 0xff] },
  { type: 'png', bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
];

/** 'jpeg' | 'png' by the file's first bytes, or undefined; cheap enough for every ingest path. */
export function sniffImageType(data: Uint8Array): 'jpeg' | 'png' | undefined {
  for (const m of MAGIC) {
    if (data.length >= m.bytes.length && m.bytes.every((b, i) => data[i] === b))
      return m.type as 'jpeg' | 'png';
  }
  return undefined;
}

/**
 * Decodes a JPEG or PNG frame and resizes it to the model's input size, all inside libvips on
 * libuv's thread pool (never on the event loop). Throws VIGIL_ERR_DECODE with the reason for
 * anything that is not a whole, sane image. The dataset export uses this very function, so that
 * the model is trained on exactly the pixels it will see in production.
 */
export async function decodeAndResize(data: Uint8Array, pre: ImagePreprocessing): Promise<DecodedImage> {
  const type = sniffImageType(data);
  if (!type) throw new VigilError('VIGIL_ERR_DECODE', 'not a JPEG or PNG image (unrecognised first bytes)');
  let meta: Metadata;
  try {
    // The header alone (no pixel limit here, so that an oversized frame is named with its size).
    meta = await sharp(data, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new VigilError('VIGIL_ERR_DECODE', `unreadable ${type} header: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w * h > pre.maxInputPixels) {
    throw new VigilError(
      'VIGIL_ERR_DECODE',
      `image is ${w}x${h}, larger than the ${pre.maxInputPixels}-pixel limit of this model (preprocessing.maxInputPixels)`,
    );
  }
  // failOn 'warning': libjpeg "recovers" from corrupt entropy data by painting grey blocks, and
  // inspecting such a picture gives a confident wrong answer; a damaged frame is refused instead.
  let img = sharp(data, { limitInputPixels: pre.maxInputPixels, failOn: 'warning', sequentialRead: true });
  if (w < 8 || h < 8) throw new VigilError('VIGIL_ERR_DECODE', `image is ${w}x${h}, too small to inspect`);
  img = img.resize(pre.width, pre.height, { fit: pre.resize, kernel: 'linear' });
  img = pre.colorSpace === 'grayscale' ? img.greyscale() : img.removeAlpha().toColourspace('srgb');
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await img.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new VigilError('VIGIL_ERR_DECODE', `corrupt ${type} data: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const channels = pre.colorSpace === 'grayscale' ? 1 : 3;
  let pixels: Uint8Array = out.data;
  if (out.info.channels !== channels) {
    // greyscale() keeps an alpha channel when the source had one; take the first channel(s).
    pixels = new Uint8Array(pre.width * pre.height * channels);
    for (let i = 0, j = 0; i < pixels.length; i += channels, j += out.info.channels) {
      for (let c = 0; c < channels; c++) pixels[i + c] = out.data[j + c]!;
    }
  }
  if (pre.colorSpace === 'bgr') {
    for (let i = 0; i < pixels.length; i += 3) {
      const r = pixels[i]!;
      pixels[i] = pixels[i + 2]!;
      pixels[i + 2] = r;
    }
  }
  return { pixels, width: pre.width, height: pre.height, channels, sourceWidth: w, sourceHeight: h };
}

/** (pixel - mean[c]) / std[c] into a float32 tensor in the requested layout. */
export function normalize(
  img: DecodedImage,
  pre: ImagePreprocessing,
  layout: 'NHWC' | 'NCHW' = 'NHWC',
): Float32Array {
  const { width, height, channels, pixels } = img;
  const mean = pre.normalize.mean;
  const std = pre.normalize.std;
  const out = new Float32Array(width * height * channels);
  const plane = width * height;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < channels; c++) {
      const m = mean[mean.length === 1 ? 0 : c]!;
      const s = std[std.length === 1 ? 0 : c]!;
      const v = (pixels[p * channels + c]! - m) / s;
      if (layout === 'NHWC') out[p * channels + c] = v;
      else out[c * plane + p] = v;
    }
  }
  return out;
}
