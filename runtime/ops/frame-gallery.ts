import sharp from 'sharp';
import type { PipelineObserver, ScoredSample } from '../pipeline/observer.js';
import type { Alert, Result } from '../pipeline/result.js';

/**
 * A detection box as the status page draws it, in fractions of the frame (0..1 from the top left).
 * Today's defect models are classifiers and carry none; a result that ever carries `boxes` in
 * this shape gets them drawn, anything else is left out rather than guessed at.
 */
export interface FrameBox {
  x: number;
  y: number;
  width: number;
  height: number;
  label?: string | undefined;
  score?: number | undefined;
}

/** One kept frame as the status page lists it; the image itself is fetched by `id`. */
export interface FrameView {
  /** The result id: the thumbnail is GET /api/v1/frames/<pipeline>/<id>.jpg. */
  id: string;
  /** When the result was produced, ms since the epoch. */
  t: number;
  source: string;
  origin: string;
  label: string;
  score: number;
  threshold: number;
  confidence: number;
  latencyMs: number;
  model: string;
  version: string;
  alert?: { kind: string; severity: string } | undefined;
  boxes?: FrameBox[] | undefined;
}

export interface PipelineFrames {
  /** The latest frames, newest first. */
  latest: FrameView[];
  /** The latest frames that raised an alert, newest first (kept longer: alerts are rare). */
  alerts: FrameView[];
}

export interface FrameGalleryOptions {
  /** Latest frames kept per pipeline (default 8). */
  perPipeline?: number | undefined;
  /** Alert frames kept per pipeline besides the latest (default 4). */
  alertsPerPipeline?: number | undefined;
  /** Thumbnail width in pixels (default 320); smaller frames are not enlarged. */
  thumbWidth?: number | undefined;
  /**
   * How long a frame that was listed to a client stays fetchable after it left the gallery
   * (default 30 s): at 10 fps the last 8 frames turn over in under a second, faster than a
   * browser on a slow link fetches their thumbnails.
   */
  graceMs?: number | undefined;
  /** Upper bound on such listed-then-evicted frames, all pipelines together (default 64). */
  maxRetired?: number | undefined;
  /**
   * Bytes of frames and thumbnails kept, all pipelines together (default 64 MiB). The counts above
   * bound frames, not bytes: 12 frames of a 12 MP PNG are a quarter of a GB per pipeline, enough
   * for systemd's MemoryMax to kill the daemon. Over it, the oldest frames go first.
   */
  maxBytes?: number | undefined;
  /** Monotonic clock, ms (tests). */
  now?: (() => number) | undefined;
}

interface Kept {
  result: Result;
  alert: Alert | undefined;
  /**
   * The encoded frame exactly as it arrived: the pipeline's Buffer, never copied. Dropped once its
   * thumbnail is made, or when the frame is forgotten.
   */
  data: Buffer | undefined;
  /** What this frame counts against maxBytes now: its frame until the thumbnail is made, then that. */
  bytes: number;
  inLatest: boolean;
  inAlerts: boolean;
  /** Sent to a client, which may still ask for its thumbnail. */
  listed: boolean;
  retiredAt: number;
  thumb?: Promise<Buffer> | undefined;
  /** Its thumbnail is queued or being made: the frame's bytes must stay until then. */
  encoding: boolean;
  /** Left the gallery; a queued thumbnail of it is not made. */
  gone: boolean;
}

/**
 * A thumbnail asked for while its frame was still kept, whose frame left before its turn came.
 * The ops server answers it with its statusCode and message, as for any other frame not kept.
 */
export class FrameNotKeptError extends Error {
  readonly statusCode = 404;
  constructor(pipeline: string, id: string) {
    super(
      `frame ${id} of pipeline ${pipeline} is no longer kept: the status page keeps only the last few ` +
        'frames of each pipeline, for a short while',
    );
    this.name = 'FrameNotKeptError';
  }
}

/** The memory a Buffer keeps alive: all of its ArrayBuffer when it is a slice of a larger one. */
const heldBytes = (b: Buffer): number => Math.max(b.length, b.buffer.byteLength);

interface Lanes {
  latest: Kept[];
  alerts: Kept[];
}

