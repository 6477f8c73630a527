import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { v7 as uuidv7 } from 'uuid';
import type { Engine, TensorMap } from '../engines/engine.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { isImageManifest, type ImageManifest } from '../model/manifest.js';
import type { Metrics } from '../ops/metrics.js';
import type { PipelineConfig } from '../config/schema.js';
import { LatencyRecorder, type LatencySummary } from './latency.js';
import { classify, type Classification } from './postprocess.js';
import { decodeAndResize, normalize } from './preprocess.js';
import type { Alert, Result, Severity, StageTimings } from './result.js';
import type { FrameSample } from './sample.js';
import { FrameScheduler, type DropReason } from './scheduler.js';
import { AlertDelivery } from './alert-delivery.js';
import { adaptInput, incompatibility } from '../rollout/compat.js';
import { hasNonFinite, observeLive, type LiveObservation, type RolloutTap } from '../rollout/shadow.js';
import { notifyObservers, type PipelineObserver } from './observer.js';
import type { FrameQualityCheck, FrameViolation } from '../quality/image.js';

/** Where results and alerts are kept; written before anything is published. */
export interface ResultSink {
  saveResult(result: Result, alert?: Alert): void;
}

/**
 * Where alerts (and optionally results) go out. The publisher owns delivery state: it marks an
 * alert as published in the store when the broker acknowledges it, and re-sends the ones that
 * were not on reconnect.
 */
export interface AlertPublisher {
  publishAlert(alert: Alert): Promise<{ ackMs: number }>;
  publishResult(pipeline: string, result: Result): void;
}

export interface PipelineContext {
  name: string;
  /**
   * Told when a result could not be stored (a full disk), so that frame sources stop taking
   * frames until the store takes writes again (runtime/store/write-guard.ts).
   */
  onStoreError?: (() => void) | undefined;
  config: PipelineConfig;
  deviceId: string;
  /**
   * The engine in use now, or undefined while the model is unavailable (failed to load or
   * verify): a getter so that a model swap never needs a pipeline restart.
   */
  engine: () => Engine | undefined;
  sink: ResultSink;
  publisher: AlertPublisher;
  metrics: Metrics;
  /**
   * Counts a sample that turned out to be bad input (it does not decode). The same sample may
   * reach several pipelines; the callee counts it once per sample.
   */
  inputError: (sample: FrameSample, reason: 'decode_error') => void;
  log: Logger;
  /** Told about every stored result and alert (live lines in `vigil simulate`, the report). */
  onResult?: (result: Result, alert: Alert | undefined) => void;
  onAlertPublished?: (alert: Alert, latencyMs: number) => void;
  /**
   * The model's rollout (its ModelHost): a new version in shadow is run on each frame's tensor
   * after the frame's own result is stored, and live outcomes are reported while a promotion is
   * watched. Absent: no rollout.
   */
  rollout?: RolloutTap | undefined;
  /** Told about every stored result with its input tensor and frame (status page, drift). */
  observers?: readonly PipelineObserver[] | undefined;
  /**
   * The image expectations of the cameras (docs/DATA-QUALITY.md); the pipeline's
   * dataQuality.policy decides what happens to a frame that breaks one. Absent: none declared.
   */
  dataQuality?: FrameQualityCheck | undefined;
}

export interface PipelineStats {
  seen: number;
  processed: number;
  dropped: Record<string, number>;
  alerts: Record<string, number>;
  budgetExceeded: number;
  latencyMs: LatencySummary | undefined;
  alertLatencyMs: LatencySummary | undefined;
  stagesMs: Record<string, LatencySummary | undefined>;
}

const STAGES: Array<keyof StageTimings> = [
  'queue',
  'decode',
  'preprocess',
  'inference',
  'postprocess',
  'store',
  'publish',
];

/**
 * One pipeline: frames from its sources, through decode, preprocessing, the engine and
 * postprocessing, into the store and out as alerts. Frames are processed one at a time; the
 * scheduler bounds what waits and drops what can no longer make the budget.
 */
