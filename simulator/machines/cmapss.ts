import type { SimClock } from './clock.js';
import { CMAPSS_COLUMNS, loadCmapss, type CmapssData, type CmapssDataset } from './cmapss-data.js';
import { SimError } from './errors.js';
import type { MachineSnapshot, MachineTruth, SimMachine, SimTag, TagValue } from './types.js';

export { CMAPSS_DATASETS, cmapssDir, type CmapssDataset } from './cmapss-data.js';

/**
 * An aircraft engine that replays a real NASA C-MAPSS run-to-failure trajectory, one operating
 * cycle per `cycleSeconds` of simulated time. After its last cycle the engine has failed; after
 * `replacementCycles` cycles on the ground a replacement engine (the next unit in the list)
 * starts at cycle 1. The position in the data is a pure function of simulated time.
 */

export interface CmapssEngineOptions {
  asset: string;
  clock: SimClock;
  dataset: CmapssDataset;
  /** Units replayed in this order; all units of the dataset by default. */
  units?: readonly number[] | undefined;
  /** Simulated seconds per operating cycle (a flight): 3600 by default. */
  cycleSeconds?: number | undefined;
  /** Cycles' worth of time the failed engine stays down before its replacement starts (1 by default). */
  replacementCycles?: number | undefined;
  /** Whether a replacement follows a failure; when false the engine stays failed after its first unit. */
  replace?: boolean | undefined;
  /** Folder of the data; cmapssDir() by default. */
  dir?: string | undefined;
}

/** Below this many remaining cycles an engine counts as degrading: the usual RUL cap of C-MAPSS work. */
export const DEGRADING_CYCLES = 125;

type Range = [number, number, string, string];
/** Units, meanings and ranges that cover all four C-MAPSS subsets (Saxena et al. 2008, table 2). */
const COLUMN_INFO: Record<string, Range> = {
  cycle: [0, 1000, '', 'operating cycles since the engine was installed'],
  setting1: [-1, 45, '', 'operational setting 1 (altitude, normalised)'],
  setting2: [-0.01, 1, '', 'operational setting 2 (Mach number, normalised)'],
  setting3: [0, 110, '', 'operational setting 3 (throttle resolver angle)'],
  s1: [400, 560, '°R', 'T2, total temperature at fan inlet'],
  s2: [500, 700, '°R', 'T24, total temperature at LPC outlet'],
  s3: [1200, 1700, '°R', 'T30, total temperature at HPC outlet'],
  s4: [1000, 1500, '°R', 'T50, total temperature at LPT outlet'],
  s5: [0, 20, 'psia', 'P2, pressure at fan inlet'],
  s6: [0, 30, 'psia', 'P15, total pressure in bypass duct'],
  s7: [100, 600, 'psia', 'P30, total pressure at HPC outlet'],
  s8: [1800, 2500, 'rpm', 'Nf, physical fan speed'],
  s9: [7500, 9500, 'rpm', 'Nc, physical core speed'],
  s10: [0.8, 1.5, '', 'epr, engine pressure ratio (P50/P2)'],
  s11: [30, 60, 'psia', 'Ps30, static pressure at HPC outlet'],
  s12: [100, 600, 'pps/psi', 'phi, ratio of fuel flow to Ps30'],
  s13: [1800, 2500, 'rpm', 'NRf, corrected fan speed'],
  s14: [7500, 8500, 'rpm', 'NRc, corrected core speed'],
  s15: [7, 12, '', 'BPR, bypass ratio'],
  s16: [0, 0.05, '', 'farB, burner fuel-air ratio'],
  s17: [300, 420, '', 'htBleed, bleed enthalpy'],
  s18: [1800, 2500, 'rpm', 'Nf_dmd, demanded fan speed'],
  s19: [80, 105, 'rpm', 'PCNfR_dmd, demanded corrected fan speed'],
  s20: [5, 45, 'lbm/s', 'W31, HPT coolant bleed'],
  s21: [5, 30, 'lbm/s', 'W32, LPT coolant bleed'],
};

export const CMAPSS_TAGS: readonly SimTag[] = CMAPSS_COLUMNS.map((name) => {
  const [min, max, unit, description] = COLUMN_INFO[name]!;
  return { name, unit, description, min, max };
});

