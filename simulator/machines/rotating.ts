import { Rng } from '../camera/rng.js';
import type { SimClock } from './clock.js';
import { SimError } from './errors.js';
import { parisDamage, planRun, type FailurePlan, type PlannedRun } from './failure.js';
import { deriveSeed, hashGaussian } from './noise.js';
import { PROFILES, type OperatingMode, type RotatingKind, type RotatingProfile } from './profiles.js';
import type { MachineSnapshot, MachineTruth, SimMachine, SimTag, TagValue } from './types.js';

/**
 * A physics-flavoured rotating machine (centrifugal pump or machine-tool spindle) that wears out
 * and fails. One fixed-step model for both; profiles.ts holds what differs.
 *
 * - Speed follows the operating mode's set point with a first-order lag; modes change on a seeded
 *   schedule (idle / low / high load).
 * - Current follows shaft power (pump: power ∝ n³; spindle: torque × speed) plus magnetising current.
 * - Pressure follows the pump affinity law (head ∝ n²); a seal leak takes some of it away.
 * - Bearing temperature relaxes to ambient + losses with a thermal time constant; friction from
 *   wear and lost cooling raise it.
 * - Vibration RMS grows with speed, with normal wear, and sharply with bearing damage, which grows
 *   like a Paris-law crack towards the planned failure time.
 * - At the planned failure time the machine trips (set point 0, mode 0) and stays down until the
 *   repair time has passed, then restarts with new parts: a new run with its own planned failure.
 * - An hour meter (`hours`) counts the simulated hours the machine has run since it was new or
 *   last repaired: the axis a model can step on, whatever the wall-clock acceleration.
 *
 * The physics advances in fixed simulated steps, and the sensor noise is a hash of (seed, step),
 * so a snapshot is a pure function of the seed and the simulated time, however often it is read.
 */

export interface RotatingMachineOptions {
  asset: string;
  kind: RotatingKind;
  clock: SimClock;
  seed: number;
  /** The planned failures; null: the machine never fails (normal wear only). */
  failure: FailurePlan | null;
  /** Simulated seconds per physics step (10 by default). Part of the determinism contract. */
  stepSeconds?: number;
  /** Multiplies the profile's mean dwell time in each operating mode (1 by default). */
  modeDwellScale?: number;
  /**
   * Most steps one snapshot() may compute. After a long stall (a suspended process, a huge
   * acceleration) the model lags the clock instead of blocking the event loop, and catches up
   * over the following snapshots.
   */
  maxStepsPerSnapshot?: number;
}

/** The noise-free physical state after a step. */
interface Outputs {
  temperature: number;
  vibration_rms: number;
  current: number;
  speed: number;
  fifth: number;
}

/** Sensor noise: standard deviation (absolute, and relative to the value) and resolution. */
const SENSOR: Record<keyof Outputs, { abs: number; rel: number; decimals: number }> = {
  temperature: { abs: 0.15, rel: 0, decimals: 2 },
  vibration_rms: { abs: 0.02, rel: 0.03, decimals: 3 },
  current: { abs: 0.15, rel: 0.005, decimals: 2 },
  speed: { abs: 0.5, rel: 0.002, decimals: 1 },
  fifth: { abs: 0.03, rel: 0.003, decimals: 3 },
};

const SQRT3 = Math.sqrt(3);
/** Line voltage × power factor of the motors, for current from power. */
const VOLT_PF = 400 * 0.85;
/** Correlation time of the load and vibration fluctuations, simulated seconds. */
const PROCESS_TAU_SECONDS = 600;
/** Wear of a machine that has no planned failure is measured against this many hours. */
const NOMINAL_LIFE_HOURS = 1000;

export class RotatingMachine implements SimMachine {
  readonly asset: string;
  readonly kind: RotatingKind;
  readonly tags: readonly SimTag[];
  readonly seed: number;
  readonly stepSeconds: number;
  private readonly profile: RotatingProfile;
  private readonly clock: SimClock;
  private readonly plan: FailurePlan | null;
  private readonly dwellScale: number;
  private readonly maxSteps: number;
  private readonly planRng: Rng;
  private readonly modeRng: Rng;
  private readonly processRng: Rng;
  private readonly noiseSeed: number;

