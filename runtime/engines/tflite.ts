import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelPackage } from '../model/package.js';
import type { EngineOptions, TfliteEngineOptions } from './engine.js';
import { InferenceWorker, workerScriptUrl } from './worker-client.js';
import { WorkerEngine } from './worker-engine.js';

/**
 * Loads a TFLite model package with tfjs-tflite-node inside a worker thread (its infer() is
 * synchronous native code; see tflite-worker.ts). An external delegate (options.tflite.delegate)
 * is used or the load fails with VIGIL_ERR_ENGINE_UNAVAILABLE: never a silent fall back to the
 * CPU. The model's real inputs and outputs are checked against vigil.json, then it is warmed up.
 */
export async function createTfliteEngine(
  pkg: ModelPackage,
  options: EngineOptions,
  log: Logger,
): Promise<WorkerEngine> {
  const label = `model ${pkg.manifest.name}@${pkg.manifest.version} (tflite)`;
  const started = performance.now();
  if (options.tflite.delegate)
    await probeDelegate(pkg.modelPath, options.tflite.delegate, options.tflite.threads);
  const { worker, ready } = await InferenceWorker.start<TfliteEngineOptions>(
    workerScriptUrl('tflite-worker'),
    {
      modelPath: pkg.modelPath,
      inputs: pkg.manifest.inputs,
      outputs: pkg.manifest.outputs,
      options: options.tflite,
    },
    label,
    log,
  );
  for (const notice of ready.notices) log.warn({ model: pkg.manifest.name }, `${label}: ${notice}`);
  const t = options.tflite;
  const requested = [t.delegate ? `delegate:${t.delegate.library}` : t.xnnpack ? 'xnnpack' : 'cpu'];
  return WorkerEngine.open(pkg, 'tflite', worker, ready, label, started, options.warmupRuns, requested);
}

/**
 * tfjs-tflite-node hands the delegate path to TFLite's external delegate without checking that
 * it loaded: a missing library, one with missing dependencies, or one that is not a TFLite
 * delegate makes the next call dereference a null pointer and kills the whole process
 * (segmentation fault, checked here with libz and with a path that does not exist). So the
 * delegate is first tried in a throw-away Node process that loads the model with it; only when
 * that process succeeds is the delegate used in this one.
 */
async function probeDelegate(
  modelPath: string,
  delegate: NonNullable<TfliteEngineOptions['delegate']>,
  threads: number,
): Promise<void> {
  const unavailable = (why: string): VigilError =>
    new VigilError(
      'VIGIL_ERR_ENGINE_UNAVAILABLE',
      `TFLite delegate library ${delegate.library} cannot be used: ${why}. The NPU/accelerator runtime that provides ` +
        'this delegate must be installed (and support this model); or remove tflite.delegate from the configuration to run on the CPU.',
      { detail: { library: delegate.library } },
    );
  try {
    await access(delegate.library, constants.R_OK);
  } catch (err) {
    throw unavailable(`the file cannot be read (${errorMessage(err)})`);
  }
  const runtime = createRequire(import.meta.url).resolve('tfjs-tflite-node');
  const script = `
    const { TFLiteNodeModelRunner } = require(process.argv[1]);
    const file = require('node:fs').readFileSync(process.argv[2]);
    const model = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
    const r = new TFLiteNodeModelRunner(model, { threads: Number(process.argv[4]), delegate: { path: process.argv[3], options: JSON.parse(process.argv[5]) } });
    r.infer();`;
  const args = [
    '-e',
    script,
    runtime,
    modelPath,
    delegate.library,
    String(threads),
    JSON.stringify(Object.entries(delegate.options)),
  ];
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, args, { timeout: 120_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const how = err.signal ? `loading it crashed the test process (${err.signal})` : `loading it failed`;
      const said = stderr.trim().split('\n').filter(Boolean).slice(-3).join(' | ');
      reject(unavailable(said ? `${how}: ${said}` : how));
    });
  });
}
