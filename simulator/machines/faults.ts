import type { SimClock } from './clock.js';
import type { MachineSnapshot, MachineTruth, SimMachine, SimQuality, SimTag, TagValue } from './types.js';

/**
 * Sensor faults laid over a machine's honest values, on a schedule, with their ground truth kept
 * for reports. Times are wall-clock seconds since the scenario started (SimClock.wallSeconds()),
 * the same time base as the protocol faults (a server restart, a cable pull), so that a scenario
 * reads as "30 s into the run, the vibration sensor sticks for 20 s" whatever the acceleration.
 */

export const VALUE_FAULT_KINDS = ['spike', 'stuck', 'drift', 'offset', 'dropout', 'status'] as const;
export type ValueFaultKind = (typeof VALUE_FAULT_KINDS)[number];

export interface ValueFault {
  kind: ValueFaultKind;
  /** The tag affected; absent for dropout and status: every tag of the machine. */
  tag?: string | undefined;
  /** Start, wall-clock seconds since the scenario started. */
  atSeconds: number;
  durationSeconds: number;
  /** spike: the value is multiplied by this (1 when absent). */
  factor?: number | undefined;
  /** spike: added after the factor; drift: the offset reached at the end of the window; offset: added throughout. */
  offset?: number | undefined;
  /** status: an OPC-UA status name, `Bad...` (value becomes NaN) or `Uncertain...` (value kept). */
  status?: string | undefined;
}

/** What was injected where: the ground truth a report compares Vigil's view against. */
export interface InjectedFault {
  asset: string;
  /** The tag, or `*` for every tag of the asset. */
  tag: string;
  kind: string;
  /** Wall-clock ms since the epoch at which the fault starts and ends. */
  from: number;
  to: number;
  /** The same window in seconds since the scenario started. */
  atSeconds: number;
  untilSeconds: number;
  status?: string;
}

export const DROPOUT_STATUS = 'BadNoCommunication';

/** The quality an OPC-UA status name implies. */
export function qualityOf(status: string): SimQuality {
  return status.startsWith('Bad') ? 'bad' : status.startsWith('Uncertain') ? 'uncertain' : 'good';
}

export class FaultyMachine implements SimMachine {
  readonly asset: string;
  readonly kind: SimMachine['kind'];
  readonly tags: readonly SimTag[];
  private readonly faults: readonly ValueFault[];
  /** Last honest value per tag, for stuck sensors. */
  private readonly lastHonest = new Map<string, TagValue>();
  /** Frozen value per stuck fault (by index), taken when the fault is first seen active. */
  private readonly frozen = new Map<number, TagValue>();

  constructor(
    private readonly inner: SimMachine,
    faults: readonly ValueFault[],
    private readonly clock: SimClock,
  ) {
    this.asset = inner.asset;
    this.kind = inner.kind;
    this.tags = inner.tags;
    const names = new Set(inner.tags.map((t) => t.name));
    for (const f of faults) {
      if (f.tag !== undefined && !names.has(f.tag))
        throw new RangeError(
          `${inner.asset}: a ${f.kind} fault names tag '${f.tag}', which this machine lacks`,
        );
      if (
        (f.kind === 'spike' || f.kind === 'stuck' || f.kind === 'drift' || f.kind === 'offset') &&
        f.tag === undefined
      )
        throw new RangeError(`${inner.asset}: a ${f.kind} fault needs a tag`);
    }
    this.faults = faults.map((f) => ({ ...f }));
  }

  /** The machine under the faults. */
  get machine(): SimMachine {
    return this.inner;
  }

  /** Every scheduled fault window of this machine (past, present and future). */
  injected(): InjectedFault[] {
    const start = this.clock.startWallMs;
    return this.faults.map((f) => {
      // In whole microseconds, so that 0.02 + 0.1 reads 0.12 in reports.
      const until = Math.round((f.atSeconds + f.durationSeconds) * 1e6) / 1e6;
      const status = f.kind === 'dropout' ? DROPOUT_STATUS : f.status;
      return {
        asset: this.asset,
        tag: f.tag ?? '*',
        kind: f.kind,
        from: start + f.atSeconds * 1000,
        to: start + until * 1000,
        atSeconds: f.atSeconds,
        untilSeconds: until,
        ...(status === undefined ? {} : { status }),
      };
    });
  }

  snapshot(): MachineSnapshot {
    const snap = this.inner.snapshot();
    const now = this.clock.wallSeconds();
    const values: Record<string, TagValue> = {};
    for (const [k, v] of Object.entries(snap.values)) values[k] = { ...v };
    this.faults.forEach((f, i) => {
      const active = now >= f.atSeconds && now < f.atSeconds + f.durationSeconds;
      if (!active) {
        if (f.kind === 'stuck') this.frozen.delete(i);
        return;
      }
      for (const tag of f.tag === undefined ? Object.keys(values) : [f.tag]) {
        const v = values[tag];
        if (v) values[tag] = this.apply(f, i, tag, v, now);
      }
    });
    for (const [k, v] of Object.entries(snap.values)) this.lastHonest.set(k, v);
    return { ...snap, values };
  }

  truth(): MachineTruth {
    return this.inner.truth();
  }

  private apply(f: ValueFault, index: number, tag: string, v: TagValue, now: number): TagValue {
    switch (f.kind) {
      case 'spike':
        return { ...v, value: v.value * (f.factor ?? 1) + (f.offset ?? 0) };
      case 'drift':
        return { ...v, value: v.value + ((f.offset ?? 0) * (now - f.atSeconds)) / f.durationSeconds };
      case 'offset':
        // A re-mounted or miscalibrated sensor: a constant error, with good quality.
        return { ...v, value: v.value + (f.offset ?? 0) };
      case 'stuck': {
        // The sensor keeps reporting, with good quality, the last value it had before it stuck.
        let held = this.frozen.get(index);
        if (!held) this.frozen.set(index, (held = { ...(this.lastHonest.get(tag) ?? v) }));
        return { ...held };
      }
      case 'dropout':
        return { value: NaN, quality: 'bad', status: DROPOUT_STATUS };
      case 'status': {
        const status = f.status ?? 'BadSensorFailure';
        const quality = qualityOf(status);
        return { value: quality === 'bad' ? NaN : v.value, quality, status };
      }
    }
  }
}