  private step = 0;
  /** Steps the machine has run (not tripped, not under repair) since its last repair: the hour meter. */
  private operatingSteps = 0;
  private runs: PlannedRun[] = [];
  private failedAt: number | null = null;
  private mode: OperatingMode;
  private nextModeAt = 0;
  private speed = 0;
  private temperature = 0;
  private loadAr = 0;
  private vibAr = 0;
  private out: Outputs;

  constructor(opts: RotatingMachineOptions) {
    this.asset = opts.asset;
    this.kind = opts.kind;
    this.profile = PROFILES[opts.kind];
    this.tags = this.profile.tags;
    this.clock = opts.clock;
    this.seed = opts.seed >>> 0;
    this.plan = opts.failure;
    this.stepSeconds = opts.stepSeconds ?? 10;
    this.dwellScale = opts.modeDwellScale ?? 1;
    this.maxSteps = opts.maxStepsPerSnapshot ?? 100_000;
    if (!(this.stepSeconds > 0) || !(this.dwellScale > 0))
      throw new SimError(
        'SIM_ERR_MACHINE_CONFIG',
        `${this.asset}: stepSeconds and modeDwellScale must be positive numbers`,
      );
    if (this.plan && this.plan.mode !== 'random' && !this.profile.failureModes.includes(this.plan.mode))
      throw new SimError(
        'SIM_ERR_MACHINE_CONFIG',
        `${this.asset}: a ${this.kind} has no failure mode '${this.plan.mode}'; use one of ${this.profile.failureModes.join(', ')} or random`,
      );
    this.planRng = new Rng(deriveSeed(this.seed, 'plan'));
    this.modeRng = new Rng(deriveSeed(this.seed, 'modes'));
    this.processRng = new Rng(deriveSeed(this.seed, 'process'));
    this.noiseSeed = deriveSeed(this.seed, 'sensor');
    if (this.plan) this.runs.push(planRun(this.plan, this.profile.failureModes, this.planRng, 0, 0));
    this.mode = this.profile.modes[0]!;
    this.enterMode(this.pickMode(null), 0);
    // Start in the steady state of the first mode, as a machine that has been running a while.
    this.speed = this.profile.ratedSpeed * this.mode.speedFraction;
    this.out = this.derive(0);
    this.temperature = this.steadyTemperature(0, this.out);
    this.out = this.derive(0);
  }

  /** Simulated seconds the physics has reached (a multiple of stepSeconds). */
  get simSeconds(): number {
    return this.step * this.stepSeconds;
  }

  /**
   * Operating hours of the current run: simulated time the machine has run (in any operating mode)
   * since it was started new or last came back from repair with new parts. It stands still while
   * the machine is tripped or under repair and restarts from 0 after the repair, like a service
   * hour meter reset at an overhaul. A model stepping on it (a counter axis) therefore scores
   * nothing while the machine stands, and starts afresh after a repair (the counter going back),
   * instead of mixing the worn-out machine's last hours into the repaired one's first windows.
   */
  get operatingHours(): number {
    return (this.operatingSteps * this.stepSeconds) / 3600;
  }

  /** Every run so far, the current one last. */
  history(): readonly PlannedRun[] {
    return this.runs.map((r) => ({ ...r }));
  }

  /** The run in progress (or the one that just failed); undefined when no failure is planned. */
  currentRun(): PlannedRun | undefined {
    const r = this.runs[this.runs.length - 1];
    return r && { ...r };
  }

  /** Advances the physics to `simSeconds` (rounded down to a step), without any cap. */
  advanceTo(simSeconds: number): void {
    const target = Math.floor(simSeconds / this.stepSeconds + 1e-9);
    if (target < this.step)
      throw new RangeError(
        `${this.asset}: cannot go back to ${simSeconds} s of simulated time from ${this.simSeconds} s`,
      );
    while (this.step < target) this.advance();
  }

