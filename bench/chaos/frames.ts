import autocannon from 'autocannon';
import { renderFrame } from '../../simulator/camera/render.js';
import { Rng } from '../../simulator/camera/rng.js';
import { DEFECT_CLASSES, type DefectClass } from '../../simulator/camera/types.js';

/**
 * Camera frames over HTTP at a fixed rate, driven by autocannon (its rate limiter and latency
 * histogram), with every frame named by an X-Request-Id of ours so that the daemon's stored
 * results can be matched to what was sent. Frames are real JPEGs from the simulator's camera,
 * rendered once before the run (rendering takes far longer than sending).
 */

export interface FramePool {
  frames: Array<{ data: Buffer; label: DefectClass }>;
  width: number;
  height: number;
  meanBytes: number;
}

/** Renders `count` JPEG frames, `defectRate` of them with a defect, deterministically from `seed`. */
export async function renderFramePool(
  count: number,
  width: number,
  height: number,
  defectRate = 0.3,
  seed = 8,
): Promise<FramePool> {
  const rng = new Rng(seed);
  const defects = DEFECT_CLASSES.filter((c) => c !== 'ok');
  const frames: FramePool['frames'] = [];
  for (let i = 0; i < count; i++) {
    const label: DefectClass = rng.chance(defectRate) ? rng.pick(defects) : 'ok';
    const f = await renderFrame({ width, height, label, seed: rng.nextU32(), format: 'jpeg' });
    frames.push({ data: f.data, label });
  }
  const meanBytes = Math.round(frames.reduce((n, f) => n + f.data.length, 0) / Math.max(1, count));
  return { frames, width, height, meanBytes };
}

/**
 * How requests are spread over a second. autocannon's rate limiter gives each connection a quota
 * per one-second window and sends it back to back when the window opens, with every
 * connection's window opening at the same moment: `overallRate: 20` sends 20 frames within a
 * few milliseconds, then nothing for the rest of the second. A camera does not do that. So
 * `even` (the default) runs `rate` autocannon instances of one connection at 1 request/s each,
 * started 1/rate s apart: the same load, evenly spaced. `burst` is autocannon's own pacing.
 */
export type Pacing = 'even' | 'burst';

export interface FrameRunOptions {
  /** The camera-http endpoint, e.g. http://127.0.0.1:8471/frames. */
  url: string;
  /** Frames per second (a whole number with `even` pacing). */
  rate: number;
  pool: FramePool;
  /** Prefix of the frame ids (X-Request-Id), unique per run: `<prefix>-<n>`. */
  idPrefix: string;
  /** Seconds to run; default until stop(). */
  durationS?: number;
  /** Default even. */
  pacing?: Pacing;
}

export interface FrameRunSummary {
  rate: number;
  pacing: Pacing;
  durationS: number;
  /**
   * Requests made (each is built as it is sent). autocannon's stop() lets each connection send
   * one more request whose answer it then ignores, so the last second's answers may be missing:
   * the daemon's own count (vigil_frames_in_total) is the one to trust for what it accepted.
   */
  sent: number;
  accepted: number;
  /** Refusals by the daemon's reason (`code` of its JSON answer), or `http_<status>`. */
  refused: Record<string, number>;
  /** Requests that got no answer: connection errors, timeouts, and any in flight when the run stopped. */
  unanswered: number;
  /** autocannon's count of connection errors (timeouts included). */
  errors: number;
  /** Of the errors, those that timed out. */
  timeouts: number;
  /** Response time of every answered request (ms), exact percentiles. */
  http: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  /** Answered requests per second over the run. */
  achievedRate: number;
}

/** One frame run: autocannon POSTing pool frames at `rate`, recording what the daemon answered. */
export class FrameRun {
  /** Accepted frame id → when its 202 came (ms since the epoch). */
  readonly accepted = new Map<string, number>();
  readonly refused: Record<string, number> = {};
  readonly startedAt = Date.now();
  private readonly responseMs: number[] = [];
  private n = 0;
  private readonly instances: autocannon.Instance[] = [];
  private readonly results: Array<Promise<autocannon.Result>> = [];
  private readonly starters: NodeJS.Timeout[] = [];
  private stopped = false;
  private stoppedAt: number | undefined;