/**
 * The status page's live view: per frame pipeline, the last few scored frames with their result
 * and alert. Recording a frame only keeps a reference to its bytes; thumbnails are encoded when a
 * browser asks for one, one at a time (the pipeline's decodes share libvips' threads), and cached
 * for as long as the frame is kept, in place of the frame's bytes.
 *
 * Frames and thumbnails together stay within maxBytes. Over it, whole frames are forgotten, oldest
 * first: those still holding their encoded bytes before those down to a thumbnail, which are small
 * and what a browser is showing. A frame is never listed without something to make its thumbnail
 * from, so the page does not show a broken image for it.
 */
export class FrameGallery implements PipelineObserver {
  private readonly perPipeline: number;
  private readonly alertsPerPipeline: number;
  private readonly thumbWidth: number;
  private readonly graceMs: number;
  private readonly maxRetired: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  private readonly lanes = new Map<string, Lanes>();
  /** Every kept frame, in the order they arrived (a Map iterates in insertion order). */
  private readonly byId = new Map<string, Kept>();
  private retained = 0;
  /** Listed frames that left the gallery, oldest first. */
  private readonly retired: Kept[] = [];
  private encoding: Promise<unknown> = Promise.resolve();

  constructor(options: FrameGalleryOptions = {}) {
    this.perPipeline = Math.max(1, options.perPipeline ?? 8);
    this.alertsPerPipeline = Math.max(0, options.alertsPerPipeline ?? 4);
    this.thumbWidth = Math.max(16, options.thumbWidth ?? 320);
    this.graceMs = Math.max(0, options.graceMs ?? 30_000);
    this.maxRetired = Math.max(0, options.maxRetired ?? 64);
    this.maxBytes = Math.max(0, options.maxBytes ?? 64 * 1024 * 1024);
    this.now = options.now ?? (() => performance.now());
  }

  scored(sample: ScoredSample): void {
    if (sample.kind !== 'frame' || !sample.frame) return;
    const data = sample.frame.data;
    const bytes = heldBytes(data);
    // Keeping it would mean forgetting every other frame and still being over.
    if (bytes > this.maxBytes) return;
    let lanes = this.lanes.get(sample.pipeline);
    if (!lanes) {
      lanes = { latest: [], alerts: [] };
      this.lanes.set(sample.pipeline, lanes);
    }
    const kept: Kept = {
      result: sample.result,
      alert: sample.alert,
      data,
      bytes,
      inLatest: true,
      inAlerts: false,
      listed: false,
      retiredAt: 0,
      encoding: false,
      gone: false,
    };
    this.byId.set(sample.result.id, kept);
    this.retained += bytes;
    lanes.latest.push(kept);
    if (lanes.latest.length > this.perPipeline) {
      const out = lanes.latest.shift()!;
      out.inLatest = false;
      this.release(out);
    }
    if (sample.alert && this.alertsPerPipeline > 0) {
      kept.inAlerts = true;
      lanes.alerts.push(kept);
      if (lanes.alerts.length > this.alertsPerPipeline) {
        const out = lanes.alerts.shift()!;
        out.inAlerts = false;
        this.release(out);
      }
    }
    this.expire();
    this.fit();
  }

  /** What the page lists, per pipeline, newest first. Marks the frames as listed (see graceMs). */
  view(): Record<string, PipelineFrames> {
    this.expire();
    const out: Record<string, PipelineFrames> = {};
    for (const [pipeline, lanes] of this.lanes) {
      out[pipeline] = { latest: this.list(lanes.latest), alerts: this.list(lanes.alerts) };
    }
    return out;
  }

  /**
   * A JPEG thumbnail of a kept frame, made on first request and cached while the frame is kept;
   * undefined when the frame is not (or no longer) kept or belongs to another pipeline. Rejects
   * with FrameNotKeptError when the frame leaves the gallery before its turn to be encoded.
   */
  thumbnail(pipeline: string, resultId: string): Promise<Buffer> | undefined {
    this.expire();
    const kept = this.byId.get(resultId);
    if (!kept || kept.result.pipeline !== pipeline) return undefined;
    if (!kept.thumb) {
      const make = () => {
        if (!kept.data) throw new FrameNotKeptError(pipeline, resultId);
        return sharp(kept.data)
          .resize({ width: this.thumbWidth, withoutEnlargement: true })
          .jpeg({ quality: 70 })
          .toBuffer();
      };
      const thumb = this.encoding.then(make, make);
      this.encoding = thumb.catch(() => undefined);
      kept.thumb = thumb;
      kept.encoding = true;
      thumb.then(
        (jpeg) => {
          kept.encoding = false;
          if (kept.gone) return;
          // The thumbnail is all the page will ever want of this frame.
          kept.data = undefined;
          this.retained += heldBytes(jpeg) - kept.bytes;
          kept.bytes = heldBytes(jpeg);
          this.fit();
        },
        // A frame that fails to encode is not retried on every request: it is forgotten.
        () => {
          kept.encoding = false;
          this.forget(kept);
        },
      );
    }
    return kept.thumb;
  }

