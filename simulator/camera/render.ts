import sharp from 'sharp';
import { Rng } from './rng.js';
import type { DefectClass, FrameTruth, Lighting, RenderOptions, RenderedFrame } from './types.js';

/**
 * The simulated inspection camera: a machined metal plate on a dark conveyor, seen from above.
 * Everything a real line varies is varied here (part position, brushing direction, lighting
 * gradient and vignette, harmless smudges, focus, sensor noise, JPEG quality), so that a model
 * trained on these frames has to learn the defects and not the rendering. Defects are sized so
 * that they survive the model's downscale to 128x128: at least ~2.5 px wide at 640x480.
 *
 * Pixels are drawn by hand into a Float32Array (fast, deterministic) and only encoded by sharp.
 */

/** The reference size all geometry is expressed in; other sizes scale it. */
const REFERENCE_WIDTH = 640;
const REFERENCE_HEIGHT = 480;
const MIN_SIDE = 32;
const MAX_PIXELS = 4096 * 4096;
const DEFECT_STREAM = 0x5ca1ab1e;

/** A precomputed table of standard normal samples: per-pixel noise without per-pixel logs. */
const NOISE_TABLE_BITS = 13;
const NOISE_TABLE_MASK = (1 << NOISE_TABLE_BITS) - 1;
const NOISE_TABLE = (() => {
  const rng = new Rng(0x5eed);
  const table = new Float32Array(1 << NOISE_TABLE_BITS);
  for (let i = 0; i < table.length; i++) table[i] = rng.gaussian();
  return table;
})();

/** Geometry of the plate in the frame: centre, half extents, rotation. */
interface Part {
  cx: number;
  cy: number;
  halfW: number;
  halfH: number;
  cos: number;
  sin: number;
}

/** Bounding box accumulated while stamping a defect, in frame pixels (inclusive floats). */
interface Extent {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** A frame being drawn: surface intensity (0..255 scale) plus a defect layer added on top. */
interface Canvas {
  width: number;
  height: number;
  /** Pixel-size scale of this frame relative to 640x480. */
  scale: number;
  surface: Float32Array;
  /** Signed intensity change of defects; composed by largest magnitude so overlaps do not add up. */
  defect: Float32Array;
  extent: Extent;
}

export async function renderFrame(opts: RenderOptions): Promise<RenderedFrame> {
  checkOptions(opts);
  const rng = new Rng(opts.seed);
  const { width, height } = opts;
  const canvas: Canvas = {
    width,
    height,
    scale: Math.min(width / REFERENCE_WIDTH, height / REFERENCE_HEIGHT),
    surface: new Float32Array(width * height),
    defect: new Float32Array(opts.label === 'ok' ? 0 : width * height),
    extent: { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity },
  };
  const part = placePart(rng, width, height);
  drawPlate(rng, canvas, part);
  drawSmudges(rng, canvas, part);
  drawHoles(canvas, part);
  // The defect draws from its own stream, so that one seed gives the same part, lighting and noise
  // whatever the label: an 'ok' and a 'crack' frame of a seed differ only where the crack is.
  if (opts.label !== 'ok') drawDefect(new Rng(opts.seed ^ DEFECT_STREAM), canvas, part, opts.label);
  const pixels = expose(rng, canvas, opts.lighting);
  const truth: FrameTruth = { label: opts.label };
  if (opts.label !== 'ok') truth.box = boxOf(canvas.extent, width, height);
  const data = await encode(rng, pixels, width, height, opts.format);
  return { data, format: opts.format, truth };
}

function checkOptions(opts: RenderOptions): void {
  const { width, height } = opts;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < MIN_SIDE || height < MIN_SIDE) {
    throw new RangeError(
      `camera frame size ${width}x${height} is invalid: width and height must be integers >= ${MIN_SIDE}`,
    );
  }
  if (width * height > MAX_PIXELS) {
    throw new RangeError(`camera frame size ${width}x${height} is larger than ${MAX_PIXELS} pixels`);
  }
  if (!Number.isFinite(opts.seed)) throw new RangeError(`camera seed ${opts.seed} is not a finite number`);
}

