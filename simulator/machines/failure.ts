import type { Rng } from '../camera/rng.js';
import { gammaOnePlus, weibull } from './noise.js';

/**
 * Planned failures of the rotating machines: which failure mode, when, and how the damage grows
 * on the way there. The failure time is planned first and the damage curve is fitted to it, so
 * that the ground truth (truth().failureAtSimSeconds) is exact and a model's prediction can be
 * scored against it.
 */

export const PUMP_FAILURE_MODES = ['bearing_wear', 'seal_leak', 'overheating'] as const;
export const SPINDLE_FAILURE_MODES = ['bearing_wear', 'overheating', 'imbalance'] as const;
export const FAILURE_MODES = ['bearing_wear', 'seal_leak', 'overheating', 'imbalance'] as const;
export type FailureModeName = (typeof FAILURE_MODES)[number];

export interface FailurePlan {
  /** A failure mode, or `random` to draw one per run from the machine's modes. */
  mode: FailureModeName | 'random';
  /** Simulated hours from the machine's start to its first failure; drawn from the seed when absent. */
  atHours?: number | undefined;
  /** Mean life (simulated hours) of the Weibull draw for runs whose failure time is not given. */
  meanLifeHours: number;
  /** How long before the failure the damage starts; about 40 % of the life when absent. */
  degradationHours?: number | undefined;
  /** Repair time after a failure, after which a new run starts; null: the machine stays failed. */
  repairHours: number | null;
}

/** One run of a machine, from (re)start to failure. All times in simulated seconds. */
export interface PlannedRun {
  index: number;
  startSimSeconds: number;
  onsetSimSeconds: number;
  failureAtSimSeconds: number;
  mode: FailureModeName;
}

/** Weibull shape of the life draw: wear-out failures, rising hazard. */
const LIFE_SHAPE = 3;

/**
 * Normalised damage 0..1 over the degradation window (tau 0..1): the crack length of the Paris
 * law da/dN = C·ΔK^m with ΔK ∝ √a and m = 3, which grows slowly and then runs away, scaled so that
 * it starts at 0 and reaches 1 (the critical size) exactly at the failure time.
 */
export function parisDamage(tau: number, m = 3, initialRatio = 0.05): number {
  if (tau <= 0) return 0;
  if (tau >= 1) return 1;
  const e = (m - 2) / 2;
  const r = Math.pow(initialRatio, e);
  const a = initialRatio * Math.pow(1 - tau * (1 - r), -1 / e);
  return (a - initialRatio) / (1 - initialRatio);
}

/** Plans run `index` starting at `startSimSeconds`; draws from `rng` in a fixed order. */
export function planRun(
  plan: FailurePlan,
  modes: readonly FailureModeName[],
  rng: Rng,
  index: number,
  startSimSeconds: number,
): PlannedRun {
  // Always draw the same number of values, whether or not they are used, so that giving one
  // setting explicitly does not change the draws of the others.
  const uLife = rng.next();
  const uLead = rng.next();
  const uMode = rng.next();
  const scale = plan.meanLifeHours / gammaOnePlus(1 / LIFE_SHAPE);
  const drawn = weibull(uLife, LIFE_SHAPE, scale);
  const lifeHours =
    index === 0 && plan.atHours !== undefined
      ? plan.atHours
      : Math.min(Math.max(drawn, 0.25 * plan.meanLifeHours), 3 * plan.meanLifeHours);
  const leadHours = Math.min(plan.degradationHours ?? lifeHours * (0.3 + 0.2 * uLead), 0.9 * lifeHours);
  const mode = plan.mode === 'random' ? modes[Math.floor(uMode * modes.length)]! : plan.mode;
  const failureAt = startSimSeconds + lifeHours * 3600;
  return {
    index,
    startSimSeconds,
    onsetSimSeconds: failureAt - leadHours * 3600,
    failureAtSimSeconds: failureAt,
    mode,
  };
}
