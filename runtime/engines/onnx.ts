import type { Logger } from '../log.js';
import type { ModelPackage } from '../model/package.js';
import type { EngineOptions, OnnxEngineOptions } from './engine.js';
import { WorkerEngine } from './worker-engine.js';
import { InferenceWorker, workerScriptUrl } from './worker-client.js';

/**
 * Loads an ONNX model package into onnxruntime-node, inside a worker thread (see onnx-worker.ts
 * for why), with the first execution provider of options.onnx.executionProviders that loads.
 * A provider that was asked for but could not be used is said in one warn line, and the one in
 * use is engine.provider. The model's real inputs and outputs (names, dtypes, shapes) are
 * checked against vigil.json, then the engine is warmed up.
 */
export async function createOnnxEngine(
  pkg: ModelPackage,
  options: EngineOptions,
  log: Logger,
): Promise<WorkerEngine> {
  const label = `model ${pkg.manifest.name}@${pkg.manifest.version} (onnx)`;
  const started = performance.now();
  const { worker, ready } = await InferenceWorker.start<OnnxEngineOptions>(
    workerScriptUrl('onnx-worker'),
    {
      modelPath: pkg.modelPath,
      inputs: pkg.manifest.inputs,
      outputs: pkg.manifest.outputs,
      options: options.onnx,
    },
    label,
    log,
  );
  if (ready.fallbacks.length > 0) {
    const asked = options.onnx.executionProviders[0];
    log.warn(
      {
        model: pkg.manifest.name,
        requested: options.onnx.executionProviders,
        provider: ready.provider,
        fallbacks: ready.fallbacks,
      },
      `${label}: execution provider '${asked}' is not available (${ready.fallbacks
        .map((f) => `${f.provider}: ${f.reason}`)
        .join('; ')}); using '${ready.provider}' instead`,
    );
  }
  return WorkerEngine.open(
    pkg,
    'onnxruntime-node',
    worker,
    ready,
    label,
    started,
    options.warmupRuns,
    options.onnx.executionProviders,
  );
}
