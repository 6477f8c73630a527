import { VigilError } from '../errors.js';
import type { AlertHysteresis } from '../model/manifest.js';

export type Transition = 'raised' | 'cleared';

export interface HysteresisState {
  active: boolean;
  /** Scored windows in a row past the threshold that would change the state. */
  streak: number;
}

/**
 * One asset's alert state: raised once when the score has been past `raise` for `consecutive`
 * scored windows in a row, cleared once when it has been back past `clear` as long. Between
 * clear and raise nothing changes, so a score hovering at the threshold cannot flap.
 */
export class Hysteresis {
  private s: HysteresisState = { active: false, streak: 0 };

  constructor(private readonly cfg: AlertHysteresis) {}

  get active(): boolean {
    return this.s.active;
  }

  /** Feeds one scored window; says when the alert is raised or cleared by it. */
  observe(score: number): Transition | undefined {
    const { direction, raise, clear, consecutive } = this.cfg;
    const past = this.s.active
      ? direction === 'above'
        ? score < clear
        : score > clear
      : direction === 'above'
        ? score >= raise
        : score <= raise;
    if (!past) {
      this.s.streak = 0;
      return undefined;
    }
    this.s.streak++;
    if (this.s.streak < consecutive) return undefined;
    this.s = { active: !this.s.active, streak: 0 };
    return this.s.active ? 'raised' : 'cleared';
  }

  /** The state, to put back with restore() when what observe() decided could not be stored. */
  state(): HysteresisState {
    return { ...this.s };
  }

  restore(state: HysteresisState): void {
    this.s = { ...state };
  }
}

/**
 * The manifest's alert settings with a pipeline's overrides: `threshold` and `alert.raise` set
 * raise (clear moves with it, keeping the manifest's band, unless `alert.clear` is given too).
 * Throws a config error when clear ends up beyond raise.
 */
export function effectiveHysteresis(
  manifest: AlertHysteresis,
  overrides: { threshold?: number | undefined; alert?: Partial<AlertHysteresis> | undefined },
  where: string,
): AlertHysteresis {
  const raise = overrides.alert?.raise ?? overrides.threshold ?? manifest.raise;
  const clear = overrides.alert?.clear ?? manifest.clear + (raise - manifest.raise);
  const consecutive = overrides.alert?.consecutive ?? manifest.consecutive;
  const cfg: AlertHysteresis = { direction: manifest.direction, raise, clear, consecutive };
  if (cfg.direction === 'above' ? clear > raise : clear < raise) {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_INVALID',
      `${where}: alert clear ${clear} is ${cfg.direction === 'above' ? 'above' : 'below'} raise ${raise}; ` +
        `this model's alert is raised ${cfg.direction === 'above' ? 'at or above' : 'at or below'} raise and clears once the score is back past clear, ` +
        `so clear must be ${cfg.direction === 'above' ? 'at most' : 'at least'} raise. Fix alert.clear (or threshold) in the pipeline config.`,
      { detail: { raise, clear, direction: cfg.direction } },
    );
  }
  return cfg;
}
