import ort from 'onnxruntime-node';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import { createOnnxEngine } from '../../runtime/engines/onnx.js';
import { VigilError } from '../../runtime/errors.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { silentLogger } from '../../runtime/log.js';
import {
  OPTIONS,
  ROOT,
  TINY_FP32,
  TINY_INT8,
  captureLog,
  cleanupCopies,
  copyPackage,
  editManifest,
  expectedProbs,
  ticksBetweenResults,
  type ManifestJson,
} from './support.js';

const TINY_SLOW = path.join(ROOT, 'test/fixtures/tiny/slow');

function image(v: number): { image: { dtype: 'float32'; shape: number[]; data: Float32Array } } {
  return { image: { dtype: 'float32', shape: [1, 8, 8, 3], data: new Float32Array(192).fill(v) } };
}

const engines: Engine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  await cleanupCopies();
});

describe('ONNX engine', () => {
  it('runs a float32 model and returns float32 outputs', async () => {
    const { log, lines } = captureLog();
    const engine = await loadEngine(TINY_FP32, OPTIONS, log);
    engines.push(engine);
    expect(engine.backend).toBe('onnxruntime-node');
    expect(engine.provider).toBe('cpu');
    for (const v of [0, 0.5, -1]) {
      const out = await engine.run(image(v));
      expect(out.probs!.dtype).toBe('float32');
      expect(out.probs!.shape).toEqual([1, 2]);
      const [p0, p1] = expectedProbs(v);
      expect(out.probs!.data[0]).toBeCloseTo(p0, 6);
      expect(out.probs!.data[1]).toBeCloseTo(p1, 6);
    }
    const ready = lines.filter((l) => l.msg.includes('ready on'));
    expect(ready).toHaveLength(1);
    expect(ready[0]).toMatchObject({
      model: 'tiny-fp32',
      version: '1',
      backend: 'onnxruntime-node',
      provider: 'cpu',
      warmupRuns: 1,
    });
    expect(typeof ready[0]!.loadMs).toBe('number');
    expect(typeof ready[0]!.warmupMs).toBe('number');
  });

  it('quantizes an int8 input and dequantizes an int8 output with the manifest parameters', async () => {
    const engine = await loadEngine(TINY_INT8, OPTIONS, silentLogger());
    engines.push(engine);
    // 0.5 / 0.02 = 25 exactly, so the only error left is the output's quantization step (1/256).
    const out = await engine.run(image(0.5));
    const [p0, p1] = expectedProbs(0.5);
    expect(Math.abs(out.probs!.data[0]! - p0)).toBeLessThanOrEqual(1 / 512 + 1e-7);
    expect(Math.abs(out.probs!.data[1]! - p1)).toBeLessThanOrEqual(1 / 512 + 1e-7);
    // exact codes: round(p * 256) - 128, dequantized
    expect(out.probs!.data[0]).toBe((Math.round(p0 * 256) - 128 + 128) / 256);
    // inputs beyond the int8 range are clamped, not wrapped: 100 -> 127 * 0.02 = 2.54
    const clamped = await engine.run(image(100));
    const [c0] = expectedProbs(2.54);
    expect(Math.abs(clamped.probs!.data[0]! - c0)).toBeLessThanOrEqual(1 / 512 + 1e-7);
  });

  it('falls back from an unavailable execution provider to cpu, with one warn line saying so', async () => {
    const { log, lines } = captureLog();
    const pkg = await loadModelPackage(TINY_FP32);
    const engine = await createOnnxEngine(
      pkg,
      { ...OPTIONS, onnx: { executionProviders: ['cuda', 'cpu'], intraOpThreads: 1 } },
      log,
    );
    engines.push(engine);
    expect(engine.provider).toBe('cpu');
    const warns = lines.filter((l) => l.level === 40);
    expect(warns).toHaveLength(1);
    expect(warns[0]!.msg).toMatch(
      /execution provider 'cuda' is not available \(cuda: .+\); using 'cpu' instead/,
    );
    expect(warns[0]).toMatchObject({ requested: ['cuda', 'cpu'], provider: 'cpu' });
    // What /readyz and the status page show: asked, in use, and why the first one was skipped.
    expect(engine.requested).toEqual(['cuda', 'cpu']);
    expect(engine.fallbacks).toHaveLength(1);
    expect(engine.fallbacks[0]).toMatchObject({ provider: 'cuda', reason: expect.stringMatching(/\S/) });
    expect((await engine.run(image(0.5))).probs!.data[0]).toBeCloseTo(expectedProbs(0.5)[0], 6);
  });

  it('says which providers failed when none can load the model', async () => {
    const pkg = await loadModelPackage(TINY_FP32);
    const err = await createOnnxEngine(
      pkg,
      { ...OPTIONS, onnx: { executionProviders: ['tpu-nonexistent'], intraOpThreads: 1 } },
      silentLogger(),
    ).catch((e: unknown) => e as VigilError);
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe('VIGIL_ERR_MODEL_LOAD');
    expect((err as VigilError).message).toContain(
      'tpu-nonexistent: not supported by this onnxruntime-node build',
    );
  });

  it.each([
    [
      'input name',
      (m: ManifestJson) => (m.inputs[0].name = 'pixels'),
      /input 'pixels': vigil.json names input 'pixels', but the model's inputs are 'image'/,
    ],
    [
      'input shape',
      (m: ManifestJson) => ((m.inputs[0].shape = [1, 3, 8, 8]), (m.inputs[0].layout = 'NCHW')),
      /input 'image': vigil.json says shape \[1, 3, 8, 8\], but the model says \[1, 8, 8, 3\]/,
    ],
    [
      'input dtype',
      (m: ManifestJson) => (
        (m.inputs[0].dtype = 'int8'),
        (m.inputs[0].quantization = { scale: 0.1, zeroPoint: 0 })
      ),
      /input 'image': vigil.json says dtype int8, but the model says float32/,
    ],
    [
      'output name',
      (m: ManifestJson) => ((m.outputs[0].name = 'scores'), (m.postprocessing.output = 'scores')),
      /output 'scores': vigil.json names output 'scores', but the model's outputs are 'probs'/,
    ],
  ])('refuses a manifest whose %s disagrees with the model file', async (_what, edit, message) => {
    const dir = await copyPackage(TINY_FP32);
    await editManifest(dir, edit);
    const err = await loadEngine(dir, OPTIONS, silentLogger()).catch((e: unknown) => e as VigilError);
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe('VIGIL_ERR_MODEL_IO_MISMATCH');
    expect((err as VigilError).message).toMatch(message);
  });

  it('refuses inputs of the wrong size, and runs nothing once closed', async () => {
    const engine = await loadEngine(TINY_FP32, OPTIONS, silentLogger());
    await expect(
      engine.run({ image: { dtype: 'float32', shape: [1, 2], data: new Float32Array(2) } }),
    ).rejects.toThrow(/has 2 values, the model takes \[1, 8, 8, 3\] = 192/);
    await engine.close();
    expect(engine.closed).toBe(true);
    await expect(engine.run(image(0))).rejects.toMatchObject({ code: 'VIGIL_ERR_INFERENCE' });
  });
});

