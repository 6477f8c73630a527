import { VigilError } from '../errors.js';
import type { Manifest } from '../model/manifest.js';
import type { Engine, TensorMap } from './engine.js';
import { formatShape, shapeSize } from './tensor.js';
import type { ModelPackage } from '../model/package.js';
import { checkModelIo, type InferenceWorker, type WorkerReady } from './worker-client.js';

/** An Engine whose runtime lives in an inference worker; shared by the ONNX and TFLite engines. */
export class WorkerEngine implements Engine {
  /** Milliseconds the warm-up runs took (0 before warmUp). */
  warmupMs = 0;

  constructor(
    readonly manifest: Manifest,
    readonly backend: 'onnxruntime-node' | 'tflite',
    readonly provider: string,
    private readonly worker: InferenceWorker,
    /** Milliseconds from starting the worker to the model being loaded and checked. */
    readonly loadMs: number,
    readonly requested: readonly string[] = [provider],
    readonly fallbacks: ReadonlyArray<{ provider: string; reason: string }> = [],
  ) {}

  /**
   * The common tail of loading either engine: check the model's real tensors against vigil.json,
   * wrap the worker, warm it up; on any failure the worker is closed before the error goes on.
   */
  static async open(
    pkg: ModelPackage,
    backend: WorkerEngine['backend'],
    worker: InferenceWorker,
    ready: WorkerReady,
    label: string,
    startedAt: number,
    warmupRuns: number,
    requested: readonly string[] = [ready.provider],
  ): Promise<WorkerEngine> {
    try {
      checkModelIo(label, 'input', pkg.manifest.inputs, ready.inputs, true);
      checkModelIo(label, 'output', pkg.manifest.outputs, ready.outputs, true);
      const engine = new WorkerEngine(
        pkg.manifest,
        backend,
        ready.provider,
        worker,
        performance.now() - startedAt,
        requested,
        ready.fallbacks,
      );
      await engine.warmUp(warmupRuns);
      return engine;
    } catch (err) {
      await worker.close();
      throw err;
    }
  }

  /** Set when the worker crashed or exited: the engine is dead and must be reloaded. */
  get failure(): VigilError | undefined {
    return this.worker.failure;
  }

  /** Whether the worker thread has ended (after close() or a crash). */
  get closed(): boolean {
    return this.worker.closed;
  }

  async run(inputs: TensorMap): Promise<TensorMap> {
    const sent = this.manifest.inputs.map((spec) => {
      const t = inputs[spec.name];
      if (!t)
        throw new VigilError(
          'VIGIL_ERR_INFERENCE',
          `input '${spec.name}' is missing (got ${Object.keys(inputs).join(', ') || 'none'})`,
        );
      if (!(t.data instanceof Float32Array)) {
        throw new VigilError(
          'VIGIL_ERR_INFERENCE',
          `input '${spec.name}' must be float32 in model units; the engine quantizes it`,
        );
      }
      if (t.data.length !== shapeSize(spec.shape)) {
        throw new VigilError(
          'VIGIL_ERR_INFERENCE',
          `input '${spec.name}' has ${t.data.length} values, the model takes ${formatShape(spec.shape)} = ${shapeSize(spec.shape)}`,
        );
      }
      // Structured clone copies a view's whole ArrayBuffer: send a view of a larger buffer as its own copy.
      const data = t.data.byteLength === t.data.buffer.byteLength ? t.data : t.data.slice();
      return { name: spec.name, data };
    });
    const outputs = await this.worker.run(sent);
    const result: TensorMap = {};
    for (const spec of this.manifest.outputs) {
      result[spec.name] = { dtype: 'float32', shape: [...spec.shape], data: outputs.get(spec.name)! };
    }
    return result;
  }

  /** Runs inferences on zeros so that the first real frame does not pay for lazy allocations. */
  async warmUp(runs: number): Promise<void> {
    const started = performance.now();
    const zeros: TensorMap = {};
    for (const spec of this.manifest.inputs) {
      zeros[spec.name] = {
        dtype: 'float32',
        shape: [...spec.shape],
        data: new Float32Array(shapeSize(spec.shape)),
      };
    }
    for (let i = 0; i < runs; i++) await this.run(zeros);
    this.warmupMs = performance.now() - started;
  }

  close(): Promise<void> {
    return this.worker.close();
  }
}
