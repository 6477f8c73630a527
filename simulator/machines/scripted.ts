import type { MachineKind, MachineSnapshot, MachineTruth, SimMachine, SimTag, TagValue } from './types.js';

/**
 * A machine whose values a test or a scenario sets directly: no physics. The protocol servers'
 * tests use it to publish exactly the values (and bad qualities) they then expect to receive.
 */
export class ScriptedMachine implements SimMachine {
  readonly kind: MachineKind = 'scripted';
  readonly tags: readonly SimTag[];
  private readonly values: Record<string, TagValue> = {};
  private readonly started = Date.now();

  constructor(
    readonly asset: string,
    tags: ReadonlyArray<Partial<SimTag> & { name: string }>,
  ) {
    this.tags = tags.map((t) => ({
      unit: '',
      description: t.name,
      min: -1e6,
      max: 1e6,
      ...t,
    }));
    for (const t of this.tags) this.values[t.name] = { value: 0, quality: 'good' };
  }

  /** Sets a tag's value (quality good unless given). */
  set(tag: string, value: number, quality: TagValue['quality'] = 'good', status?: string): void {
    if (!(tag in this.values)) throw new Error(`ScriptedMachine ${this.asset}: no tag ${tag}`);
    this.values[tag] = status === undefined ? { value, quality } : { value, quality, status };
  }

  snapshot(): MachineSnapshot {
    const now = Date.now();
    const values: Record<string, TagValue> = {};
    for (const [k, v] of Object.entries(this.values)) values[k] = { ...v };
    return { asset: this.asset, time: now, simSeconds: (now - this.started) / 1000, values };
  }

  truth(): MachineTruth {
    return { state: 'healthy', failureAtSimSeconds: null, failureAtWallMs: null, failureMode: null };
  }
}
