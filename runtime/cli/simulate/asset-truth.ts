import type { InjectedFault } from '../../../simulator/machines/faults.js';
import type { SimMachine } from '../../../simulator/machines/types.js';
import type { Alert } from '../../pipeline/result.js';

/**
 * Scores the maintenance and anomaly alerts of `vigil simulate` against what the simulator knows:
 * when each machine really failed, and when faults were injected. Failures are observed by
 * polling each machine's truth (a machine that goes `failed`), alerts by the pipelines' hook.
 */

export interface FailureTruth {
  asset: string;
  /** Wall-clock ms at which the machine failed. */
  at: number;
  mode: string | null;
  /** Seconds between the first failure_risk alert of this run and the failure; null: missed. */
  leadSeconds: number | null;
}

export interface AssetTruthReport {
  failures: FailureTruth[];
  /** Failures with no failure_risk alert raised during the run that ended in them. */
  missedFailures: number;
  /** failure_risk alerts raised in a run that did not fail before the simulation ended, or long before it. */
  falseAlarms: number;
  /** failure_risk alerts raised while it was still unknown (the run had not failed when the simulation ended). */
  openAlerts: number;
  anomaly: {
    /** Injected value faults with an anomaly alert raised on that asset during the fault or within `graceSeconds` after its start. */
    faultsDetected: number;
    faultsInjected: number;
    /** Seconds from a fault's start to the first anomaly alert on its asset, per detected fault. */
    delaysSeconds: number[];
    /** Anomaly alerts raised on an asset with no fault active then (or within the grace period). */
    alertsWithoutFault: number;
  };
}

export class AssetTruthRecorder {
  private readonly failures: Array<{ asset: string; at: number; mode: string | null }> = [];
  private readonly raised: Array<{ asset: string; kind: string; at: number }> = [];
  private readonly lastState = new Map<string, string>();
  private readonly runStart = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly machines: readonly SimMachine[]) {
    const now = Date.now();
    for (const m of machines) this.runStart.set(m.asset, now);
  }

  /** Polls the machines' truth every `everyMs` until stop(). */
  start(everyMs = 200): void {
    this.poll();
    this.timer = setInterval(() => this.poll(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.poll();
  }

  /** Hook for the pipelines: every raised maintenance or anomaly alert with its asset. */
  onAlert(alert: Alert): void {
    if (!alert.asset || alert.details?.state === 'cleared') return;
    this.raised.push({ asset: alert.asset, kind: alert.kind, at: Date.parse(alert.timestamp) });
  }

  private poll(): void {
    const now = Date.now();
    for (const m of this.machines) {
      const t = m.truth();
      const prev = this.lastState.get(m.asset);
      if (t.state === 'failed' && prev !== 'failed') {
        this.failures.push({ asset: m.asset, at: t.failureAtWallMs ?? now, mode: t.failureMode });
      }
      this.lastState.set(m.asset, t.state);
    }
  }

  report(faults: readonly InjectedFault[], graceSeconds = 30): AssetTruthReport {
    const risk = this.raised.filter((a) => a.kind === 'failure_risk');
    const used = new Set<number>();
    const failures: FailureTruth[] = this.failures.map((f) => {
      // The run that ended in this failure began after the asset's previous failure.
      const previous = this.failures.filter((g) => g.asset === f.asset && g.at < f.at).map((g) => g.at);
      const runFrom = previous.length ? Math.max(...previous) : (this.runStart.get(f.asset) ?? 0);
      const first = risk
        .map((a, i) => ({ a, i }))
        .filter(({ a }) => a.asset === f.asset && a.at > runFrom && a.at <= f.at)
        .sort((x, y) => x.a.at - y.a.at);
      for (const { i } of first) used.add(i);
      return {
        asset: f.asset,
        at: f.at,
        mode: f.mode,
        leadSeconds: first.length ? Math.round((f.at - first[0]!.a.at) / 100) / 10 : null,
      };
    });
    const lastFailure = new Map<string, number>();
    for (const f of this.failures) lastFailure.set(f.asset, Math.max(lastFailure.get(f.asset) ?? 0, f.at));
    let falseAlarms = 0;
    let openAlerts = 0;
    risk.forEach((a, i) => {
      if (used.has(i)) return;
      // After the asset's last failure, a raised alert may still be right: the run is not over.
      if (a.at > (lastFailure.get(a.asset) ?? 0)) openAlerts += 1;
      else falseAlarms += 1;
    });

    const anomalies = this.raised.filter((a) => a.kind === 'anomaly');
    const valueFaults = faults.filter(
      (f) => !['server-restart', 'cable-pull', 'broker-disconnect'].includes(f.kind),
    );
    const delays: number[] = [];
    for (const f of valueFaults) {
      const hit = anomalies
        .filter(
          (a) =>
            a.asset === f.asset && a.at >= f.from && a.at <= Math.max(f.to, f.from + graceSeconds * 1000),
        )
        .sort((x, y) => x.at - y.at)[0];
      if (hit) delays.push(Math.round((hit.at - f.from) / 100) / 10);
    }
    const alertsWithoutFault = anomalies.filter(
      (a) =>
        !valueFaults.some(
          (f) =>
            f.asset === a.asset && a.at >= f.from && a.at <= Math.max(f.to, f.from + graceSeconds * 1000),
        ),
    ).length;
    return {
      failures,
      missedFailures: failures.filter((f) => f.leadSeconds === null).length,
      falseAlarms,
      openAlerts,
      anomaly: {
        faultsDetected: delays.length,
        faultsInjected: valueFaults.length,
        delaysSeconds: delays,
        alertsWithoutFault,
      },
    };
  }
}
