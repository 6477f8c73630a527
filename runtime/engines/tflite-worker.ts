import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import type { TensorSpec } from '../model/manifest.js';
import type { TensorArray, TfliteEngineOptions } from './engine.js';
import { toFloat32, toModelDtype } from './tensor.js';
import type { ModelTensorInfo, RunRequest, WorkerSetup, WorkerToMain } from './worker-client.js';

/**
 * Worker thread that owns one TFLite interpreter (tfjs-tflite-node's TFLiteNodeModelRunner). Its
 * infer() is synchronous native code on the calling thread, which is why it lives here.
 *
 * The runner's constructor (node_modules/tfjs-tflite-node/binding/node_tflite_binding.cc) takes
 * (model: ArrayBuffer, { threads?: number, delegate?: { path, options: [key, value][] } }); it
 * copies the ArrayBuffer, so the buffer must hold exactly the file. getInputs()/getOutputs()
 * return TensorInfo objects with name, dataType ('float32' | 'int8' | 'uint8' ...), shape (a
 * comma-separated string) and data(), a typed array that infer() copies in and out.
 */

interface TfliteTensorInfo {
  readonly name: string;
  readonly dataType: string;
  readonly shape: string;
  data(): TensorArray;
}

interface TfliteRunner {
  getInputs(): TfliteTensorInfo[];
  getOutputs(): TfliteTensorInfo[];
  infer(): boolean;
}

interface RunnerOptions {
  threads: number;
  delegate?: { path: string; options: Array<[string, string]> };
}

type RunnerConstructor = new (model: ArrayBuffer, options: RunnerOptions) => TfliteRunner;

const setup = workerData as WorkerSetup<TfliteEngineOptions>;
const port = parentPort!;
const send = (msg: WorkerToMain, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);

function describe(tensors: TfliteTensorInfo[]): ModelTensorInfo[] {
  return tensors.map((t) => ({
    name: t.name,
    dtype: t.dataType,
    shape: t.shape === '' ? [] : t.shape.split(',').map(Number),
  }));
}

function main(): void {
  const { delegate, threads, xnnpack } = setup.options;
  const notices: string[] = [];
  const runnerOptions: RunnerOptions = { threads };
  let provider = 'cpu';
  if (delegate) {
    // tflite.ts has already opened this library in a throw-away process (probeDelegate).
    runnerOptions.delegate = { path: delegate.library, options: Object.entries(delegate.options) };
    provider = `delegate:${delegate.library.split('/').pop()}`;
  } else if (!xnnpack) {
    // The C library applies TFLite's default XNNPACK CPU delegate by itself and the binding has
    // no switch to turn it off; say so rather than pretend.
    notices.push(
      "tflite.xnnpack is false, but tfjs-tflite-node offers no way to turn off TFLite's built-in XNNPACK CPU delegate; it stays on",
    );
  }

  let runner: TfliteRunner;
  try {
    const require = createRequire(import.meta.url);
    const { TFLiteNodeModelRunner } = require('tfjs-tflite-node') as {
      TFLiteNodeModelRunner: RunnerConstructor;
    };
    const file = readFileSync(setup.modelPath);
    // Buffer#buffer may be a larger pooled ArrayBuffer: hand over exactly the file's bytes.
    const exact = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer;
    runner = new TFLiteNodeModelRunner(exact, runnerOptions);
  } catch (err) {
    const code = delegate ? 'VIGIL_ERR_ENGINE_UNAVAILABLE' : 'VIGIL_ERR_MODEL_LOAD';
    const hint = delegate
      ? ` with delegate ${delegate.library}; check that the NPU runtime is installed and supports this model, or remove tflite.delegate to run on the CPU`
      : '';
    send({
      type: 'failed',
      code,
      message: `cannot load TFLite model ${setup.modelPath}${hint}: ${errorMessage(err)}`,
    });
    return;
  }

  const inputs = runner.getInputs();
  const outputs = runner.getOutputs();
  send({
    type: 'ready',
    provider,
    fallbacks: [],
    notices,
    inputs: describe(inputs),
    outputs: describe(outputs),
  });

  const specs = new Map<string, TensorSpec>([...setup.inputs, ...setup.outputs].map((t) => [t.name, t]));
  port.on('message', (req: RunRequest) => {
    try {
      for (const input of req.inputs) {
        const tensor = inputs.find((t) => t.name === input.name)!;
        tensor.data().set(toModelDtype(specs.get(input.name)!, input.data));
      }
      runner.infer();
      const result = setup.outputs.map((spec) => {
        const data = outputs.find((t) => t.name === spec.name)!.data();
        // data() is the runner's own buffer, reused by the next infer(): copy (dequantizing copies too).
        const values = data instanceof Float32Array ? data.slice() : toFloat32(spec, data);
        return { name: spec.name, data: values };
      });
      send(
        { type: 'result', id: req.id, outputs: result },
        result.map((o) => o.data.buffer as ArrayBuffer),
      );
    } catch (err) {
      send({ type: 'runError', id: req.id, message: errorMessage(err) });
    }
  });
}

main();