  /** Frames kept now, all pipelines (latest, alert and listed-then-evicted ones). */
  get size(): number {
    return this.byId.size;
  }

  /** Bytes of frames and thumbnails kept now, all pipelines; never more than maxBytes. */
  retainedBytes(): number {
    return this.retained;
  }

  private list(kept: Kept[]): FrameView[] {
    const out: FrameView[] = [];
    for (let i = kept.length - 1; i >= 0; i--) {
      const k = kept[i]!;
      k.listed = true;
      out.push(frameView(k.result, k.alert));
    }
    return out;
  }

  private release(kept: Kept): void {
    if (kept.inLatest || kept.inAlerts) return;
    if (!kept.listed || this.maxRetired === 0 || this.graceMs === 0) {
      this.forget(kept);
      return;
    }
    kept.retiredAt = this.now();
    this.retired.push(kept);
  }

  private expire(): void {
    const now = this.now();
    while (
      this.retired.length > 0 &&
      (this.retired.length > this.maxRetired || now - this.retired[0]!.retiredAt > this.graceMs)
    ) {
      this.forget(this.retired.shift()!);
    }
  }

  /**
   * Forgets the oldest frames until the rest fit in maxBytes: first those still holding their
   * encoded bytes, then those down to a thumbnail. A frame whose thumbnail is being made stays: its
   * bytes are in use, and go as soon as the thumbnail is done.
   */
  private fit(): void {
    if (this.retained <= this.maxBytes) return;
    for (const thumbsToo of [false, true]) {
      for (const kept of this.byId.values()) {
        if (this.retained <= this.maxBytes) return;
        if (kept.encoding || (kept.data === undefined && !thumbsToo)) continue;
        this.forget(kept);
      }
    }
  }

  /** Takes a frame out of every list it is in, and lets go of its bytes. */
  private forget(kept: Kept): void {
    if (kept.gone) return;
    kept.gone = true;
    this.byId.delete(kept.result.id);
    this.retained -= kept.bytes;
    kept.bytes = 0;
    kept.data = undefined;
    const lanes = this.lanes.get(kept.result.pipeline);
    if (kept.inLatest && lanes) remove(lanes.latest, kept);
    if (kept.inAlerts && lanes) remove(lanes.alerts, kept);
    kept.inLatest = kept.inAlerts = false;
    remove(this.retired, kept);
  }
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

function frameView(result: Result, alert: Alert | undefined): FrameView {
  const boxes = validBoxes((result as { boxes?: unknown }).boxes);
  return {
    id: result.id,
    t: result.producedAt,
    source: result.source,
    origin: result.origin,
    label: result.label,
    score: result.score,
    threshold: result.threshold,
    confidence: result.confidence,
    latencyMs: result.latencyMs,
    model: result.model.name,
    version: result.model.version,
    ...(alert ? { alert: { kind: alert.kind, severity: alert.severity } } : {}),
    ...(boxes ? { boxes } : {}),
  };
}

const isFraction = (v: unknown): v is number =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1;

/** Boxes in the one shape the page draws; undefined when there are none or they are in another. */
function validBoxes(raw: unknown): FrameBox[] | undefined {
  if (!Array.isArray(raw) || raw.length === 0) return undefined;
  const boxes: FrameBox[] = [];
  for (const b of raw.slice(0, 50) as Array<Record<string, unknown> | null>) {
    if (typeof b !== 'object' || b === null) return undefined;
    const { x, y, width, height, label, score } = b;
    if (!isFraction(x) || !isFraction(y) || !isFraction(width) || !isFraction(height)) return undefined;
    boxes.push({
      x,
      y,
      width,
      height,
      ...(typeof label === 'string' ? { label } : {}),
      ...(typeof score === 'number' && Number.isFinite(score) ? { score } : {}),
    });
  }
  return boxes;
}
