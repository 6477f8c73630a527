import { afterAll, describe, expect, it } from 'vitest';
import { RolloutPolicy } from '../../runtime/config/registry.js';
import type { Engine, TensorMap } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { acceptanceGate } from '../../runtime/rollout/acceptance-gate.js';
import { metricValue } from '../helpers/daemon.js';
import { OPTIONS } from '../rollout/harness.js';
import { shipped } from './support.js';

// The acceptance gate has a deadline (rollout.acceptanceTimeoutSeconds): the rollout runs it
// while promotes and rollbacks of the model wait. Past it the version is rejected with outcome
// error, and the run stops before its next inference instead of keeping the candidate busy.

const PUMP = shipped('pump-failure-gbt');

/**
 * The shipped pump model in its real engine, each inference held back by `delayMs`: a holdout
 * that takes longer than the deadline, whatever the machine. Counts the inferences started and
 * running.
 */
class SlowEngine implements Engine {
  started = 0;
  running = 0;
  constructor(
    private readonly inner: Engine,
    private readonly delayMs: number,
  ) {}
  get manifest() {
    return this.inner.manifest;
  }
  get backend() {
    return this.inner.backend;
  }
  get provider() {
    return this.inner.provider;
  }
  async run(inputs: TensorMap): Promise<TensorMap> {
    this.started++;
    this.running++;
    try {
      await new Promise((r) => setTimeout(r, this.delayMs));
      return await this.inner.run(inputs);
    } finally {
      this.running--;
    }
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const engines: Engine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

async function slowPump(delayMs: number): Promise<SlowEngine> {
  const engine = new SlowEngine(await loadEngine(PUMP, OPTIONS, silentLogger()), delayMs);
  engines.push(engine);
  return engine;
}

describe('the acceptance deadline', () => {
  it('is 300 s unless configured', () => {
    expect(RolloutPolicy.parse({}).acceptanceTimeoutSeconds).toBe(300);
    expect(RolloutPolicy.safeParse({ acceptanceTimeoutSeconds: 0 }).success).toBe(false);
  });

  it('rejects a version whose tests outlast it, with outcome error, and stops the run', async () => {
    // 480 inferences of 20 ms each at least: nearly 10 s, against a deadline of 0.3 s.
    const engine = await slowPump(20);
    const metrics = new Metrics({ processMetrics: false });
    const verdict = await acceptanceGate({
      model: 'pump-failure',
      version: '1.0.0',
      packageDir: PUMP,
      engine,
      requireAcceptance: false,
      signal: new AbortController().signal,
      timeoutMs: 300,
      metrics,
    });

    if ('cancelled' in verdict || verdict.pass)
      throw new Error(`expected a rejection: ${JSON.stringify(verdict)}`);
    expect(verdict.message).toMatch(
      /^acceptance tests failed: the tests did not finish within 0\.3 s \(models\.pump-failure\.rollout\.acceptanceTimeoutSeconds\) and were stopped after \d+ inferences; make the holdout smaller or its checks fewer, or raise the limit$/,
    );
    expect(verdict.status).toMatchObject({ version: '1.0.0', outcome: 'error' });
    expect(verdict.status.durationMs).toBeGreaterThanOrEqual(300);
    expect(verdict.evidence).toMatchObject({ acceptance: 'error' });
    expect(
      metricValue(await metrics.registry.metrics(), 'vigil_model_acceptance_total', {
        model: 'pump-failure',
        outcome: 'error',
      }),
    ).toBe(1);

    // The run had stopped when the verdict came: nothing in flight, and no inference after it.
    const stoppedAfter = Number(/after (\d+) inferences/.exec(verdict.message)![1]);
    expect(engine.running).toBe(0);
    expect(engine.started).toBe(stoppedAfter);
    expect(engine.started).toBeLessThan(480);
    await new Promise((r) => setTimeout(r, 300));
    expect(engine.started).toBe(stoppedAfter);
  }, 60_000);

  it('lets a run that finishes in time pass', async () => {
    const engine = await slowPump(0);
    const verdict = await acceptanceGate({
      model: 'pump-failure',
      version: '1.0.0',
      packageDir: PUMP,
      engine,
      requireAcceptance: false,
      signal: new AbortController().signal,
      timeoutMs: 60_000,
    });
    expect(verdict).toMatchObject({ pass: true, status: { outcome: 'passed', checks: 8 } });
    expect(engine.started).toBe(480);
  }, 60_000);
});
