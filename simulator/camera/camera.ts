import { performance } from 'node:perf_hooks';
import { Rng } from './rng.js';
import type { FrameSink } from './sinks.js';
import {
  DEFECT_CLASSES,
  type DefectClass,
  type FrameTruth,
  type Lighting,
  type RenderOptions,
  type RenderedFrame,
} from './types.js';

/** What the simulator knows about a frame it sent; matched to Vigil's results by origin. */
export type SentFrameTruth = FrameTruth & {
  /** Wall-clock ms when the frame started on its way to Vigil. */
  sentAt: number;
};

export interface SimCameraOptions {
  /** Camera name; prefix of every frame's origin (`<name>-000123.jpg`). */
  name: string;
  fps: number;
  width: number;
  height: number;
  /** Share of frames that show a defect, 0..1. */
  defectRate: number;
  /** Same seed, same sequence of labels and frames. */
  seed: number;
  format: 'jpeg' | 'png';
  sink: FrameSink;
  /** The frame renderer (simulator/camera/render.ts renderFrame), injected. */
  render: (opts: RenderOptions) => Promise<RenderedFrame>;
  /** Stop by itself after this many frames were rendered; default: run until stop(). */
  maxFrames?: number;
  /** Frames being delivered at once before new ones are skipped; default 4. */
  maxInFlight?: number;
  /** Ground-truth entries kept; the oldest are forgotten beyond this. Default 100 000. */
  maxTruth?: number;
  /** Told about every failed render or delivery; the camera keeps running. */
  onError?: (message: string, origin: string | undefined) => void;
  /** The lighting from the first frame on; absent: the training light. setLighting() changes it. */
  lighting?: Lighting | undefined;
}

export interface SimCameraStats {
  rendered: number;
  delivered: number;
  failed: number;
  /** Ticks skipped because the previous render (or too many deliveries) was still running. */
  skipped: number;
}

const DEFECTS = DEFECT_CLASSES.filter((c): c is Exclude<DefectClass, 'ok'> => c !== 'ok');

/**
 * A simulated inspection camera: renders frames at a fixed rate and hands them to a sink (a
 * folder or an HTTP endpoint). Ticks are scheduled by absolute time from start, so the rate does
 * not drift with timer lateness; a tick that finds the previous render still running is skipped
 * (and counted) rather than queued, as a real camera drops frames it cannot expose.
 */
export class SimCamera {
  readonly name: string;
  readonly truth = new Map<string, SentFrameTruth>();
  readonly stats: SimCameraStats = { rendered: 0, delivered: 0, failed: 0, skipped: 0 };
  private readonly opts: SimCameraOptions;
  private readonly intervalMs: number;
  private rng: Rng;
  private frameNo = 0;
  private tickNo = 0;
  private startedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private rendering = false;
  private running = false;
  private lighting: Lighting | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private finishedResolve: (() => void) | undefined;
  /** Resolves once maxFrames frames were rendered and delivered (or stop() was called). */
  readonly finished: Promise<void>;

  constructor(options: SimCameraOptions) {
    if (!(options.fps > 0))
      throw new Error(`camera ${options.name}: fps must be above 0 (got ${options.fps})`);
    if (!(options.defectRate >= 0 && options.defectRate <= 1)) {
      throw new Error(`camera ${options.name}: defectRate must be within 0..1 (got ${options.defectRate})`);
    }
    this.name = options.name;
    this.opts = options;
    this.intervalMs = 1000 / options.fps;
    this.rng = new Rng(options.seed);
    this.setLighting(options.lighting);
    this.finished = new Promise((resolve) => (this.finishedResolve = resolve));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.startedAt = performance.now();
    this.tickNo = 0;
    this.scheduleNext();
  }

  /** Stops ticking and waits for frames already on their way. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.finishedResolve?.();
  }

  /**
   * Changes the light on the line from the next frame on (undefined: back to the training light):
   * injected drift for testing drift monitoring. Labels and seeds do not change with it.
   */
  setLighting(lighting: Lighting | undefined): void {
    if (lighting && !(lighting.gain > 0 && Number.isFinite(lighting.offset ?? 0)))
      throw new RangeError(`camera ${this.name}: lighting gain must be above 0 (got ${lighting.gain})`);
    this.lighting = lighting && { ...lighting };
  }

  /** The origin the n-th frame (from 1) of this camera gets. */
  originOf(n: number): string {
    return `${this.name}-${String(n).padStart(6, '0')}.${this.opts.format === 'jpeg' ? 'jpg' : 'png'}`;
  }

  private scheduleNext(): void {
    if (!this.running) return;
    const due = this.startedAt + this.tickNo * this.intervalMs;
    this.timer = setTimeout(() => this.tick(), Math.max(0, due - performance.now()));
  }

  private tick(): void {
    if (!this.running) return;
    // Catch up by skipping ticks whose time has already passed (a stalled event loop), so the
    // camera never bursts frames to make up for lost time.
    const now = performance.now();
    const late = Math.floor((now - this.startedAt) / this.intervalMs) - this.tickNo;
    if (late > 0) {
      this.stats.skipped += late;
      this.tickNo += late;
    }
    this.tickNo++;
    const maxInFlight = this.opts.maxInFlight ?? 4;
    if (this.rendering || this.inFlight.size >= maxInFlight) this.stats.skipped++;
    else this.shoot();
    this.scheduleNext();
  }

  private shoot(): void {
    // Labels and seeds are drawn only for frames that are rendered, so skips (which depend on
    // timing) never change the sequence: same seed, same frames.
    const n = ++this.frameNo;
    const label: DefectClass = this.rng.chance(this.opts.defectRate) ? this.rng.pick(DEFECTS) : 'ok';
    const seed = this.rng.nextU32();
    const origin = this.originOf(n);
    if (this.opts.maxFrames !== undefined && n >= this.opts.maxFrames) this.running = false;
    this.rendering = true;
    const job = this.renderAndDeliver(origin, label, seed).finally(() => {
      this.inFlight.delete(job);
      if (!this.running && this.timer === undefined && this.inFlight.size === 0) this.finishedResolve?.();
    });
    this.inFlight.add(job);
    if (!this.running) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private async renderAndDeliver(origin: string, label: DefectClass, seed: number): Promise<void> {
    let frame: RenderedFrame;
    try {
      frame = await this.opts.render({
        width: this.opts.width,
        height: this.opts.height,
        label,
        seed,
        format: this.opts.format,
        ...(this.lighting ? { lighting: this.lighting } : {}),
      });
    } catch (err) {
      this.stats.failed++;
      this.opts.onError?.(`render failed: ${(err as Error).message}`, origin);
      return;
    } finally {
      this.rendering = false;
    }
    this.stats.rendered++;
    this.remember(origin, { ...frame.truth, sentAt: Date.now() });
    const result = await this.opts.sink.deliver({ origin, data: frame.data, format: frame.format });
    if (result.ok) this.stats.delivered++;
    else {
      this.stats.failed++;
      this.opts.onError?.(result.error, origin);
    }
  }

  private remember(origin: string, truth: SentFrameTruth): void {
    this.truth.set(origin, truth);
    const max = this.opts.maxTruth ?? 100_000;
    if (this.truth.size > max) this.truth.delete(this.truth.keys().next().value!);
  }
}