function placePart(rng: Rng, width: number, height: number): Part {
  const angle = rng.range(-0.07, 0.07);
  return {
    cx: width * (0.5 + rng.range(-0.05, 0.05)),
    cy: height * (0.5 + rng.range(-0.05, 0.05)),
    halfW: width * rng.range(0.38, 0.44),
    halfH: height * rng.range(0.36, 0.42),
    cos: Math.cos(angle),
    sin: Math.sin(angle),
  };
}

/** Frame coordinates of a point given in part coordinates (u along the plate, v across). */
function toFrame(part: Part, u: number, v: number): [number, number] {
  return [part.cx + u * part.cos - v * part.sin, part.cy + u * part.sin + v * part.cos];
}

/** Random 1-D profile smoothed over `window` samples: brushing streaks and their slow modulation. */
function smoothProfile(
  rng: Rng,
  length: number,
  window: number,
  amplitude: number,
  streakChance: number,
): Float32Array {
  const raw = new Float32Array(length + window);
  for (let i = 0; i < raw.length; i++) {
    raw[i] = rng.gaussian() * amplitude * (rng.chance(streakChance) ? 2.2 : 1);
  }
  const out = new Float32Array(length);
  let sum = 0;
  for (let i = 0; i < window; i++) sum += raw[i]!;
  for (let i = 0; i < length; i++) {
    out[i] = sum / Math.sqrt(window);
    sum += raw[i + window]! - raw[i]!;
  }
  return out;
}

/** Background conveyor plus the brushed plate with a lit bevel. */
function drawPlate(rng: Rng, canvas: Canvas, part: Part): void {
  const { width, height, scale, surface } = canvas;
  const background = rng.range(20, 65);
  const level = rng.range(115, 170);
  const brushAlongU = rng.chance(0.75);
  const streakAmplitude = rng.range(2.5, 7);
  const grain = rng.range(1.5, 4.5);
  const bevel = Math.max(1.5, 5 * scale);
  const bevelLight = rng.range(15, 40);
  const across = Math.ceil(2 * (brushAlongU ? part.halfH : part.halfW)) + 2;
  const along = Math.ceil(2 * (brushAlongU ? part.halfW : part.halfH)) + 2;
  const streaks = smoothProfile(rng, across, Math.max(1, Math.round(2 * scale)), streakAmplitude, 0.03);
  const modulation = smoothProfile(rng, along, Math.max(4, Math.round(60 * scale)), 0.25, 0);
  let noise = rng.nextU32();
  const { cos, sin, halfW, halfH } = part;
  for (let y = 0; y < height; y++) {
    let u = (0 - part.cx) * cos + (y - part.cy) * sin;
    let v = -(0 - part.cx) * sin + (y - part.cy) * cos;
    let i = y * width;
    for (let x = 0; x < width; x++, i++, u += cos, v -= sin) {
      noise = (Math.imul(noise, 1664525) + 1013904223) >>> 0;
      const n = NOISE_TABLE[noise >>> (32 - NOISE_TABLE_BITS)]!;
      const edge = Math.min(halfW - Math.abs(u), halfH - Math.abs(v));
      if (edge <= -0.5) {
        surface[i] = background + n * 3;
        continue;
      }
      const a = brushAlongU ? v + halfH : u + halfW;
      const b = brushAlongU ? u + halfW : v + halfH;
      const ia = a < 0 ? 0 : a >= across ? across - 1 : a | 0;
      const ib = b < 0 ? 0 : b >= along ? along - 1 : b | 0;
      let value = level + streaks[ia]! * (1 + modulation[ib]!) + n * grain;
      if (edge < bevel) {
        // Light comes from the top left: those bevels catch it, the others fall into shade.
        const nearSide = halfW - Math.abs(u) < halfH - Math.abs(v);
        const lit = (nearSide ? u < 0 : v < 0) ? 1 : -1;
        value += lit * bevelLight * (1 - edge / bevel);
      }
      const alpha = edge >= 0.5 ? 1 : edge + 0.5;
      surface[i] = alpha * value + (1 - alpha) * background;
    }
  }
}