describe('ONNX inference and the event loop', () => {
  it("onnxruntime-node's own session.run blocks the event loop (why the engine uses a worker)", async () => {
    const session = await ort.InferenceSession.create(path.join(TINY_SLOW, 'model.onnx'), {
      intraOpNumThreads: 1,
    });
    const feeds = { image: new ort.Tensor('float32', new Float32Array(192), [1, 8, 8, 3]) };
    const { between } = await ticksBetweenResults([1, 2, 3].map(() => () => session.run(feeds)));
    expect(between).toBe(0);
    await session.release();
  });

  it('the engine keeps the event loop turning while inferences run', async () => {
    const engine = await loadEngine(TINY_SLOW, OPTIONS, silentLogger());
    engines.push(engine);
    const { total, between } = await ticksBetweenResults([1, 2, 3].map(() => () => engine.run(image(0.5))));
    expect(total).toBeGreaterThan(0);
    expect(between).toBeGreaterThan(0);
  });
});

describe('a hung inference', () => {
  it('fails the engine and terminates its worker, so that the daemon reloads it', async () => {
    const engine = await loadEngine(TINY_SLOW, OPTIONS, silentLogger());
    engines.push(engine);
    // The slow model takes far longer than 1 ms per run: it stands in for a hung accelerator.
    (engine as unknown as { worker: { runTimeoutMs: number } }).worker.runTimeoutMs = 1;
    await expect(engine.run(image(0.5))).rejects.toThrow(/did not finish within 1 ms/);
    expect(engine.failure?.code).toBe('VIGIL_ERR_INFERENCE');
    await expect(engine.run(image(0.5))).rejects.toThrow(/must be reloaded/);
  });
});