const FAILURE_MODE: Record<CmapssDataset, string> = {
  FD001: 'hpc_degradation',
  // FD003 mixes HPC and fan degradation and does not say which unit has which.
  FD003: 'hpc_or_fan_degradation',
};

interface Position {
  unit: number;
  /** 1-based cycle now, or null while the engine has failed and waits for its replacement. */
  cycle: number | null;
  lastCycle: number;
  failureAtSimSeconds: number;
}

export class CmapssEngine implements SimMachine {
  readonly asset: string;
  readonly kind = 'cmapss-engine' as const;
  readonly tags = CMAPSS_TAGS;
  readonly dataset: CmapssDataset;
  readonly cycleSeconds: number;
  private readonly clock: SimClock;
  private readonly data: CmapssData;
  private readonly units: readonly number[];
  private readonly lengths: readonly number[];
  private readonly gap: number;
  private readonly replace: boolean;
  /** Cycle slots one pass through the unit list takes (flying plus waiting for a replacement). */
  private readonly period: number;

  constructor(opts: CmapssEngineOptions) {
    this.asset = opts.asset;
    this.clock = opts.clock;
    this.dataset = opts.dataset;
    this.cycleSeconds = opts.cycleSeconds ?? 3600;
    this.gap = opts.replacementCycles ?? 1;
    this.replace = opts.replace ?? true;
    if (!(this.cycleSeconds > 0) || !Number.isInteger(this.gap) || this.gap < 0)
      throw new SimError(
        'SIM_ERR_MACHINE_CONFIG',
        `${this.asset}: cycleSeconds must be positive and replacementCycles a whole number >= 0`,
      );
    this.data = loadCmapss(opts.dataset, opts.dir);
    this.units = opts.units && opts.units.length > 0 ? [...opts.units] : [...this.data.units.keys()];
    const missing = this.units.filter((u) => !this.data.units.has(u));
    if (missing.length > 0)
      throw new SimError(
        'SIM_ERR_MACHINE_CONFIG',
        `${this.asset}: ${opts.dataset} has no unit ${missing.join(', ')} (it has units 1 to ${this.data.units.size})`,
      );
    this.lengths = this.units.map((u) => this.data.units.get(u)!.rows.length);
    this.period = this.lengths.reduce((s, l) => s + l + this.gap, 0);
  }

  /** Where the replay is at a simulated time. */
  positionAt(simSeconds: number): Position {
    const slot = Math.floor(simSeconds / this.cycleSeconds + 1e-9);
    if (!this.replace && slot >= this.lengths[0]!) return this.at(0, 0, slot);
    const pass = Math.floor(slot / this.period);
    let start = pass * this.period;
    let i = 0;
    while (slot >= start + this.lengths[i]! + this.gap) {
      start += this.lengths[i]! + this.gap;
      i++;
    }
    return this.at(i, start, slot);
  }

  snapshot(): MachineSnapshot {
    const sim = this.clock.simSeconds();
    const pos = this.positionAt(sim);
    const row = this.data.units.get(pos.unit)!.rows[(pos.cycle ?? pos.lastCycle) - 1]!;
    const values: Record<string, TagValue> = {};
    // A grounded engine keeps showing its last recorded cycle: the gateway sees it stop changing.
    CMAPSS_COLUMNS.forEach((name, i) => (values[name] = { value: row[i]!, quality: 'good' }));
    return { asset: this.asset, time: this.clock.now(), simSeconds: sim, values };
  }

  truth(): MachineTruth {
    const pos = this.positionAt(this.clock.simSeconds());
    const remaining = pos.cycle === null ? 0 : pos.lastCycle - pos.cycle;
    return {
      state: pos.cycle === null ? 'failed' : remaining <= DEGRADING_CYCLES ? 'degrading' : 'healthy',
      failureAtSimSeconds: pos.failureAtSimSeconds,
      failureAtWallMs: this.clock.wallMsAt(pos.failureAtSimSeconds),
      failureMode: FAILURE_MODE[this.dataset],
      unit: pos.unit,
      remainingCycles: remaining,
    };
  }

  private at(i: number, startSlot: number, slot: number): Position {
    const lastCycle = this.lengths[i]!;
    const k = slot - startSlot;
    return {
      unit: this.units[i]!,
      cycle: k < lastCycle ? k + 1 : null,
      lastCycle,
      failureAtSimSeconds: (startSlot + lastCycle) * this.cycleSeconds,
    };
  }
}