export class Pipeline {
  private readonly scheduler: FrameScheduler;
  /** Lanes processing frames right now (at most config.concurrency). */
  private lanes = 0;
  private engineTurn: Promise<void> = Promise.resolve();
  private stopped = false;
  private wrongModelLogged = false;
  private idleWaiters: Array<() => void> = [];
  private readonly delivery: AlertDelivery;
  private readonly stats = {
    seen: 0,
    processed: 0,
    budgetExceeded: 0,
    dropped: {} as Record<string, number>,
    alerts: {} as Record<string, number>,
  };
  private readonly latency = new LatencyRecorder();
  private readonly alertLatency = new LatencyRecorder();
  private readonly stageLatency = new Map<string, LatencyRecorder>(
    STAGES.map((s) => [s, new LatencyRecorder()]),
  );

  constructor(private readonly ctx: PipelineContext) {
    this.delivery = new AlertDelivery(ctx.publisher, ctx.metrics, ctx.log);
    this.scheduler = new FrameScheduler(ctx.config.budgetMs, (s, reason) => this.drop(s, reason));
  }

  get name(): string {
    return this.ctx.name;
  }

  /**
   * Runs the whole path once on synthetic JPEG and PNG frames before the first real one, so that
   * the first real frame does not pay for libvips' and the codecs' cold start (over 100 ms seen
   * on a 2-core gateway) and blow its budget.
   */
  async warmUp(): Promise<void> {
    const engine = this.ctx.engine();
    if (!engine || !isImageManifest(engine.manifest)) return;
    const m = engine.manifest;
    const input = m.inputs[0]!;
    const blank = sharp({
      create: { width: 640, height: 480, channels: 3, background: { r: 128, g: 128, b: 128 } },
    });
    for (const frame of [await blank.clone().jpeg().toBuffer(), await blank.clone().png().toBuffer()]) {
      const data = normalize(
        await decodeAndResize(frame, m.preprocessing),
        m.preprocessing,
        input.layout === 'NCHW' ? 'NCHW' : 'NHWC',
      );
      await engine.run({ [input.name]: { dtype: 'float32', shape: input.shape, data } });
    }
  }

  /** Takes a frame from a source. Never throws and never waits. */
  offer(sample: FrameSample): void {
    if (this.stopped) return;
    this.stats.seen++;
    if (this.ctx.log.isLevelEnabled('debug'))
      this.ctx.log.debug(
        { sampleId: sample.id, source: sample.source, origin: sample.origin },
        'frame offered',
      );
    this.scheduler.offer(sample);
    if (this.lanes < this.ctx.config.concurrency) void this.lane();
  }

