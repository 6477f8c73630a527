import path from 'node:path';
import { RolloutPolicy } from '../../runtime/config/registry.js';
import { PipelineConfig } from '../../runtime/config/schema.js';
import type { EngineOptions } from '../../runtime/engines/engine.js';
import { silentLogger } from '../../runtime/log.js';
import { ModelHost } from '../../runtime/model/host.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { Pipeline, type AlertPublisher, type ResultSink } from '../../runtime/pipeline/pipeline.js';
import type { Result } from '../../runtime/pipeline/result.js';
import type { FrameSample } from '../../runtime/pipeline/sample.js';
import { RolloutController, type RolloutControllerOptions } from '../../runtime/rollout/controller.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { DEFECT_CLASSES } from '../../simulator/camera/types.js';

/**
 * A frame pipeline with everything that decides a rollout real: the shipped int8 defect model
 * and the fixture versions in their engines' worker threads, the simulator's rendered frames,
 * the pipeline and the controller. Only the store and the broker are stand-ins (results are
 * kept in memory): no protocol is under test here.
 */

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CURRENT = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
export const FIXTURE = (name: string) => path.join(ROOT, 'test/fixtures/rollout', name);

export const OPTIONS: EngineOptions = {
  onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
  tflite: { threads: 1, xnnpack: true },
  warmupRuns: 1,
};

let frames: Buffer[] | undefined;

/** A few frames of every class, rendered once per test file. */
export async function testFrames(): Promise<Buffer[]> {
  frames ??= await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      renderFrame({
        width: 640,
        height: 480,
        label: DEFECT_CLASSES[i % DEFECT_CLASSES.length]!,
        seed: 7000 + i,
        format: 'jpeg',
      }).then((f) => f.data),
    ),
  );
  return frames;
}

export interface FrameRig {
  host: ModelHost;
  pipeline: Pipeline;
  controller: RolloutController;
  results: Result[];
  events: RolloutEvent[];
  /** Frames handed to the pipeline so far. */
  offered(): number;
  /** Offers one frame now, from camera `source`. */
  offer(source?: string): void;
  /** Offers one frame every `intervalMs` until stopFeeding(). */
  feed(intervalMs?: number): void;
  stopFeeding(): Promise<void>;
  close(): Promise<void>;
}

export async function frameRig(
  policy: Partial<RolloutPolicy> = {},
  budgetMs = 1000,
  current = CURRENT,
  controllerOptions: Pick<RolloutControllerOptions, 'history' | 'historySize' | 'active'> = {},
): Promise<FrameRig> {
  const data = await testFrames();
  const metrics = new Metrics({ processMetrics: false });
  const log = silentLogger();
  const host = new ModelHost('defect', current, OPTIONS, metrics, log);
  if (!(await host.load())) throw new Error('the shipped defect model did not load');
  const results: Result[] = [];
  const events: RolloutEvent[] = [];
  const sink: ResultSink = { saveResult: (r) => void results.push(r) };
  const publisher: AlertPublisher = {
    publishAlert: async () => ({ ackMs: 0 }),
    publishResult() {},
  };
  const pipeline = new Pipeline({
    name: 'inspection',
    config: PipelineConfig.parse({ sources: ['cam'], model: 'defect', budgetMs }),
    deviceId: 'gw-rollout',
    engine: () => host.current(),
    sink,
    publisher,
    metrics,
    inputError: () => undefined,
    log,
    rollout: host,
  });
  await pipeline.warmUp();
  const controller = new RolloutController({
    model: 'defect',
    deviceId: 'gw-rollout',
    host,
    policy: RolloutPolicy.parse(policy),
    budgetMs,
    log,
    onEvent: (e) => events.push(e),
    ...controllerOptions,
  });
  let n = 0;
  let timer: NodeJS.Timeout | undefined;
  const offer = (source = 'cam') => {
    n++;
    const sample: FrameSample = {
      kind: 'frame',
      id: `f${n}`,
      source,
      receivedAt: Date.now(),
      arrivedAt: performance.now(),
      data: data[n % data.length]!,
      origin: `frame-${n}.jpg`,
    };
    pipeline.offer(sample);
  };
  const rig: FrameRig = {
    host,
    pipeline,
    controller,
    results,
    events,
    offered: () => n,
    offer,
    feed(intervalMs = 50) {
      if (timer) return;
      timer = setInterval(() => offer(), intervalMs);
    },
    async stopFeeding() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await pipeline.idle();
    },
    async close() {
      await rig.stopFeeding();
      await controller.close();
      await pipeline.stop();
      await host.close();
    },
  };
  return rig;
}

/** Polls until `check` returns something other than undefined. */
export async function until<T>(what: string, check: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
