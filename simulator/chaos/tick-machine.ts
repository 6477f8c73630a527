import type { MachineKind, MachineSnapshot, MachineTruth, SimMachine, SimTag } from '../machines/types.js';

/**
 * A machine whose one tag, `tick`, counts periods of `periodMs` since it started: 1, 2, 3... So
 * every value a client receives names the moment it was measured, and the values missing from
 * what a gateway stored are exactly the moments it did not get: during a server outage they are
 * the device-side loss, anywhere else they are the gateway's. A `level` tag moves with it so that
 * the machine looks like a process value too.
 */
export class TickMachine implements SimMachine {
  readonly kind: MachineKind = 'scripted';
  readonly tags: readonly SimTag[] = [
    { name: 'tick', unit: '', description: 'periods since start', min: 0, max: 1e12 },
    { name: 'level', unit: '%', description: 'a slow process value', min: 0, max: 100 },
  ];
  private readonly started = Date.now();
  /** Set by freeze(): the wall time the values stopped at. */
  private frozenAt: number | undefined;

  constructor(
    readonly asset: string,
    readonly periodMs: number,
  ) {}

  /** The tick value at wall time `at` (ms). */
  tickAt(at: number): number {
    return Math.floor((at - this.started) / this.periodMs) + 1;
  }

  /**
   * Stops the values where they are (the machine is switched off, its last values stay on the
   * PLC): a subscription then reports no more changes, so that what a gateway received can be
   * counted while nothing new arrives.
   */
  freeze(): void {
    this.frozenAt ??= Date.now();
  }

  snapshot(): MachineSnapshot {
    const now = Date.now();
    const tick = this.tickAt(this.frozenAt ?? now);
    return {
      asset: this.asset,
      time: now,
      simSeconds: (now - this.started) / 1000,
      values: {
        tick: { value: tick, quality: 'good' },
        level: { value: 50 + 40 * Math.sin(tick / 50), quality: 'good' },
      },
    };
  }

  truth(): MachineTruth {
    return { state: 'healthy', failureAtSimSeconds: null, failureAtWallMs: null, failureMode: null };
  }
}
