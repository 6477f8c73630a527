import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VigilError, errorMessage, type VigilErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { TensorSpec } from '../model/manifest.js';

const DEFAULT_RUN_TIMEOUT_MS = 10_000;

/**
 * The main-thread side of an inference worker. Both native runtimes run inference synchronously
 * on the calling thread (tfjs-tflite-node's infer(), and onnxruntime-node's session.run, which
 * only defers the synchronous native call with setImmediate), so each engine keeps its runtime in
 * a worker_threads Worker and talks to it with the messages below. The event loop stays free
 * for sources, MQTT and HTTP while a frame is being inferred.
 */

/** A tensor as the model file describes it (dims may be symbolic names in ONNX). */
export interface ModelTensorInfo {
  name: string;
  dtype: string;
  shape: Array<number | string>;
}

export interface WorkerReady {
  type: 'ready';
  provider: string;
  inputs: ModelTensorInfo[];
  outputs: ModelTensorInfo[];
  /** Providers tried before the one that loaded, and why each failed. */
  fallbacks: Array<{ provider: string; reason: string }>;
  /** Things the operator asked for that the runtime cannot do, said once at load. */
  notices: string[];
}

export interface WorkerFailed {
  type: 'failed';
  code: VigilErrorCode;
  message: string;
}

export interface RunRequest {
  type: 'run';
  id: number;
  /** float32 in model units; the worker quantizes where the manifest says so. */
  inputs: Array<{ name: string; data: Float32Array }>;
}

export interface RunReply {
  type: 'result';
  id: number;
  outputs: Array<{ name: string; data: Float32Array }>;
}

export interface RunError {
  type: 'runError';
  id: number;
  message: string;
}

export type WorkerToMain = WorkerReady | WorkerFailed | RunReply | RunError;

/** What every inference worker gets as workerData. */
export interface WorkerSetup<O> {
  modelPath: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  options: O;
}

/**
 * Resolves a worker script that sits beside this module. Compiled code runs from
 * dist/runtime/engines/*.js, where the worker is a sibling .js file. Under vitest this module is
 * loaded from its TypeScript source (runtime/engines/*.ts) and a Worker cannot run .ts, so the URL
 * is mapped to the compiled file: <root>/runtime/engines/x.ts -> <root>/dist/runtime/engines/x.js.
 * That is why the tests run after `npx tsc -p tsconfig.json`.
 */
export function workerScriptUrl(name: string, base: string = import.meta.url): URL {
  if (base.endsWith('.ts')) {
    const at = base.lastIndexOf('/runtime/');
    if (at < 0) throw new Error(`cannot locate the compiled worker for ${base}`);
    const compiled = new URL(`${base.slice(0, at)}/dist/runtime/engines/${name}.js`);
    if (!existsSync(compiled)) {
      throw new Error(`${fileURLToPath(compiled)} is missing: compile first with 'npx tsc -p tsconfig.json'`);
    }
    return compiled;
  }
  return new URL(`./${name}.js`, base);
}

interface Pending {
  resolve: (outputs: Map<string, Float32Array>) => void;
  reject: (err: VigilError) => void;
}

