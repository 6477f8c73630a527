import { afterEach, describe, expect, it } from 'vitest';
import type { TensorMap } from '../../runtime/engines/engine.js';
import { silentLogger } from '../../runtime/log.js';
import { CandidateError, ModelHost, type HostedEngine } from '../../runtime/model/host.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { CURRENT, FIXTURE, OPTIONS } from './harness.js';

// ModelHost's candidate and swap on real engines: the shipped int8 defect model and the rollout
// fixtures, each in its own worker thread.

const hosts: ModelHost[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
});

async function host(dir = CURRENT): Promise<{ host: ModelHost; metrics: Metrics }> {
  const metrics = new Metrics({ processMetrics: false });
  const h = new ModelHost('defect', dir, OPTIONS, metrics, silentLogger());
  hosts.push(h);
  expect(await h.load()).toBe(true);
  return { host: h, metrics };
}

const zeros = (): TensorMap => ({
  input: { dtype: 'float32', shape: [1, 128, 128, 1], data: new Float32Array(128 * 128) },
});

describe('ModelHost', () => {
  it('loads a candidate beside the current engine and shows both in health()', async () => {
    const { host: h } = await host();
    const current = h.current();
    const cand = await h.loadCandidate(FIXTURE('good'), '1.1.0');
    expect(h.current()).toBe(current);
    expect(cand.manifest.version).toBe('1.1.0');
    expect(h.candidate()).toMatchObject({ packageDir: FIXTURE('good'), label: '1.1.0' });
    expect(h.health()).toMatchObject({
      version: '1.0.0',
      package: CURRENT,
      ready: true,
      candidate: { version: '1.1.0', package: FIXTURE('good'), backend: 'onnxruntime-node', provider: 'cpu' },
    });
    // The candidate runs as any engine does.
    const out = await cand.run(zeros());
    expect(out.probs!.data).toHaveLength(4);
    await h.dropCandidate();
    expect(h.candidate()).toBeUndefined();
    expect((cand as HostedEngine).inner.closed).toBe(true);
    expect(h.health().candidate).toBeUndefined();
  });

  it('refuses a version that does not load or that the pipelines cannot use, with a typed reason', async () => {
    const { host: h } = await host();
    const broken = await h.loadCandidate(FIXTURE('broken'), '1.4.0').catch((e: unknown) => e);
    expect(broken).toBeInstanceOf(CandidateError);
    expect(broken).toMatchObject({ reason: 'load_failed', code: 'VIGIL_ERR_MODEL_LOAD' });
    const other = await h.loadCandidate(FIXTURE('incompatible'), '1.6.0').catch((e: unknown) => e);
    expect(other).toBeInstanceOf(CandidateError);
    expect(other).toMatchObject({ reason: 'incompatible', code: 'VIGIL_ERR_MODEL_IO_MISMATCH' });
    expect((other as Error).message).toMatch(/labels are \[ok, defect\]/);
    expect(h.candidate()).toBeUndefined();
    expect(h.current()!.manifest.version).toBe('1.0.0');
  });

  it('swaps atomically and closes the old engine only after the inference running on it', async () => {
    // The slow fixture as the current version, so that an inference is surely running at the swap.
    const { host: h, metrics } = await host(FIXTURE('slow'));
    const old = h.current() as HostedEngine;
    await h.loadCandidate(FIXTURE('good'), '1.1.0');
    const running = old.run(zeros());
    const swapped = h.promoteCandidate();
    // The next engine() call already returns the new version...
    expect(h.current()!.manifest.version).toBe('1.1.0');
    expect(h.packageDir).toBe(FIXTURE('good'));
    // ...while the old one finishes what it was doing, and only then closes.
    expect(old.inner.closed).toBe(false);
    const out = await running;
    expect(out.probs!.data).toHaveLength(4);
    await swapped;
    expect(old.inner.closed).toBe(true);
    expect(h.health()).toMatchObject({ version: '1.1.0', ready: true });
    const info = (await metrics.modelInfo.get()).values.map((v) => v.labels.version);
    expect(info).toEqual(['1.1.0']);

    // Rolling back loads the earlier version and swaps it in the same way.
    const promoted = h.current() as HostedEngine;
    await h.rollbackTo(FIXTURE('slow'));
    expect(h.current()!.manifest.version).toBe('1.3.0');
    expect(promoted.inner.closed).toBe(true);
    const failed = await h.rollbackTo(FIXTURE('broken')).catch((e: unknown) => e);
    expect(failed).toMatchObject({ reason: 'load_failed' });
    expect(h.current()!.manifest.version).toBe('1.3.0');
  });
});
