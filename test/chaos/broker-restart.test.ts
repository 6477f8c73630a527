import { describe, expect, it } from 'vitest';
import { DEFAULT_DRILL, runDrill, type DrillReport } from '../../bench/chaos/drill.js';
import { formatDrill } from '../../bench/chaos/report.js';
import { brokerRestart } from '../../bench/chaos/scenarios/broker-restart.js';

/**
 * The short chaos drill of CI: the real drill of `npm run chaos -- --scenario broker-restart`
 * (bench/chaos/), with a shorter fault. `vigil run` (the built CLI, its own process) takes
 * camera frames over HTTP and MQTT telemetry from a real Mosquitto while that Mosquitto is
 * stopped and restarted with its persistence; the alerts the daemon stores meanwhile wait in its
 * outbox. Upstream forwarding to a second Mosquitto is the witness of what was stored.
 *
 * The broker gets SIGTERM, on which Mosquitto saves its persistence before it exits: every
 * telemetry message it acknowledged to the device must then reach the gateway, so a reading lost
 * between the broker and the daemon's store fails the test (with SIGKILL, which `npm run chaos`
 * uses by default, Mosquitto may lose what it acknowledged in its last second, and such a loss
 * could not be told apart from the gateway's).
 *
 * Asserted: nothing the gateway accepted was lost (every accepted frame has a stored result or a
 * policy drop, every accepted reading is stored, every reading the broker acknowledged to the
 * device was received and stored, found by count and by key, every stored alert reached the
 * upstream broker and, at least once, the plant's alert consumer, the outbox is empty), the
 * outage really had alerts waiting, and recovery happened. Recovery times are measured and
 * printed, never held against a wall-clock limit.
 */

describe('chaos drill in CI: plant broker restart under load', () => {
  it('loses nothing accepted or acknowledged, delivers the alerts stored during the outage, and recovers', async () => {
    const lines: string[] = [];
    let report: DrillReport;
    try {
      report = await runDrill(brokerRestart('SIGTERM'), {
        ...DEFAULT_DRILL,
        durationS: 4,
        warmupS: 2,
        afterS: 2,
        fps: 8,
        telemetryRate: 30,
        settleS: 30,
        say: (l) => lines.push(l),
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${lines.join('\n')}`, { cause: err });
    }
    console.log(formatDrill(report));
    const context = `${report.failures.join('\n')}\n${JSON.stringify(report.ledger, null, 1)}`;

    // Nothing accepted was lost.
    const f = report.ledger.frames;
    expect(f.acceptedByDaemon, context).toBeGreaterThan(0);
    expect(f.lost, context).toBe(0);
    expect(f.lostAfterAccept, context).toEqual({});
    expect(f.unaccounted, context).toBe(0);
    expect(f.stored + Object.values(f.droppedByPolicy).reduce((a, b) => a + b, 0)).toBe(f.acceptedByDaemon);
    expect(f.delivered).toBe(f.stored);
    const line = report.ledger.readings.find((r) => r.source === 'line')!;
    expect(line.accepted, context).toBeGreaterThan(0);
    expect(line.lost, context).toBe(0);
    expect(line.lostAfterAccept, context).toEqual({});
    expect(line.delivered).toBe(line.stored);
    // The telemetry the broker acknowledged all arrived: none was lost between the device and the store.
    expect(line.brokerLossAllowed, context).toBeUndefined();
    expect(line.sent, context).toBeGreaterThan(0);
    expect(line.notReceived, context).toBe(0);
    expect(line.ackedNotStored, context).toBe(0);
    const a = report.ledger.alerts;
    expect(a.stored, context).toBeGreaterThan(0);
    expect(a.lost, context).toBe(0);
    expect(a.deliveredUpstream).toBe(a.stored);
    expect(a.deliveredLocal, context).toBe(a.stored);
    expect(a.outboxLeft).toBe(0);
    expect(report.ledger.upstream).toMatchObject({ gaps: 0, orderViolations: 0, malformed: 0 });

    // The outage really held alerts back, and they were delivered after the restart.
    const fault = report.fault as {
      alertsStoredDuringOutage: number;
      alertsDeliveredAfterRestart: number;
      outboxAtRestart: number;
    };
    expect(fault.alertsStoredDuringOutage, context).toBeGreaterThan(0);
    expect(fault.outboxAtRestart).toBeGreaterThan(0);
    expect(fault.alertsDeliveredAfterRestart).toBe(fault.alertsStoredDuringOutage);

    // Recovery happened (measured, not held against a limit).
    for (const k of ['reconnect', 'sourceUp', 'alertsDrained'] as const) {
      expect(report.recovery[k], `${k}: ${context}`).not.toBeNull();
      expect(report.recovery[k]!).toBeGreaterThanOrEqual(0);
    }
    expect(report.settled).toBe(true);
    expect(report.daemon.aliveAtEnd).toBe(true);
    expect(report.daemon.exit?.code).toBe(0);
    expect(report.failures, context).toEqual([]);
  }, 90_000);
});