  private drop(
    sample: FrameSample,
    reason:
      | DropReason
      | 'decode_error'
      | 'inference_error'
      | 'store_error'
      | 'shutdown'
      | 'model_unavailable'
      | 'data_quality',
  ): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
    this.ctx.metrics.dropped.inc({ pipeline: this.ctx.name, reason });
    this.ctx.log.debug(
      { pipeline: this.ctx.name, sampleId: sample.id, origin: sample.origin, reason },
      'frame dropped',
    );
    // A frame that could not make its deadline counts against the version serving now.
    if (reason === 'deadline') this.live('dropped', this.ctx.engine()?.manifest.version, true);
  }

  private live(outcome: LiveObservation['outcome'], version: string | undefined, overBudget: boolean): void {
    observeLive(this.ctx.rollout, { pipeline: this.ctx.name, version, outcome, overBudget }, this.ctx.log);
  }

  /**
   * One lane takes frames from the scheduler until none is left. Up to `concurrency` lanes run
   * at once, so that one frame can be decoded (libvips, on libuv's pool) while another is in
   * the engine (its worker thread); the engine itself runs one inference at a time.
   */
  private async lane(): Promise<void> {
    this.lanes++;
    try {
      for (;;) {
        const sample = this.scheduler.next(performance.now());
        if (!sample) break;
        await this.process(sample);
      }
    } finally {
      this.lanes--;
      if (this.lanes === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Runs `fn` when the engine is free: inferences of one pipeline never overlap. */
  private async withEngine<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.engineTurn;
    let release!: () => void;
    this.engineTurn = new Promise<void>((r) => (release = r));
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private async process(sample: FrameSample): Promise<void> {
    const { ctx } = this;
    let engine = ctx.engine();
    if (!engine) {
      this.drop(sample, 'model_unavailable');
      this.live('unavailable', undefined, false);
      return;
    }
    const loaded = engine.manifest;
    if (!isImageManifest(loaded)) {
      // A telemetry model cannot score frames; the daemon refuses such a config, but a model
      // replaced under a running pipeline could still be one.
      this.drop(sample, 'model_unavailable');
      if (!this.wrongModelLogged) {
        this.wrongModelLogged = true;
        ctx.log.error(
          { pipeline: ctx.name, model: loaded.name, version: loaded.version },
          `pipeline ${ctx.name} reads frames but model ${loaded.name}@${loaded.version} is not an image model; its frames are dropped`,
        );
      }
      return;
    }
    const start = performance.now();
    const stages: StageTimings = {
      queue: start - sample.arrivedAt,
      decode: 0,
      preprocess: 0,
      inference: 0,
      postprocess: 0,
      store: 0,
    };
    let m: ImageManifest = loaded;
    let input = m.inputs[0]!;
    let data: Float32Array | undefined;
    let outputs;
    let t = start;
    // Image expectations: a frame out of spec is not scored under skip (a frame has no last
    // good value to hold, so hold, refused by the config, is skip too), scored and flagged under flag.
    const quality = ctx.dataQuality;
    const scoreFlagged = ctx.config.dataQuality?.policy === 'flag';
    let violations: FrameViolation[] | undefined = quality?.beforeDecode(sample);
    if (violations && !scoreFlagged) {
      this.drop(sample, 'data_quality');
      return;
    }
    // Started now, so that a large frame is hashed in slices while libvips decodes it.
    const hashing = payloadSha256(sample.data);
    try {
      const image = await decodeAndResize(sample.data, m.preprocessing);
      let now = performance.now();
      stages.decode = now - t;
      t = now;
      const afterDecode = quality?.afterDecode(sample, image);
      if (afterDecode) {
        if (!scoreFlagged) {
          this.drop(sample, 'data_quality');
          return;
        }
        violations = [...(violations ?? []), ...afterDecode];
      }
      data = normalize(image, m.preprocessing, input.layout === 'NCHW' ? 'NCHW' : 'NHWC');
      now = performance.now();
      stages.preprocess = now - t;
      t = now;
      try {
        outputs = await this.withEngine(() => {
          // Waiting for the other frame's inference counts as queueing, not as inference.
          const turn = performance.now();
          stages.queue += turn - t;
          t = turn;
          // A new version swapped in while this frame was decoded serves it: the old engine is
          // being closed, and the new one takes the same tensor (a swap needs compatible inputs).
          const live = ctx.engine();
          if (live && live !== engine && isImageManifest(live.manifest)) {
            if (!incompatibility(m, live.manifest)) {
              data = adaptInput(m, live.manifest, data!);
              engine = live;
              m = live.manifest;
              input = m.inputs[0]!;
            }
          }
          return engine!.run({ [input.name]: { dtype: 'float32', shape: input.shape, data: data! } });
        });
      } catch (err) {
        throw err instanceof VigilError
          ? err
          : new VigilError('VIGIL_ERR_INFERENCE', errorMessage(err), { cause: err });
      }
      now = performance.now();
      stages.inference = now - t;
      t = now;
    } catch (err) {
      const code = err instanceof VigilError ? err.code : 'VIGIL_ERR_DECODE';
      if (code === 'VIGIL_ERR_DECODE') {
        this.drop(sample, 'decode_error');
        ctx.inputError(sample, 'decode_error');
        ctx.log.warn(
          { pipeline: ctx.name, source: sample.source, origin: sample.origin, sampleId: sample.id, code },
          `frame ${sample.origin} from source ${sample.source} refused: ${errorMessage(err)}`,
        );
      } else {
        this.drop(sample, 'inference_error');
        this.live('error', m.version, false);
        ctx.log.error(
          {
            pipeline: ctx.name,
            sampleId: sample.id,
            model: m.name,
            version: m.version,
            code,
            err: errorMessage(err),
          },
          `inference failed for frame ${sample.origin}: ${errorMessage(err)}`,
        );
      }
      return;
    }

    let cls;
    try {
      cls = classify(outputs, m.postprocessing);
    } catch (err) {
      this.drop(sample, 'inference_error');
      this.live(hasNonFinite(outputs) ? 'nan' : 'error', m.version, false);
      ctx.log.error(
        { pipeline: ctx.name, sampleId: sample.id, err: errorMessage(err) },
        'model output unusable',
      );
      return;
    }
    const sha256 = typeof hashing === 'string' ? hashing : await hashing;
    const threshold = ctx.config.threshold ?? m.postprocessing.threshold;
    const model = { name: m.name, version: m.version, backend: engine.backend, provider: engine.provider };
    const producedAt = Date.now();
    let now = performance.now();
    stages.postprocess = now - t;
    t = now;

    const result: Result = {
      id: uuidv7(),
      sampleId: sample.id,
      pipeline: ctx.name,
      source: sample.source,
      origin: sample.origin,
      receivedAt: sample.receivedAt,
      producedAt,
      model,
      label: cls.label,
      confidence: cls.confidence,
      score: cls.score,
      threshold,
      scores: cls.scores,
      latencyMs: 0,
      stages,
      // The frame is not stored: its hash ties the result to the bytes the camera sent.
      payloadSha256: sha256,
    };
    // Scored under the flag policy although out of spec: the result says so.
    if (violations) result.dataQuality = { flagged: true, violations };
    let alert: Alert | undefined;
    if (cls.score >= threshold) {
      // The alert names the most likely defect class, even when 'ok' is the single top label.
      const defect = Object.entries(cls.scores)
        .filter(([l]) => l !== m.postprocessing.okLabel)
        .sort((a, b) => b[1] - a[1])[0]![0];
      const severity: Severity = ctx.config.severity[defect] ?? 'warning';
      alert = {
        id: uuidv7(),
        timestamp: new Date(producedAt).toISOString(),
        device: ctx.deviceId,
        pipeline: ctx.name,
        source: sample.source,
        sampleId: sample.id,
        origin: sample.origin,
        kind: m.postprocessing.alertKind,
        severity,
        label: defect,
        score: round4(cls.score),
        threshold,
        model,
        latencyMs: 0,
        payloadSha256: result.payloadSha256,
        ...(result.dataQuality ? { dataQuality: result.dataQuality } : {}),
      };
      result.alertId = alert.id;
    }
    // Latency to stored is known only after the write; the stored row carries the time up to
    // the write itself, which differs from the final figure by the commit alone.
    result.latencyMs = round2(performance.now() - sample.arrivedAt);
    try {
      if (alert) alert.latencyMs = result.latencyMs;
      ctx.sink.saveResult(result, alert);
    } catch (err) {
      ctx.onStoreError?.();
      this.drop(sample, 'store_error');
      ctx.log.error(
        { pipeline: ctx.name, sampleId: sample.id, err: errorMessage(err) },
        'result could not be stored',
      );
      return;
    }
    now = performance.now();
    stages.store = now - t;
    const e2e = now - sample.arrivedAt;
    this.live('ok', m.version, e2e > ctx.config.budgetMs);
    this.shadow(m, data!, outputs, cls, threshold, stages.inference);
    this.scheduler.observeService(now - start, now);
    this.stats.processed++;
    ctx.metrics.processed.inc({ pipeline: ctx.name });
    if (ctx.log.isLevelEnabled('debug'))
      ctx.log.debug(
        {
          sampleId: sample.id,
          resultId: result.id,
          alertId: alert?.id,
          label: result.label,
          score: result.score,
          latencyMs: result.latencyMs,
          version: m.version,
        },
        'result stored',
      );
    this.latency.add(e2e);
    ctx.metrics.e2eSeconds.observe({ pipeline: ctx.name }, e2e / 1000);
    for (const s of STAGES) {
      const v = stages[s];
      if (v === undefined || s === 'publish') continue;
      this.stageLatency.get(s)!.add(v);
      ctx.metrics.stageSeconds.observe({ pipeline: ctx.name, stage: s }, v / 1000);
    }
    if (e2e > ctx.config.budgetMs) {
      this.stats.budgetExceeded++;
      ctx.metrics.budgetExceeded.inc({ pipeline: ctx.name });
    }
    if (ctx.config.publishResults) ctx.publisher.publishResult(ctx.name, result);
    ctx.onResult?.(result, alert);
    notifyObservers(
      ctx.observers,
      {
        pipeline: ctx.name,
        kind: 'frame',
        manifest: m,
        input: data!,
        result,
        alert,
        frame: { data: sample.data, contentType: sample.contentType },
      },
      ctx.log,
    );
    if (alert) {
      this.stats.alerts[alert.kind] = (this.stats.alerts[alert.kind] ?? 0) + 1;
      ctx.metrics.alerts.inc({ pipeline: ctx.name, kind: alert.kind });
      this.publish(alert, sample.arrivedAt, result.id);
    }
  }

  /**
   * Hands the frame's tensor to the version in shadow, if any, once this frame's own result is
   * stored: the candidate runs beside the next frames and never delays them.
   */
  private shadow(
    m: ImageManifest,
    data: Float32Array,
    outputs: TensorMap,
    cls: Classification,
    threshold: number,
    inferenceMs: number,
  ): void {
    const runner = this.ctx.rollout?.shadow();
    if (!runner) return;
    const override = this.ctx.config.threshold;
    runner.offer({
      pipeline: this.ctx.name,
      kind: 'image',
      manifest: m,
      data,
      current: { label: cls.label, score: cls.score, alert: cls.score >= threshold, outputs, inferenceMs },
      interpret(out, cm) {
        if (!isImageManifest(cm)) throw new Error(`version ${cm.version} is not an image model`);
        const c = classify(out, cm.postprocessing);
        return {
          label: c.label,
          score: c.score,
          alert: c.score >= (override ?? cm.postprocessing.threshold),
        };
      },
    });
  }

  /** Publishes without holding up the next frame; the store already has the alert. */
  private publish(alert: Alert, arrivedAt: number, resultId: string): void {
    const { ctx } = this;
    const publishStart = performance.now();
    this.delivery.send(
      alert,
      (acked) => {
        this.stageLatency.get('publish')!.add(acked - publishStart);
        ctx.metrics.stageSeconds.observe(
          { pipeline: ctx.name, stage: 'publish' },
          (acked - publishStart) / 1000,
        );
        const total = acked - arrivedAt;
        this.alertLatency.add(total);
        ctx.metrics.alertSeconds.observe({ pipeline: ctx.name }, total / 1000);
        ctx.onAlertPublished?.(alert, total);
      },
      resultId,
    );
  }

  snapshot(): PipelineStats {
    const stagesMs: Record<string, LatencySummary | undefined> = {};
    for (const [s, r] of this.stageLatency) stagesMs[s] = r.summary();
    return {
      seen: this.stats.seen,
      processed: this.stats.processed,
      dropped: { ...this.stats.dropped },
      alerts: { ...this.stats.alerts },
      budgetExceeded: this.stats.budgetExceeded,
      latencyMs: this.latency.summary(),
      alertLatencyMs: this.alertLatency.summary(),
      stagesMs,
    };
  }

  /** Resolves once nothing is pending or processing and every started publish has settled. */
  async idle(): Promise<void> {
    if (this.lanes > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    await this.delivery.settled();
  }

  /** Stops taking frames, finishes the one in progress, and waits (bounded by the caller) for publishes. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.scheduler.drain()) this.drop(s, 'shutdown');
    await this.idle();
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const round4 = (x: number) => Math.round(x * 10000) / 10000;

/** Frames up to this size are hashed at once: a few hundred µs at most (0.15 ms for 256 KiB on the 2-core VM). */
const HASH_AT_ONCE_BYTES = 256 * 1024;
/** Larger ones in slices of this size, yielding to the event loop between them (about 0.6 ms each). */
const HASH_SLICE_BYTES = 1024 * 1024;

/**
 * sha256 (hex) of a frame's bytes, computed once per frame: a frame read by several pipelines is
 * one Buffer, so the hash (or the hashing under way) is kept beside it, weakly: it goes with the
 * frame. OpenSSL hashes about 1.7 GB/s on the 2-core development VM, so a 32 MiB frame takes
 * about 19 ms: hashed at once it would stall every other pipeline, source and HTTP request for
 * that long. WebCrypto's digest runs on the thread pool but first copies its input on the main
 * thread, which stalls nearly as long (measured 16 ms for 32 MiB); slices do not copy.
 */
const frameHashes = new WeakMap<Buffer, string | Promise<string>>();
function payloadSha256(data: Buffer): string | Promise<string> {
  let hash = frameHashes.get(data);
  if (hash === undefined) {
    hash =
      data.length <= HASH_AT_ONCE_BYTES
        ? createHash('sha256').update(data).digest('hex')
        : sha256InSlices(data);
    frameHashes.set(data, hash);
  }
  return hash;
}

/** Never rejects: hashing a Buffer cannot fail, and a frame dropped meanwhile leaves it unawaited. */
async function sha256InSlices(data: Buffer): Promise<string> {
  const hash = createHash('sha256');
  for (let at = 0; at < data.length; at += HASH_SLICE_BYTES) {
    if (at > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    hash.update(data.subarray(at, at + HASH_SLICE_BYTES));
  }
  return hash.digest('hex');
}
