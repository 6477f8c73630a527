import type { SimTag } from './types.js';
import { PUMP_FAILURE_MODES, SPINDLE_FAILURE_MODES, type FailureModeName } from './failure.js';

/**
 * The numbers that make a pump a pump and a spindle a spindle: tags, operating modes, time
 * constants and how each failure mode shows in the signals. rotating.ts holds the physics they
 * feed. The magnitudes follow common practice: ISO 10816 vibration zones (about 1–2 mm/s for a
 * healthy machine of this size, above 7 mm/s damaging), bearing housings at 40–70 °C, pump
 * affinity laws (head ∝ n², power ∝ n³), a 400 V motor at power factor 0.85.
 */

export type RotatingKind = 'pump' | 'spindle';

export interface OperatingMode {
  /** Published as the `mode` tag. 0 is reserved for stopped (tripped or under repair). */
  id: number;
  name: string;
  /** Speed set point as a fraction of the rated speed. */
  speedFraction: number;
  /** Mean load: for the spindle the cutting torque as a fraction of rated; unused for the pump. */
  load: number;
  /** Mean time spent in the mode before the schedule moves on, simulated hours. */
  dwellHours: number;
  /** Relative chance of moving into this mode. */
  weight: number;
}

/** How far a failure mode has moved the signals at the moment of failure (damage 1). */
export interface FailureEffects {
  /** Extra vibration RMS, mm/s, at rated speed. */
  vibration: number;
  /** How the extra vibration scales with speed: bearing defects roughly with speed, imbalance with its square. */
  vibrationLaw: 'speed' | 'speed2';
  /** Extra bearing temperature rise, °C, at rated speed. */
  temperature: number;
  /** Extra friction as a fraction of the healthy losses. */
  friction: number;
  /** Fraction of the discharge pressure lost (seal leak). */
  pressureLoss: number;
  /** Fraction of the cooling lost (a clogged fan, lost lubrication): the temperature rise grows by 1/(1 − x). */
  coolingLoss: number;
}

export interface RotatingProfile {
  kind: RotatingKind;
  tags: readonly SimTag[];
  /** Name of the fifth tag: `pressure` for the pump, `load` for the spindle. */
  fifthTag: 'pressure' | 'load';
  ratedSpeed: number;
  /** Shaft power at rated speed and load, kW. */
  ratedPowerKw: number;
  /** Magnetising current while the motor is energised, A. */
  noLoadCurrent: number;
  /** Spin-up and coast-down time constant, s. */
  speedTauSeconds: number;
  /** Thermal time constant of the bearing housing, s. */
  thermalTauSeconds: number;
  modes: readonly OperatingMode[];
  failureModes: readonly FailureModeName[];
  effects: Record<FailureModeName, FailureEffects>;
  /** Default mean life, simulated hours. */
  meanLifeHours: number;
}

const commonTags = (maxCurrent: number, maxSpeed: number, bearing: string): SimTag[] => [
  { name: 'temperature', unit: '°C', description: `${bearing} bearing temperature`, min: -20, max: 150 },
  {
    name: 'vibration_rms',
    unit: 'mm/s',
    description: 'vibration velocity RMS at the drive-end bearing (ISO 10816)',
    min: 0,
    max: 50,
  },
  { name: 'current', unit: 'A', description: 'motor phase current', min: 0, max: maxCurrent },
  { name: 'speed', unit: 'rpm', description: 'shaft speed', min: 0, max: maxSpeed },
];

const modeTag = (names: string): SimTag => ({
  name: 'mode',
  unit: '',
  description: `operating mode: ${names}`,
  min: 0,
  max: 3,
});

/**
 * The hour meter: a counter the machine itself reports, so that a model can step on operating
 * hours (axis `{ type: 'counter', tag: 'hours' }`) whatever the simulator's acceleration.
 */
const hoursTag: SimTag = {
  name: 'hours',
  unit: 'h',
  description: 'hour meter: operating hours since new or since the last repair (stands while stopped)',
  min: 0,
  max: 999_999,
};

const bearingWear: FailureEffects = {
  vibration: 9,
  vibrationLaw: 'speed',
  temperature: 22,
  friction: 0.12,
  pressureLoss: 0,
  coolingLoss: 0,
};
const overheating: FailureEffects = {
  vibration: 0.6,
  vibrationLaw: 'speed',
  temperature: 0,
  friction: 0.04,
  pressureLoss: 0,
  coolingLoss: 0.7,
};
const imbalance: FailureEffects = {
  vibration: 9,
  vibrationLaw: 'speed2',
  temperature: 5,
  friction: 0.03,
  pressureLoss: 0,
  coolingLoss: 0,
};
const sealLeak: FailureEffects = {
  vibration: 1.2,
  vibrationLaw: 'speed',
  temperature: 6,
  friction: 0.04,
  pressureLoss: 0.35,
  coolingLoss: 0,
};

export const PUMP: RotatingProfile = {
  kind: 'pump',
  tags: [
    ...commonTags(100, 3600, 'drive-end'),
    { name: 'pressure', unit: 'bar', description: 'discharge pressure (absolute)', min: 0, max: 16 },
    modeTag('0 stopped, 1 idle, 2 low load, 3 high load'),
    hoursTag,
  ],
  fifthTag: 'pressure',
  ratedSpeed: 2950,
  ratedPowerKw: 15,
  noLoadCurrent: 7,
  speedTauSeconds: 3,
  thermalTauSeconds: 1500,
  modes: [
    { id: 1, name: 'idle', speedFraction: 0.35, load: 0, dwellHours: 2, weight: 0.2 },
    { id: 2, name: 'low', speedFraction: 0.7, load: 0, dwellHours: 6, weight: 0.4 },
    { id: 3, name: 'high', speedFraction: 0.95, load: 0, dwellHours: 6, weight: 0.4 },
  ],
  failureModes: PUMP_FAILURE_MODES,
  effects: { bearing_wear: bearingWear, seal_leak: sealLeak, overheating, imbalance },
  meanLifeHours: 400,
};

export const SPINDLE: RotatingProfile = {
  kind: 'spindle',
  tags: [
    ...commonTags(80, 15000, 'front'),
    { name: 'load', unit: '%', description: 'spindle load, % of rated torque', min: 0, max: 150 },
    modeTag('0 stopped, 1 idle, 2 finishing, 3 roughing'),
    hoursTag,
  ],
  fifthTag: 'load',
  ratedSpeed: 12000,
  ratedPowerKw: 11,
  noLoadCurrent: 5,
  speedTauSeconds: 1.5,
  thermalTauSeconds: 900,
  modes: [
    { id: 1, name: 'idle', speedFraction: 0.2, load: 0.02, dwellHours: 0.5, weight: 0.2 },
    { id: 2, name: 'finishing', speedFraction: 0.8, load: 0.25, dwellHours: 1.5, weight: 0.4 },
    { id: 3, name: 'roughing', speedFraction: 0.5, load: 0.7, dwellHours: 1.5, weight: 0.4 },
  ],
  failureModes: SPINDLE_FAILURE_MODES,
  effects: {
    bearing_wear: { ...bearingWear, vibration: 7, temperature: 25 },
    seal_leak: sealLeak,
    overheating,
    imbalance,
  },
  meanLifeHours: 250,
};

export const PROFILES: Record<RotatingKind, RotatingProfile> = { pump: PUMP, spindle: SPINDLE };