/** Harmless large soft stains (oil, coolant): present on good parts too, so they mean nothing. */
function drawSmudges(rng: Rng, canvas: Canvas, part: Part): void {
  const count = rng.int(0, 3);
  for (let k = 0; k < count; k++) {
    const [cx, cy] = toFrame(part, rng.range(-0.8, 0.8) * part.halfW, rng.range(-0.8, 0.8) * part.halfH);
    const radius = rng.range(25, 90) * canvas.scale;
    const contrast = rng.sign() * rng.range(4, 12);
    stampBlob(
      canvas.surface,
      canvas.width,
      canvas.height,
      cx,
      cy,
      radius,
      radius * rng.range(0.5, 1),
      rng.range(0, Math.PI),
      contrast,
      'soft',
    );
  }
}

/** Four mounting holes at fixed places on the plate: normal features a model must not flag. */
function drawHoles(canvas: Canvas, part: Part): void {
  const radius = Math.max(3, 11 * canvas.scale);
  for (const su of [-1, 1]) {
    for (const sv of [-1, 1]) {
      const [cx, cy] = toFrame(
        part,
        su * (part.halfW - 26 * canvas.scale),
        sv * (part.halfH - 26 * canvas.scale),
      );
      stampBlob(canvas.surface, canvas.width, canvas.height, cx, cy, radius, radius, 0, -90, 'hard');
    }
  }
}

/**
 * Adds `contrast` inside an ellipse: 'hard' with a 1.5 px anti-aliased rim (specks, holes),
 * 'soft' with a smooth falloff to the rim (stains). Returns nothing; writes `target` additively
 * or, for the defect layer, through `compose`.
 */
function stampBlob(
  target: Float32Array,
  width: number,
  height: number,
  cx: number,
  cy: number,
  rx: number,
  ry: number,
  angle: number,
  contrast: number,
  profile: 'hard' | 'soft',
  compose?: (index: number, value: number) => void,
  extent?: Extent,
): void {
  const reach = Math.max(rx, ry) + 1.5;
  const x0 = Math.max(0, Math.floor(cx - reach));
  const x1 = Math.min(width - 1, Math.ceil(cx + reach));
  const y0 = Math.max(0, Math.floor(cy - reach));
  const y1 = Math.min(height - 1, Math.ceil(cy + reach));
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const meanRadius = (rx + ry) / 2;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const p = (dx * c + dy * s) / rx;
      const q = (-dx * s + dy * c) / ry;
      const r = Math.sqrt(p * p + q * q);
      let weight: number;
      if (profile === 'soft') {
        if (r >= 1) continue;
        const t = 1 - r * r;
        weight = t * t;
      } else {
        // Distance past the rim in pixels, smoothed over 1.5 px.
        const past = (r - 1) * meanRadius;
        weight = past <= -0.75 ? 1 : past >= 0.75 ? 0 : (0.75 - past) / 1.5;
        if (weight === 0) continue;
      }
      const index = y * width + x;
      if (compose) compose(index, contrast * weight);
      else target[index] = target[index]! + contrast * weight;
      if (extent && weight > 0.3) grow(extent, x, y);
    }
  }
}

function grow(extent: Extent, x: number, y: number): void {
  if (x < extent.x0) extent.x0 = x;
  if (y < extent.y0) extent.y0 = y;
  if (x > extent.x1) extent.x1 = x;
  if (y > extent.y1) extent.y1 = y;
}

/** Keeps, per pixel, the defect contribution of largest magnitude (a line over itself stays one line). */
function composer(layer: Float32Array): (index: number, value: number) => void {
  return (index, value) => {
    if (Math.abs(value) > Math.abs(layer[index]!)) layer[index] = value;
  };
}

