import { describe, expect, it } from 'vitest';
import { runSoak, type SoakResult } from '../../bench/soak.js';

/**
 * The store-and-forward promise under SIGKILL: `vigil run` (its own process, the compiled CLI)
 * reads numbered JSON readings from an input Mosquitto with QoS 1 and a persistent session, and
 * forwards them to a second, upstream Mosquitto; it is SIGKILLed at 24 seeded random moments,
 * while starting too, and started again at once. Every reading the harness published (and the
 * input broker acknowledged) must then reach the upstream receiver exactly once after
 * de-duplication by id: none lost, none stored twice, none invented, in order per asset and in
 * seq order per (store, class), with the backlog empty at the end and a clean SIGTERM exit.
 *
 * The input broker runs with `max_queued_messages 0` and `max_queued_bytes 0` (bench/soak.ts
 * UNBOUNDED_QUEUE): Mosquitto otherwise keeps at most 1000 messages for a disconnected session
 * and drops the rest, a loss that would be the broker's, not Vigil's. bench/soak.ts is the same
 * harness with more kills (npm run soak).
 */

const KILLS = 24;

function explain(r: SoakResult): string {
  return JSON.stringify(
    {
      kills: r.kills,
      killsBeforeReady: r.killsBeforeReady,
      published: r.published,
      verdict: r.verdict,
      receiver: { ...r.receiver, orderViolations: r.receiver.orderViolations.slice(0, 5) },
      settled: r.settled,
      settleMs: r.settleMs,
      finalUpstream: r.finalUpstream,
      finalExit: r.finalExit,
      daemonErrors: r.daemonErrors.slice(0, 10),
    },
    null,
    2,
  );
}

describe('store and forward through SIGKILLs (vigil run, two Mosquitto brokers)', () => {
  it(`delivers every published reading exactly once after de-dup, in order, through ${KILLS} SIGKILLs`, async () => {
    const r = await runSoak({
      kills: KILLS,
      durationSeconds: 55,
      rate: 40,
      assets: 4,
      seed: 20260505,
      minGapMs: 400,
      synchronous: 'full',
      settleTimeoutMs: 20_000,
    });
    const why = explain(r);
    console.log(
      `store-forward crash: ${r.kills} SIGKILLs (${r.killsBeforeReady} while starting), ` +
        `${r.published.readings} readings published, ${r.verdict.delivered} delivered ` +
        `(${r.receiver.duplicates} resent items de-duplicated), restart p50 ${r.restartMs.p50} ms, ` +
        `drained ${r.settleMs} ms after the last publish`,
    );
    expect(r.kills, why).toBeGreaterThanOrEqual(20);
    expect(r.published.failures, why).toBe(0);
    expect(r.published.readings, why).toBeGreaterThan(1000);
    expect(r.settled, why).toBe(true);
    expect(r.verdict.lost, why).toBe(0);
    expect(r.verdict.duplicatesAfterDedup, why).toBe(0);
    expect(r.verdict.extra, why).toBe(0);
    expect(r.verdict.delivered, why).toBe(r.published.readings);
    expect(r.verdict.orderViolations, why).toEqual([]);
    expect(r.receiver.orderViolations, why).toEqual([]);
    expect(r.receiver.gaps, why).toEqual([]);
    expect(r.receiver.malformed, why).toEqual([]);
    expect(r.receiver.perClass.readings, why).toBe(r.published.readings);
    expect(r.finalBacklogMetric, why).toBe(0);
    expect(r.finalExit.code, why).toBe(0);
  }, 120_000);
});
