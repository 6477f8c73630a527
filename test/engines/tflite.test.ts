import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineOptions } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { VigilError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/log.js';
import {
  OPTIONS,
  ROOT,
  captureLog,
  cleanupCopies,
  copyPackage,
  editManifest,
  expectedProbs,
  ticksBetweenResults,
} from './support.js';

const TFLITE_INT8 = path.join(ROOT, 'test/fixtures/tiny/tflite-int8');
const TFLITE_SLOW = path.join(ROOT, 'test/fixtures/tiny/tflite-slow');

function image(v: number): { image: { dtype: 'float32'; shape: number[]; data: Float32Array } } {
  return { image: { dtype: 'float32', shape: [1, 8, 8, 3], data: new Float32Array(192).fill(v) } };
}

function withDelegate(library: string): EngineOptions {
  return { ...OPTIONS, tflite: { ...OPTIONS.tflite, delegate: { library, options: {} } } };
}

const engines: WorkerEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  await cleanupCopies();
});

describe('TFLite engine', () => {
  it('quantizes the input, runs the int8 model in a worker and dequantizes the output', async () => {
    const { log, lines } = captureLog();
    const engine = await loadEngine(TFLITE_INT8, OPTIONS, log);
    engines.push(engine);
    expect(engine.backend).toBe('tflite');
    expect(engine.provider).toBe('cpu');
    const input = image(0.5);
    const out = await engine.run(input);
    const [p0, p1] = expectedProbs(0.5);
    // 0.5 / 0.02 = 25 exactly; the output is one int8 code: round(p * 256) - 128.
    expect(out.probs!.data[0]).toBe(Math.round(p0 * 256) / 256);
    expect(out.probs!.data[1]).toBe(Math.round(p1 * 256) / 256);
    expect(out.probs!.dtype).toBe('float32');
    // the caller's input array is still usable (copied to the worker, not transferred away)
    expect(input.image.data[0]).toBe(0.5);
    expect(lines.filter((l) => l.msg.includes('ready on tflite/cpu'))).toHaveLength(1);
  });

  it('says once that XNNPACK cannot be switched off through tfjs-tflite-node', async () => {
    const { log, lines } = captureLog();
    const engine = await loadEngine(TFLITE_INT8, { ...OPTIONS, tflite: { threads: 1, xnnpack: false } }, log);
    engines.push(engine);
    const warns = lines.filter((l) => l.level === 40);
    expect(warns).toHaveLength(1);
    expect(warns[0]!.msg).toMatch(/xnnpack is false/);
  });

  it('refuses a manifest whose input name or shape disagrees with the model file', async () => {
    const dir = await copyPackage(TFLITE_INT8);
    await editManifest(dir, (m) => {
      m.inputs[0].name = 'serving_default_input:0';
    });
    const err = await loadEngine(dir, OPTIONS, silentLogger()).catch((e: unknown) => e as VigilError);
    expect((err as VigilError).code).toBe('VIGIL_ERR_MODEL_IO_MISMATCH');
    expect((err as VigilError).message).toContain(
      "input 'serving_default_input:0': vigil.json names input 'serving_default_input:0', but the model's inputs are 'image'",
    );

    await editManifest(dir, (m) => {
      m.inputs[0].name = 'image';
      m.outputs[0].dtype = 'uint8';
      m.outputs[0].quantization.zeroPoint = 0;
    });
    const err2 = await loadEngine(dir, OPTIONS, silentLogger()).catch((e: unknown) => e as VigilError);
    expect((err2 as VigilError).code).toBe('VIGIL_ERR_MODEL_IO_MISMATCH');
    expect((err2 as VigilError).message).toContain(
      "output 'probs': vigil.json says dtype uint8, but the model says int8",
    );
  });

  it('fails clearly, without falling back to the CPU, when the delegate library is missing', async () => {
    const library = '/opt/npu/lib/libvendor_delegate.so';
    const err = await loadEngine(TFLITE_INT8, withDelegate(library), silentLogger()).catch(
      (e: unknown) => e as VigilError,
    );
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe('VIGIL_ERR_ENGINE_UNAVAILABLE');
    expect((err as VigilError).message).toContain(library);
    expect((err as VigilError).message).toMatch(/runtime that provides this delegate must be installed/);
  });

  it('fails clearly when the delegate library is not a TFLite delegate (which would crash tfjs-tflite-node)', async () => {
    // Any shared library that lacks the external-delegate entry points: here, the TFLite runtime itself.
    const dir = await copyPackage(TFLITE_INT8);
    const library = path.join(path.dirname(dir), 'libnot_a_delegate.so');
    await copyFile(
      path.join(ROOT, 'node_modules/tfjs-tflite-node/cc_deps/linux_amd64/libexternal_delegate_obj.so'),
      library,
    );
    const err = await loadEngine(TFLITE_INT8, withDelegate(library), silentLogger()).catch(
      (e: unknown) => e as VigilError,
    );
    expect((err as VigilError).code).toBe('VIGIL_ERR_ENGINE_UNAVAILABLE');
    expect((err as VigilError).message).toMatch(
      /libnot_a_delegate\.so cannot be used: loading it crashed the test process \(SIGSEGV\)/,
    );
  });

  it('keeps the event loop turning while inferences run in the worker', async () => {
    const engine = await loadEngine(TFLITE_SLOW, OPTIONS, silentLogger());
    engines.push(engine);
    const { total, between } = await ticksBetweenResults([1, 2, 3].map(() => () => engine.run(image(0.5))));
    expect(total).toBeGreaterThan(0);
    expect(between).toBeGreaterThan(0);
  });

  it('a worker that dies rejects the inferences in flight and marks the engine failed', async () => {
    const { log, lines } = captureLog();
    const engine = await loadEngine(TFLITE_SLOW, OPTIONS, log);
    engines.push(engine);
    const pending = engine.run(image(0.5));
    // Simulate a native crash: end the worker thread behind the engine's back.
    const internals = engine as unknown as { worker: { worker: { terminate(): Promise<number> } } };
    await internals.worker.worker.terminate();
    await expect(pending).rejects.toMatchObject({
      code: 'VIGIL_ERR_INFERENCE',
      message: expect.stringMatching(/exited unexpectedly.*must be reloaded/),
    });
    expect(engine.failure?.code).toBe('VIGIL_ERR_INFERENCE');
    expect(engine.closed).toBe(true);
    await expect(engine.run(image(0.5))).rejects.toBe(engine.failure);
    expect(lines.filter((l) => l.level === 50 && /exited unexpectedly/.test(l.msg))).toHaveLength(1);
  });

  it('close() terminates the worker and later runs fail', async () => {
    const engine = await loadEngine(TFLITE_INT8, OPTIONS, silentLogger());
    const pending = engine.run(image(0.5)).then(
      () => 'resolved',
      (e: VigilError) => e.code,
    );
    await engine.close();
    expect(engine.closed).toBe(true);
    // an inference in flight at close either finished first or was rejected; it never hangs
    expect(['resolved', 'VIGIL_ERR_INFERENCE']).toContain(await pending);
    await expect(engine.run(image(0.5))).rejects.toMatchObject({ code: 'VIGIL_ERR_INFERENCE' });
    expect(engine.failure).toBeUndefined();
  });
});
