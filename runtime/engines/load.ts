import type { Logger } from '../log.js';
import { loadModelPackage } from '../model/package.js';
import { createOnnxEngine } from './onnx.js';
import { createTfliteEngine } from './tflite.js';
import type { WorkerEngine } from './worker-engine.js';
import type { EngineOptions } from './engine.js';

/**
 * Verifies a model package folder, loads it into the engine its format calls for, warms it up,
 * and says so in one structured log line. The returned engine is ready for frames.
 */
export async function loadEngine(dir: string, options: EngineOptions, log: Logger): Promise<WorkerEngine> {
  const started = performance.now();
  const pkg = await loadModelPackage(dir);
  const verifyMs = performance.now() - started;
  const engine =
    pkg.manifest.format === 'onnx'
      ? await createOnnxEngine(pkg, options, log)
      : await createTfliteEngine(pkg, options, log);
  log.info(
    {
      model: pkg.manifest.name,
      version: pkg.manifest.version,
      dir: pkg.dir,
      backend: engine.backend,
      provider: engine.provider,
      verifyMs: round(verifyMs),
      loadMs: round(engine.loadMs),
      warmupMs: round(engine.warmupMs),
      warmupRuns: options.warmupRuns,
    },
    `model ${pkg.manifest.name}@${pkg.manifest.version} ready on ${engine.backend}/${engine.provider}`,
  );
  return engine;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