  /** The sensor values now: the physical state plus sensor noise, at the sensors' resolution. */
  measure(): Record<string, number> {
    const o = this.out;
    const v: Record<string, number> = {};
    const keys = ['temperature', 'vibration_rms', 'current', 'speed', 'fifth'] as const;
    keys.forEach((k, channel) => {
      const truth = o[k];
      const s = SENSOR[k];
      // A stopped shaft reads exactly zero speed and current; the noise is the sensors' own.
      const still = (k === 'speed' || k === 'current') && truth === 0;
      const noisy = still
        ? 0
        : truth + (s.abs + s.rel * Math.abs(truth)) * hashGaussian(this.noiseSeed, this.step, channel);
      const tag = this.tags[channel]!;
      const name = k === 'fifth' ? this.profile.fifthTag : k;
      const m = 10 ** s.decimals;
      v[name] = Math.round(Math.min(tag.max, Math.max(tag.min, noisy)) * m) / m;
    });
    v['mode'] = this.failedAt === null ? this.mode.id : 0;
    // An hour meter counts exactly; 0.01 h (36 s) is the resolution of a typical digital one.
    v['hours'] = Math.round(this.operatingHours * 100) / 100;
    return v;
  }

  snapshot(): MachineSnapshot {
    this.catchUp();
    const values: Record<string, TagValue> = {};
    for (const [name, value] of Object.entries(this.measure())) values[name] = { value, quality: 'good' };
    return { asset: this.asset, time: this.clock.now(), simSeconds: this.simSeconds, values };
  }

  truth(): MachineTruth {
    this.catchUp();
    return this.truthNow();
  }

  /** The truth at the model's own time, without reading the clock (for the dataset export). */
  truthNow(): MachineTruth {
    const run = this.runs[this.runs.length - 1];
    if (!run)
      return { state: 'healthy', failureAtSimSeconds: null, failureAtWallMs: null, failureMode: null };
    const state =
      this.failedAt !== null ? 'failed' : this.simSeconds >= run.onsetSimSeconds ? 'degrading' : 'healthy';
    return {
      state,
      failureAtSimSeconds: run.failureAtSimSeconds,
      failureAtWallMs: this.clock.wallMsAt(run.failureAtSimSeconds),
      failureMode: run.mode,
    };
  }

  private catchUp(): void {
    const target = Math.floor(this.clock.simSeconds() / this.stepSeconds + 1e-9);
    const until = Math.min(target, this.step + this.maxSteps);
    while (this.step < until) this.advance();
  }

  private advance(): void {
    this.step++;
    const t = this.simSeconds;
    const dt = this.stepSeconds;
    // The step that just ended counts on the hour meter if the machine ran during it.
    if (this.failedAt === null) this.operatingSteps++;
    const run = this.runs[this.runs.length - 1];
    if (run && this.failedAt === null && t >= run.failureAtSimSeconds) {
      this.failedAt = run.failureAtSimSeconds;
    } else if (
      run &&
      this.failedAt !== null &&
      this.plan?.repairHours != null &&
      t >= this.failedAt + this.plan.repairHours * 3600
    ) {
      this.failedAt = null;
      this.operatingSteps = 0;
      this.runs.push(planRun(this.plan, this.profile.failureModes, this.planRng, this.runs.length, t));
      this.enterMode(this.profile.modes[0]!, t);
    }
    if (this.failedAt === null && t >= this.nextModeAt) this.enterMode(this.pickMode(this.mode), t);

    const phi = Math.exp(-dt / PROCESS_TAU_SECONDS);
    const kick = Math.sqrt(1 - phi * phi);
    this.loadAr = phi * this.loadAr + kick * this.processRng.gaussian();
    this.vibAr = phi * this.vibAr + kick * this.processRng.gaussian();

    const setPoint = this.failedAt === null ? this.profile.ratedSpeed * this.mode.speedFraction : 0;
    this.speed += (setPoint - this.speed) * (1 - Math.exp(-dt / this.profile.speedTauSeconds));
    if (setPoint === 0 && this.speed < 1) this.speed = 0;
    const derived = this.derive(t);
    const target = this.steadyTemperature(t, derived);
    this.temperature += (target - this.temperature) * (1 - Math.exp(-dt / this.profile.thermalTauSeconds));
    this.out = { ...derived, temperature: this.temperature };
  }

  private enterMode(mode: OperatingMode, t: number): void {
    this.mode = mode;
    const mean = mode.dwellHours * this.dwellScale * 3600;
    // Exponential dwell, but never shorter than a tenth of the mean: a mode is a batch, not a blip.
    this.nextModeAt = t + Math.max(0.1 * mean, -Math.log(1 - this.modeRng.next()) * mean);
  }