  constructor(readonly options: FrameRunOptions) {
    const pacing = options.pacing ?? 'even';
    if (pacing === 'even') {
      if (!Number.isInteger(options.rate) || options.rate < 1)
        throw new Error(`even pacing takes a whole number of frames per second, not ${options.rate}`);
      for (let i = 0; i < options.rate; i++) {
        const start = () => this.launch({ connections: 1, connectionRate: 1 });
        if (i === 0) start();
        else this.starters.push(setTimeout(start, (i * 1000) / options.rate));
      }
    } else {
      this.launch({
        connections: Math.max(1, Math.min(8, Math.ceil(options.rate))),
        overallRate: options.rate,
      });
    }
  }

  private launch(pace: Pick<autocannon.Options, 'connections' | 'connectionRate' | 'overallRate'>): void {
    if (this.stopped) return;
    const { pool, idPrefix } = this.options;
    const u = new URL(this.options.url);
    let settle: (r: autocannon.Result) => void = () => undefined;
    let fail: (err: unknown) => void = () => undefined;
    this.results.push(
      new Promise<autocannon.Result>((resolve, reject) => {
        settle = resolve;
        fail = reject;
      }),
    );
    const instance = autocannon(
      {
        url: u.origin,
        ...pace,
        duration: this.options.durationS ?? 24 * 3600,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            path: u.pathname,
            setupRequest: (req) => {
              const i = this.n++;
              const id = `${idPrefix}-${String(i).padStart(6, '0')}`;
              req.headers = {
                'content-type': 'image/jpeg',
                'x-request-id': id,
                'x-frame-origin': `${id}.jpg`,
              };
              req.body = pool.frames[i % pool.frames.length]!.data;
              return req;
            },
            onResponse: (status, body) => this.onResponse(status, body),
          },
        ],
      },
      (err, result) => (err ? fail(err) : settle(result)),
    );
    instance.on('response', (_client, _status, _bytes, responseTime) => this.responseMs.push(responseTime));
    this.instances.push(instance);
  }

  private onResponse(status: number, body: string): void {
    let json: { id?: string; code?: string } = {};
    try {
      json = JSON.parse(body) as typeof json;
    } catch {
      // not JSON: counted by status below
    }
    if (status === 202 && typeof json.id === 'string') this.accepted.set(json.id, Date.now());
    else {
      const reason = json.code ?? `http_${status}`;
      this.refused[reason] = (this.refused[reason] ?? 0) + 1;
    }
  }

  /** Stops sending (a request in flight is abandoned) and resolves with the summary. */
  async stop(): Promise<FrameRunSummary> {
    this.stopped = true;
    this.stoppedAt ??= Date.now();
    for (const t of this.starters) clearTimeout(t);
    for (const i of this.instances) i.stop();
    return this.summary(await Promise.all(this.results));
  }

  /** Waits for the configured duration to pass and resolves with the summary. */
  async finished(): Promise<FrameRunSummary> {
    await new Promise((r) =>
      setTimeout(r, Math.max(0, this.startedAt + (this.options.durationS ?? 0) * 1000 - Date.now())),
    );
    return this.stop();
  }

  private summary(results: autocannon.Result[]): FrameRunSummary {
    const refusedCount = Object.values(this.refused).reduce((a, b) => a + b, 0);
    const errors = results.reduce((n, r) => n + r.errors, 0);
    const timeouts = results.reduce((n, r) => n + r.timeouts, 0);
    const sorted = [...this.responseMs].sort((a, b) => a - b);
    const q = (p: number) =>
      sorted.length === 0
        ? null
        : Math.round(
            sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]! * 100,
          ) / 100;
    const durationS = ((this.stoppedAt ?? Date.now()) - this.startedAt) / 1000;
    return {
      rate: this.options.rate,
      pacing: this.options.pacing ?? 'even',
      durationS: Math.round(durationS * 10) / 10,
      sent: this.n,
      unanswered: Math.max(0, this.n - this.accepted.size - refusedCount),
      accepted: this.accepted.size,
      refused: { ...this.refused },
      errors,
      timeouts,
      http: {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: sorted.length ? Math.round(sorted.at(-1)! * 100) / 100 : null,
      },
      achievedRate: Math.round((sorted.length / Math.max(0.001, durationS)) * 10) / 10,
    };
  }
}