/** A line segment of width `lineWidth` with anti-aliased sides, written through `compose`. */
function stampSegment(
  canvas: Canvas,
  ax: number,
  ay: number,
  bx: number,
  by: number,
  lineWidth: number,
  contrastA: number,
  contrastB: number,
): void {
  const { width, height, extent } = canvas;
  const compose = composer(canvas.defect);
  const half = lineWidth / 2;
  const reach = half + 1.5;
  const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - reach));
  const x1 = Math.min(width - 1, Math.ceil(Math.max(ax, bx) + reach));
  const y0 = Math.max(0, Math.floor(Math.min(ay, by) - reach));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(ay, by) + reach));
  const dx = bx - ax;
  const dy = by - ay;
  const lengthSq = dx * dx + dy * dy || 1;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let t = ((x - ax) * dx + (y - ay) * dy) / lengthSq;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const px = ax + t * dx - x;
      const py = ay + t * dy - y;
      const past = Math.sqrt(px * px + py * py) - half;
      const weight = past <= -0.75 ? 1 : past >= 0.75 ? 0 : (0.75 - past) / 1.5;
      if (weight === 0) continue;
      compose(y * width + x, (contrastA + (contrastB - contrastA) * t) * weight);
      if (weight > 0.3) grow(extent, x, y);
    }
  }
}

/** A random point well inside the plate (away from the holes' rim), in frame coordinates. */
function interiorPoint(rng: Rng, part: Part, margin: number): [number, number] {
  return toFrame(part, rng.range(-margin, margin) * part.halfW, rng.range(-margin, margin) * part.halfH);
}

function drawDefect(rng: Rng, canvas: Canvas, part: Part, label: Exclude<DefectClass, 'ok'>): void {
  switch (label) {
    case 'scratch':
      drawScratch(rng, canvas, part);
      break;
    case 'crack':
      drawCrack(rng, canvas, part);
      break;
    case 'inclusion':
      drawInclusion(rng, canvas, part);
      break;
  }
}

/** Long, thin, nearly straight line, bright (catching the light) or dark; fades at its ends. */
function drawScratch(rng: Rng, canvas: Canvas, part: Part): void {
  const s = canvas.scale;
  const length = rng.range(80, 260) * s;
  const lineWidth = Math.max(2, rng.range(2.5, 5) * s);
  const contrast = (rng.chance(0.6) ? 1 : -1) * rng.range(40, 85);
  const angle = rng.range(0, Math.PI);
  const [mx, my] = interiorPoint(rng, part, 0.55);
  const dirX = Math.cos(angle);
  const dirY = Math.sin(angle);
  // A slight bow: the tool drifted while it slid over the part.
  const bow = rng.range(-0.06, 0.06) * length;
  const segments = 8;
  let prev: [number, number, number] | undefined;
  for (let k = 0; k <= segments; k++) {
    const t = k / segments - 0.5;
    const offset = bow * (1 - 4 * t * t);
    const x = mx + dirX * t * length - dirY * offset;
    const y = my + dirY * t * length + dirX * offset;
    const fade = Math.min(1, (0.5 - Math.abs(t)) / 0.1 + 0.35);
    const c = contrast * fade;
    if (prev) stampSegment(canvas, prev[0], prev[1], x, y, lineWidth, prev[2], c);
    prev = [x, y, c];
  }
}

/** Jagged dark random walk with a few thinner branches. */
function drawCrack(rng: Rng, canvas: Canvas, part: Part): void {
  const s = canvas.scale;
  const contrast = -rng.range(45, 95);
  const [sx, sy] = interiorPoint(rng, part, 0.55);
  const walk = (
    x: number,
    y: number,
    heading: number,
    length: number,
    lineWidth: number,
    depth: number,
  ): void => {
    let travelled = 0;
    while (travelled < length) {
      const step = rng.range(5, 12) * s;
      heading += rng.gaussian() * 0.45;
      const nx = x + Math.cos(heading) * step;
      const ny = y + Math.sin(heading) * step;
      const w = Math.max(2, lineWidth * rng.range(0.8, 1.2));
      stampSegment(canvas, x, y, nx, ny, w, contrast, contrast);
      if (depth === 0 && rng.chance(0.12)) {
        walk(
          nx,
          ny,
          heading + rng.sign() * rng.range(0.5, 1.2),
          length * rng.range(0.2, 0.45),
          lineWidth * 0.75,
          depth + 1,
        );
      }
      x = nx;
      y = ny;
      travelled += step;
    }
  };
  walk(sx, sy, rng.range(0, 2 * Math.PI), rng.range(70, 200) * s, Math.max(2.2, rng.range(2.5, 4) * s), 0);
}