  private pickMode(current: OperatingMode | null): OperatingMode {
    const choices = this.profile.modes.filter((m) => m !== current);
    const total = choices.reduce((s, m) => s + m.weight, 0);
    let r = this.modeRng.next() * total;
    for (const m of choices) {
      r -= m.weight;
      if (r < 0) return m;
    }
    return choices[choices.length - 1]!;
  }

  /** Damage 0..1 of the current run's failure mode, and normal wear 0..1 (fraction of the life used). */
  private damage(t: number): { damage: number; wear: number } {
    const run = this.runs[this.runs.length - 1];
    if (!run) return { damage: 0, wear: Math.min(1, t / (NOMINAL_LIFE_HOURS * 3600)) };
    const end = this.failedAt ?? t;
    const life = run.failureAtSimSeconds - run.startSimSeconds;
    const lead = run.failureAtSimSeconds - run.onsetSimSeconds;
    return {
      damage: parisDamage((end - run.onsetSimSeconds) / lead),
      wear: Math.min(1, (end - run.startSimSeconds) / life),
    };
  }

  private ambient(t: number): number {
    // A factory hall: 22 °C, warmer in the afternoon.
    return 22 + 4 * Math.sin((2 * Math.PI * (t - 9 * 3600)) / 86400);
  }

  /** Everything but the temperature, which has its own lag; `temperature` here is the state. */
  private derive(t: number): Outputs {
    const p = this.profile;
    const run = this.runs[this.runs.length - 1];
    const { damage, wear } = this.damage(t);
    const e = run ? p.effects[run.mode] : undefined;
    const nf = this.speed / p.ratedSpeed;
    // A tripped machine's breaker is open: no current, no cutting, the shaft coasts down.
    const energised = this.failedAt === null && this.speed > 0;
    const friction = 1 + 0.05 * wear + (e ? e.friction * damage : 0);
    const leak = e ? e.pressureLoss * damage : 0;

    let powerKw: number;
    let fifth: number;
    if (p.kind === 'pump') {
      // Affinity laws; a leaking seal passes extra flow, which costs power and head.
      powerKw = p.ratedPowerKw * nf ** 3 * friction * (1 + 0.5 * leak) * (1 + 0.03 * this.loadAr);
      fifth = 1 + 5 * nf * nf * (1 - leak) * (1 + 0.01 * this.loadAr);
    } else {
      const cut = energised ? Math.max(0, this.mode.load * (1 + 0.15 * this.loadAr)) : 0;
      const frictionTorque = energised ? 0.03 * friction : 0;
      fifth = 100 * (cut + frictionTorque);
      powerKw = p.ratedPowerKw * nf * (cut + frictionTorque) + 0.4 * nf * nf;
    }
    const current = energised
      ? p.noLoadCurrent * Math.min(1, nf / 0.1) + (powerKw * 1000) / (SQRT3 * VOLT_PF)
      : 0;
    let vibration = 0.04 + 0.5 * nf; // the floor shakes a little; a coasting shaft a little more
    if (energised) {
      const law = e?.vibrationLaw === 'speed2' ? nf * nf : 0.4 + 0.6 * nf;
      const cutting = p.kind === 'spindle' ? 0.8 * (fifth / 100) : 0;
      vibration =
        ((0.25 + 1.1 * nf) * (1 + 0.35 * wear) + cutting) * (1 + 0.05 * this.vibAr) +
        (e ? e.vibration * damage * law : 0);
    }
    return { temperature: this.temperature, vibration_rms: vibration, current, speed: this.speed, fifth };
  }

  private steadyTemperature(t: number, o: Outputs): number {
    const p = this.profile;
    const run = this.runs[this.runs.length - 1];
    const { damage, wear } = this.damage(t);
    const e = run ? p.effects[run.mode] : undefined;
    const nf = o.speed / p.ratedSpeed;
    const ratedCurrent = p.noLoadCurrent + (p.ratedPowerKw * 1000) / (SQRT3 * VOLT_PF);
    const friction = 1 + 0.05 * wear + (e ? e.friction * damage : 0);
    const rise =
      (20 * (o.current / ratedCurrent) ** 2 + 14 * nf * friction + (e ? e.temperature * damage * nf : 0)) /
      (1 - (e ? e.coolingLoss * damage : 0));
    return this.ambient(t) + rise;
  }
}
