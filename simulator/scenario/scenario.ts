import { SimClock } from '../machines/clock.js';
import { CmapssEngine } from '../machines/cmapss.js';
import type { FailurePlan } from '../machines/failure.js';
import { FaultyMachine, type InjectedFault, type ValueFault } from '../machines/faults.js';
import { deriveSeed, hashString } from '../machines/noise.js';
import { PROFILES } from '../machines/profiles.js';
import { RotatingMachine } from '../machines/rotating.js';
import type { SimMachine } from '../machines/types.js';
import {
  faultTargets,
  isValueFault,
  opcuaServers,
  type Expose,
  type MachineSpec,
  type RotatingSpec,
  type ScenarioSpec,
} from './schema.js';
import type { ProtocolFaultEvent } from './timeline.js';

/** End of a window, in whole microseconds, so that 0.02 + 0.1 is 0.12 and sorts as such. */
function endOf(at: number, duration: number): number {
  return Math.round((at + duration) * 1e6) / 1e6;
}

/** One machine of a built scenario and the protocols it is to be exposed through. */
export interface BuiltMachine {
  asset: string;
  /** The machine as the protocol servers see it: with its value faults applied, if any. */
  machine: SimMachine;
  expose: Expose;
}

export interface BuiltScenario {
  clock: SimClock;
  machines: BuiltMachine[];
  /** Ground truth of every fault of the scenario: value faults, and protocol outages per asset. */
  injectedFaults(): InjectedFault[];
}

export interface BuildOptions {
  /** The clock to use; a new one at the scenario's acceleration, starting now, by default. */
  clock?: SimClock;
  /** Folder of the C-MAPSS data; cmapssDir() by default. */
  cmapssDir?: string;
}

/** A validated scenario (from load.ts): its spec, its fault timeline, and its machines. */
export class Scenario {
  constructor(
    readonly spec: ScenarioSpec,
    /** Where it was read from, for messages. */
    readonly file: string,
  ) {}

  get assets(): string[] {
    return Object.keys(this.spec.machines);
  }

  /** The seed of a machine: its own, or one derived from the scenario seed and its asset id. */
  machineSeed(asset: string): number {
    const m = this.machine(asset);
    if (m.kind !== 'cmapss-engine' && m.seed !== undefined) return m.seed;
    return deriveSeed(this.spec.seed, hashString(asset));
  }

  machine(asset: string): MachineSpec {
    const m = this.spec.machines[asset];
    if (!m) throw new RangeError(`scenario ${this.file} has no machine '${asset}'`);
    return m;
  }

  /** The OPC-UA servers to start: machines grouped by port (0: one shared server on a free port). */
  opcuaServers(): Array<{ port: number; assets: string[] }> {
    return opcuaServers(this.spec);
  }

  /** The value faults of one machine, in the order of the file. */
  valueFaults(asset: string): ValueFault[] {
    return this.spec.faults.flatMap((f) =>
      isValueFault(f) && f.asset === asset
        ? [
            {
              kind: f.kind,
              tag: f.tag,
              atSeconds: f.at,
              durationSeconds: f.durationSeconds,
              factor: 'factor' in f ? f.factor : undefined,
              offset: 'offset' in f ? f.offset : undefined,
              status: 'status' in f ? f.status : undefined,
            },
          ]
        : [],
    );
  }

  /** Protocol faults as down/up events ordered by time (ties: in file order, `up` before `down`). */
  timeline(): ProtocolFaultEvent[] {
    const events: ProtocolFaultEvent[] = [];
    this.spec.faults.forEach((f, fault) => {
      if (isValueFault(f)) return;
      const base = { kind: f.kind, protocol: f.protocol, assets: faultTargets(this.spec, f), fault };
      events.push({ ...base, atSeconds: f.at, action: 'down' });
      events.push({ ...base, atSeconds: endOf(f.at, f.downSeconds), action: 'up' });
    });
    return events
      .map((e, i) => ({ e, i }))
      .sort(
        (a, b) =>
          a.e.atSeconds - b.e.atSeconds ||
          (a.e.action === b.e.action ? 0 : a.e.action === 'up' ? -1 : 1) ||
          a.i - b.i,
      )
      .map(({ e }) => e);
  }

  /** The failure plan of a pump or spindle as the model takes it. */
  failurePlan(m: RotatingSpec): FailurePlan | null {
    if (!m.failure) return null;
    return {
      mode: m.failure.mode,
      atHours: m.failure.atHours,
      meanLifeHours: m.failure.meanLifeHours ?? PROFILES[m.kind].meanLifeHours,
      degradationHours: m.failure.degradationHours,
      repairHours: m.failure.repairHours,
    };
  }

  /** Builds the machines, wrapped with their value faults, on one shared clock. */
  build(opts: BuildOptions = {}): BuiltScenario {
    const clock = opts.clock ?? new SimClock({ acceleration: this.spec.acceleration });
    const faulty: FaultyMachine[] = [];
    const machines = Object.entries(this.spec.machines).map(([asset, m]): BuiltMachine => {
      let machine: SimMachine =
        m.kind === 'cmapss-engine'
          ? new CmapssEngine({
              asset,
              clock,
              dataset: m.dataset,
              units: m.units,
              cycleSeconds: m.cycleSeconds,
              replacementCycles: m.replacementCycles,
              replace: m.replace,
              dir: opts.cmapssDir,
            })
          : new RotatingMachine({
              asset,
              kind: m.kind,
              clock,
              seed: this.machineSeed(asset),
              failure: this.failurePlan(m),
              stepSeconds: m.stepSeconds,
              modeDwellScale: m.modeDwellScale,
            });
      const faults = this.valueFaults(asset);
      if (faults.length > 0) {
        const wrapped = new FaultyMachine(machine, faults, clock);
        faulty.push(wrapped);
        machine = wrapped;
      }
      return { asset, machine, expose: m.expose };
    });
    const outages = this.timeline().filter((e) => e.action === 'down');
    const injectedFaults = (): InjectedFault[] => [
      ...faulty.flatMap((f) => f.injected()),
      ...outages.flatMap((e) => {
        const f = this.spec.faults[e.fault]!;
        const until = endOf(f.at, 'downSeconds' in f ? f.downSeconds : 0);
        return e.assets.map((asset) => ({
          asset,
          tag: '*',
          kind: e.kind,
          from: clock.startWallMs + f.at * 1000,
          to: clock.startWallMs + until * 1000,
          atSeconds: f.at,
          untilSeconds: until,
        }));
      }),
    ];
    return { clock, machines, injectedFaults };
  }
}
