import type { DecodedImage } from '../pipeline/preprocess.js';
import { sniffImageType } from '../pipeline/preprocess.js';
import type { DataQualityFlag } from '../pipeline/result.js';
import type { FrameSample } from '../pipeline/sample.js';
import type { ImageExpectations } from './config.js';
import type { DataQualityMonitor, DqSeries } from './monitor.js';

export type FrameViolation = DataQualityFlag['violations'][number];

/**
 * What a frame pipeline asks of the data expectations of its cameras: the broken expectations
 * of a frame before decoding it (format, bytes: free) and after (size, brightness: on the pixels
 * already decoded for the model). Each frame is counted and reported once, however many
 * pipelines read its source. Undefined: the frame met them (or its source declares none).
 */
export interface FrameQualityCheck {
  beforeDecode(sample: FrameSample): FrameViolation[] | undefined;
  afterDecode(sample: FrameSample, image: DecodedImage): FrameViolation[] | undefined;
}

interface Checked {
  before?: FrameViolation[] | null;
  after?: FrameViolation[] | null;
}

/**
 * The image expectations of one camera source (docs/DATA-QUALITY.md): format, encoded size,
 * frame size and mean brightness, all reported as rule `image` (the message says which), and
 * staleness (`stale`: no frame for staleAfterSeconds).
 */
export class ImageChecker {
  private readonly checked = new WeakMap<FrameSample, Checked>();
  private readonly needsPixels: boolean;
  private readonly dq: DqSeries;
  private seenAt: number;
  private lastId: string | undefined;
  private stale = false;

  constructor(
    readonly source: string,
    private readonly cfg: ImageExpectations,
    private readonly monitor: DataQualityMonitor,
    startedAt = Date.now(),
  ) {
    this.needsPixels =
      cfg.minWidth !== undefined ||
      cfg.minHeight !== undefined ||
      cfg.maxWidth !== undefined ||
      cfg.maxHeight !== undefined ||
      cfg.brightness !== undefined;
    this.dq = monitor.seriesOf(source);
    this.seenAt = startedAt;
  }

  /**
   * A frame of this source arrived (whether or not a pipeline reads it): staleness is over. Only
   * the stale rule clears here; the frame counts towards clearing `image` once a pipeline has
   * checked it (settle), so that one frame is never counted twice.
   */
  seen(sample: FrameSample, now = Date.now()): void {
    this.seenAt = now;
    this.lastId = sample.id;
    if (this.stale) {
      this.stale = false;
      this.monitor.reported(this.dq, now);
    }
  }

  /** Staleness counts from here (DataQuality.start()), not from when the checker was built. */
  startClocks(now: number): void {
    if (this.seenAt < now) this.seenAt = now;
  }

  staleCheck(now: number): void {
    const limit = this.cfg.staleAfterSeconds;
    if (limit === undefined || now - this.seenAt <= limit * 1000) return;
    const first = !this.stale;
    this.stale = true;
    this.monitor.violation(
      this.dq,
      {
        rule: 'stale',
        message: `camera ${this.source} has sent no frame for ${Math.round((now - this.seenAt) / 1000)} s (staleAfterSeconds ${limit})`,
        traceId: this.lastId,
        origin: this.source,
      },
      now,
      first,
    );
  }

  get watchesStaleness(): boolean {
    return this.cfg.staleAfterSeconds !== undefined;
  }

  beforeDecode(sample: FrameSample): FrameViolation[] | undefined {
    const entry = this.entry(sample);
    if (entry.before === undefined) {
      const found: string[] = [];
      const e = this.cfg;
      if (e.formats) {
        const type = sniffImageType(sample.data);
        if (!type || !e.formats.includes(type))
          found.push(`format ${type ?? 'unknown'} is not one of ${e.formats.join(', ')}`);
      }
      if (e.maxBytes !== undefined && sample.data.length > e.maxBytes)
        found.push(`${sample.data.length} bytes is over maxBytes ${e.maxBytes}`);
      entry.before = this.settle(sample, found, !this.needsPixels);
    }
    return entry.before ?? undefined;
  }

  afterDecode(sample: FrameSample, image: DecodedImage): FrameViolation[] | undefined {
    const entry = this.entry(sample);
    if (!this.needsPixels) return undefined;
    if (entry.after === undefined) {
      const e = this.cfg;
      const found: string[] = [];
      const w = image.sourceWidth;
      const h = image.sourceHeight;
      if (e.minWidth !== undefined && w < e.minWidth)
        found.push(`width ${w} is under minWidth ${e.minWidth}`);
      if (e.maxWidth !== undefined && w > e.maxWidth) found.push(`width ${w} is over maxWidth ${e.maxWidth}`);
      if (e.minHeight !== undefined && h < e.minHeight)
        found.push(`height ${h} is under minHeight ${e.minHeight}`);
      if (e.maxHeight !== undefined && h > e.maxHeight)
        found.push(`height ${h} is over maxHeight ${e.maxHeight}`);
      if (e.brightness) {
        const mean = meanBrightness(image.pixels);
        const shown = Math.round(mean * 10) / 10;
        if (e.brightness.min !== undefined && mean < e.brightness.min)
          found.push(`mean brightness ${shown} is under ${e.brightness.min}`);
        if (e.brightness.max !== undefined && mean > e.brightness.max)
          found.push(`mean brightness ${shown} is over ${e.brightness.max}`);
      }
      // A frame that broke a before-decode rule was already reported as broken.
      entry.after = this.settle(sample, found, entry.before === null);
    }
    return entry.after ?? undefined;
  }

  private entry(sample: FrameSample): Checked {
    let entry = this.checked.get(sample);
    if (!entry) this.checked.set(sample, (entry = {}));
    return entry;
  }

  /** Reports the frame's findings once; a frame that met every rule counts towards clearing. */
  private settle(sample: FrameSample, found: string[], lastStage: boolean): FrameViolation[] | null {
    const now = Date.now();
    if (found.length === 0) {
      if (lastStage) this.monitor.passed(this.dq, now, this.stale ? ['stale'] : undefined);
      return null;
    }
    const message = `frame ${sample.origin}: ${found.join('; ')}`;
    this.monitor.violation(
      this.dq,
      { rule: 'image', message, traceId: sample.id, origin: sample.origin, receivedAt: sample.receivedAt },
      now,
    );
    return [{ source: this.source, rule: 'image', message }];
  }
}

/** Mean of every channel value of the decoded pixels (0-255). */
export function meanBrightness(pixels: Uint8Array): number {
  if (pixels.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < pixels.length; i++) sum += pixels[i]!;
  return sum / pixels.length;
}

/** The image checks of every camera source, as one FrameQualityCheck for the pipelines. */
export class FrameQuality implements FrameQualityCheck {
  constructor(private readonly bySource: ReadonlyMap<string, ImageChecker>) {}

  beforeDecode(sample: FrameSample): FrameViolation[] | undefined {
    return this.bySource.get(sample.source)?.beforeDecode(sample);
  }

  afterDecode(sample: FrameSample, image: DecodedImage): FrameViolation[] | undefined {
    return this.bySource.get(sample.source)?.afterDecode(sample, image);
  }
}
