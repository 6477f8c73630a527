/**
 * Simulated time. Machines wear out over weeks; a demo or a test has minutes. The clock maps wall
 * time to simulated time with an acceleration factor: 3600 means one simulated hour per wall
 * second. `now` is injectable so that tests and the dataset export drive time themselves.
 */
export interface SimClockOptions {
  /** Simulated seconds per wall-clock second (1 = real time). */
  acceleration: number;
  /** Wall clock in ms since the epoch; Date.now by default. */
  now?: () => number;
  /** Wall-clock ms at which simulated time 0 is; now() by default. */
  startWallMs?: number;
}

export class SimClock {
  readonly now: () => number;
  private accel: number;
  /** Wall time and simulated time of the last re-anchoring (start or acceleration change). */
  private anchorWallMs: number;
  private anchorSimSeconds = 0;
  private startMs: number;

  constructor(opts: SimClockOptions) {
    if (!(opts.acceleration > 0) || !Number.isFinite(opts.acceleration))
      throw new RangeError(`SimClock: acceleration must be a positive number, got ${opts.acceleration}`);
    this.now = opts.now ?? Date.now;
    this.accel = opts.acceleration;
    this.startMs = opts.startWallMs ?? this.now();
    this.anchorWallMs = this.startMs;
  }

  get acceleration(): number {
    return this.accel;
  }

  /** Wall-clock ms at which the scenario (simulated time 0) started. */
  get startWallMs(): number {
    return this.startMs;
  }

  /**
   * Restarts simulated time at 0 from `atWallMs` (now by default): for when the protocol servers
   * took a while to come up after the machines were built. Call it before the first snapshot.
   */
  start(atWallMs: number = this.now()): void {
    this.startMs = atWallMs;
    this.anchorWallMs = atWallMs;
    this.anchorSimSeconds = 0;
  }

  /** Changes the acceleration from now on; simulated time stays continuous. */
  setAcceleration(acceleration: number): void {
    if (!(acceleration > 0) || !Number.isFinite(acceleration))
      throw new RangeError(`SimClock: acceleration must be a positive number, got ${acceleration}`);
    const now = this.now();
    this.anchorSimSeconds = this.simSecondsAt(now);
    this.anchorWallMs = now;
    this.accel = acceleration;
  }

  /** Simulated seconds since the start, now. Never negative. */
  simSeconds(): number {
    return this.simSecondsAt(this.now());
  }

  /** Wall-clock seconds since the start (the time base of scenario fault schedules). */
  wallSeconds(): number {
    return (this.now() - this.startMs) / 1000;
  }

  /** Simulated seconds at a wall-clock time (ms since the epoch). */
  simSecondsAt(wallMs: number): number {
    return Math.max(0, this.anchorSimSeconds + ((wallMs - this.anchorWallMs) / 1000) * this.accel);
  }

  /** Wall-clock ms at which a simulated time is (or was) reached at the current acceleration. */
  wallMsAt(simSeconds: number): number {
    return this.anchorWallMs + ((simSeconds - this.anchorSimSeconds) / this.accel) * 1000;
  }
}

/** A wall clock that only moves when told: for tests and for running models without waiting. */
export class ManualTime {
  constructor(private ms = 0) {}
  readonly now = (): number => this.ms;
  set(ms: number): void {
    this.ms = ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}