/** A compact cluster of dark (slag) or bright (metallic) specks. */
function drawInclusion(rng: Rng, canvas: Canvas, part: Part): void {
  const s = canvas.scale;
  const contrast = (rng.chance(0.7) ? -1 : 1) * rng.range(50, 100);
  const [cx, cy] = interiorPoint(rng, part, 0.6);
  const count = rng.int(1, 5);
  const spread = rng.range(4, 14) * s;
  const compose = composer(canvas.defect);
  for (let k = 0; k < count; k++) {
    const main = k === 0;
    const r = Math.max(main ? 2.5 : 1.5, (main ? rng.range(3.5, 7) : rng.range(2, 4.5)) * s);
    const x = main ? cx : cx + rng.gaussian() * spread;
    const y = main ? cy : cy + rng.gaussian() * spread;
    const c = contrast * (main ? 1 : rng.range(0.7, 1));
    stampBlob(
      canvas.defect,
      canvas.width,
      canvas.height,
      x,
      y,
      r,
      r * rng.range(0.6, 1),
      rng.range(0, Math.PI),
      c,
      'hard',
      compose,
      canvas.extent,
    );
  }
}

/**
 * The camera's exposure: lighting gradient, vignette, gain/offset and sensor noise, then 8-bit
 * quantization. The defect layer is lit like the surface under it (a scratch in a dark corner is
 * fainter), as it would be on a real line.
 */
function expose(rng: Rng, canvas: Canvas, lighting: Lighting | undefined): Uint8Array {
  const { width, height, surface, defect } = canvas;
  const gradX = rng.range(-0.3, 0.3) / width;
  const gradY = rng.range(-0.3, 0.3) / height;
  const vignette = rng.range(0, 0.4) / ((width / 2) ** 2 + (height / 2) ** 2);
  // A lighting change applies on top of the frame's own draws: the same seed gives the same
  // frame under the old and the new light, only lit differently.
  const gain = rng.range(0.8, 1.2) * (lighting?.gain ?? 1);
  const offset = rng.range(-12, 12) + (lighting?.offset ?? 0);
  const sensorNoise = rng.range(1, 5);
  const hasDefect = defect.length > 0;
  const out = new Uint8Array(width * height);
  let noise = rng.nextU32();
  const cx = width / 2;
  const cy = height / 2;
  for (let y = 0; y < height; y++) {
    const dy = y - cy;
    let i = y * width;
    for (let x = 0; x < width; x++, i++) {
      const dx = x - cx;
      const light = gain * (1 + gradX * dx + gradY * dy) * (1 - vignette * (dx * dx + dy * dy));
      noise = (Math.imul(noise, 1664525) + 1013904223) >>> 0;
      const base = hasDefect ? surface[i]! + defect[i]! : surface[i]!;
      const v = base * light + offset + NOISE_TABLE[(noise >>> 7) & NOISE_TABLE_MASK]! * sensorNoise;
      out[i] = v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5;
    }
  }
  return out;
}

function boxOf(extent: Extent, width: number, height: number): NonNullable<FrameTruth['box']> {
  const x = Math.max(0, Math.floor(extent.x0));
  const y = Math.max(0, Math.floor(extent.y0));
  const x1 = Math.min(width - 1, Math.ceil(extent.x1));
  const y1 = Math.min(height - 1, Math.ceil(extent.y1));
  return { x, y, width: Math.max(1, x1 - x + 1), height: Math.max(1, y1 - y + 1) };
}

/** Focus and compression vary from camera to camera: sometimes a slight blur, JPEG quality 55..95. */
async function encode(
  rng: Rng,
  pixels: Uint8Array,
  width: number,
  height: number,
  format: 'jpeg' | 'png',
): Promise<Buffer> {
  const blurSigma = rng.chance(0.3) ? rng.range(0.6, 1.4) : 0;
  const quality = rng.int(55, 95);
  let img = sharp(pixels, { raw: { width, height, channels: 1 } });
  if (blurSigma > 0) img = img.blur(blurSigma);
  return format === 'jpeg' ? img.jpeg({ quality }).toBuffer() : img.png({ compressionLevel: 1 }).toBuffer();
}