export class InferenceWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;
  /** Runs posted to the worker that it has not answered yet (even if their callers gave up). */
  private outstanding = 0;
  /** close() came while the worker was busy: terminate it once it answers. */
  private terminateWhenIdle = false;
  /** Set once the worker died; every later run fails with it. */
  failure: VigilError | undefined;
  /** Whether the worker thread has ended (after close() or a crash). */
  exited = false;

  /** Closed by its owner, or dead: either way no longer usable. */
  get closed(): boolean {
    return this.closing || this.exited;
  }

  private constructor(
    worker: Worker,
    private readonly label: string,
    private readonly log: Logger,
  ) {
    this.worker = worker;
  }

  /** Starts the worker and waits for it to load the model (or to say why it could not). */
  static async start<O>(
    script: URL,
    setup: WorkerSetup<O>,
    label: string,
    log: Logger,
  ): Promise<{ worker: InferenceWorker; ready: WorkerReady }> {
    const w = new Worker(script, { workerData: setup });
    const client = new InferenceWorker(w, label, log);
    const ready = await new Promise<WorkerReady>((resolve, reject) => {
      const onMessage = (msg: WorkerToMain): void => {
        cleanup();
        if (msg.type === 'ready') resolve(msg);
        else if (msg.type === 'failed') reject(new VigilError(msg.code, msg.message));
        else
          reject(
            new VigilError(
              'VIGIL_ERR_MODEL_LOAD',
              `${label}: unexpected first message '${msg.type}' from worker`,
            ),
          );
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(
          new VigilError(
            'VIGIL_ERR_MODEL_LOAD',
            `${label}: inference worker failed while loading ${setup.modelPath}: ${err.message}`,
            {
              cause: err,
            },
          ),
        );
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(
          new VigilError(
            'VIGIL_ERR_MODEL_LOAD',
            `${label}: inference worker exited with code ${code} while loading ${setup.modelPath}`,
          ),
        );
      };
      const cleanup = (): void => {
        w.off('message', onMessage);
        w.off('error', onError);
        w.off('exit', onExit);
      };
      w.on('message', onMessage);
      w.on('error', onError);
      w.on('exit', onExit);
    }).catch(async (err: unknown) => {
      await w.terminate();
      throw err;
    });
    client.listen();
    return { worker: client, ready };
  }

  private listen(): void {
    this.worker.on('message', (msg: WorkerToMain) => {
      if (msg.type !== 'result' && msg.type !== 'runError') return;
      this.outstanding--;
      if (this.terminateWhenIdle && this.outstanding === 0) void this.worker.terminate();
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(new Map(msg.outputs.map((o) => [o.name, o.data])));
      else p.reject(new VigilError('VIGIL_ERR_INFERENCE', `${this.label}: inference failed: ${msg.message}`));
    });
    this.worker.on('error', (err) => this.fail(`inference worker crashed: ${errorMessage(err)}`, err));
    this.worker.on('exit', (code) => {
      this.exited = true;
      if (!this.closing) this.fail(`inference worker exited unexpectedly (code ${code})`);
      else
        this.rejectAll(
          new VigilError(
            'VIGIL_ERR_INFERENCE',
            `${this.label}: engine closed while an inference was pending`,
          ),
        );
    });
  }

  private fail(reason: string, cause?: unknown): void {
    if (this.failure) return;
    this.failure = new VigilError(
      'VIGIL_ERR_INFERENCE',
      `${this.label}: ${reason}; this engine can no longer run inferences and must be reloaded`,
      cause === undefined ? undefined : { cause },
    );
    this.log.error({ err: this.failure, engine: this.label }, this.failure.message);
    this.rejectAll(this.failure);
  }

  private rejectAll(err: VigilError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /**
   * Inputs are copied to the worker by structured clone, so the caller keeps its arrays; the
   * outputs come back in transferred buffers (no copy).
   */
  run(inputs: Array<{ name: string; data: Float32Array }>): Promise<Map<string, Float32Array>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing)
      return Promise.reject(new VigilError('VIGIL_ERR_INFERENCE', `${this.label}: engine is closed`));
    const id = this.nextId++;
    return new Promise<Map<string, Float32Array>>((resolve, reject) => {
      // A hung inference (a stuck NPU driver, a deadlocked delegate) would hold its pipeline
      // for ever; past the limit the engine is declared failed and its worker terminated, so
      // that the daemon's supervision loads a fresh one.
      const timer = setTimeout(() => {
        // The worker is not terminated here: terminating a thread inside native inference
        // aborts the whole process (seen with onnxruntime-node). close() terminates it once it
        // answers; a thread that never does stays parked, which beats losing the daemon.
        this.fail(
          `an inference did not finish within ${this.runTimeoutMs} ms (the worker or its accelerator hangs)`,
        );
      }, this.runTimeoutMs);
      timer.unref();
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const req: RunRequest = { type: 'run', id, inputs };
      this.outstanding++;
      this.worker.postMessage(req);
    });
  }

  /** Longest an inference may take before the engine counts as hung. */
  runTimeoutMs = DEFAULT_RUN_TIMEOUT_MS;

  /**
   * Ends the worker. One still inside an inference is terminated only once it answers, since
   * terminating a thread in native inference code aborts the process.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.exited) return;
    if (this.outstanding > 0) {
      this.terminateWhenIdle = true;
      this.rejectAll(
        new VigilError('VIGIL_ERR_INFERENCE', `${this.label}: engine closed while an inference was pending`),
      );
      return;
    }
    await this.worker.terminate();
    this.exited = true;
  }
}

/** Compares what the model file says about its tensors with the manifest; throws on the first disagreement. */
export function checkModelIo(
  label: string,
  kind: 'input' | 'output',
  manifest: TensorSpec[],
  model: ModelTensorInfo[],
  checkDtype: boolean,
): void {
  const modelNames = model.map((t) => t.name);
  for (const spec of manifest) {
    const actual = model.find((t) => t.name === spec.name);
    if (!actual) {
      throw ioMismatch(
        label,
        `${kind} '${spec.name}'`,
        `vigil.json names ${kind} '${spec.name}'`,
        `the model's ${kind}s are ${list(modelNames)}`,
      );
    }
    if (checkDtype && actual.dtype !== spec.dtype) {
      throw ioMismatch(
        label,
        `${kind} '${spec.name}'`,
        `vigil.json says dtype ${spec.dtype}`,
        `the model says ${actual.dtype}`,
      );
    }
    if (actual.shape.length > 0) {
      // A symbolic dimension (ONNX dim_param such as 'batch') accepts the manifest's number.
      const fits =
        actual.shape.length === spec.shape.length &&
        actual.shape.every((d, i) => typeof d === 'string' || d === spec.shape[i]);
      if (!fits) {
        throw ioMismatch(
          label,
          `${kind} '${spec.name}'`,
          `vigil.json says shape [${spec.shape.join(', ')}]`,
          `the model says [${actual.shape.join(', ')}]`,
        );
      }
    }
  }
  if (kind === 'input') {
    const extra = model.filter((t) => !manifest.some((s) => s.name === t.name));
    if (extra.length > 0) {
      throw ioMismatch(
        label,
        `input '${extra[0]!.name}'`,
        `vigil.json lists inputs ${list(manifest.map((s) => s.name))}`,
        `the model also needs ${list(extra.map((t) => t.name))}`,
      );
    }
  }
}

function list(names: string[]): string {
  return names.map((n) => `'${n}'`).join(', ') || '(none)';
}

function ioMismatch(label: string, tensor: string, manifestSays: string, modelSays: string): VigilError {
  return new VigilError(
    'VIGIL_ERR_MODEL_IO_MISMATCH',
    `${label}: ${tensor}: ${manifestSays}, but ${modelSays}. vigil.json does not describe this model file; fix the manifest or rebuild the package.`,
    { detail: { tensor, manifest: manifestSays, model: modelSays } },
  );
}
