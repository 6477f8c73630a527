/**
 * What a simulated machine looks like to the protocol servers that expose it (OPC-UA, serial,
 * Modbus, MQTT). The simulator is the outside world: nothing here imports the runtime.
 */

export type MachineKind = 'pump' | 'spindle' | 'cmapss-engine' | 'scripted';

/** How the device itself rates a value: what an OPC-UA status or a Sparkplug null would say. */
export type SimQuality = 'good' | 'uncertain' | 'bad';

export interface SimTag {
  /** Tag name as published: `temperature`, `vibration_rms`, `s7`, `cycle`. */
  name: string;
  unit: string;
  description: string;
  /** The physical range of the sensor, for register scaling and sanity. */
  min: number;
  max: number;
}

export interface TagValue {
  /** Always finite when quality is `good`; may be NaN when `bad` (the sensor gives nothing). */
  value: number;
  quality: SimQuality;
  /**
   * Why the quality is not good, in OPC-UA status code terms (`BadSensorFailure`,
   * `BadNoCommunication`, `UncertainLastUsableValue`), which every protocol maps to its own.
   */
  status?: string;
}

export interface MachineSnapshot {
  asset: string;
  /** Wall-clock ms since the epoch when the snapshot was taken: the readings' source time. */
  time: number;
  /** Simulated seconds since the machine started (accelerated). */
  simSeconds: number;
  values: Record<string, TagValue>;
}

/** Ground truth that only the simulator knows, for reports and for checking models. */
export interface MachineTruth {
  /** healthy → degrading → failed; a machine that is `failed` has stopped. */
  state: 'healthy' | 'degrading' | 'failed';
  /** Simulated seconds at which the machine fails (or failed); null when no failure is planned. */
  failureAtSimSeconds: number | null;
  /** Wall-clock ms at which it fails (or failed) at the current acceleration; null when none. */
  failureAtWallMs: number | null;
  /** Name of the failure mode (`bearing_wear`, `seal_leak`, `hpc_degradation`...), when one. */
  failureMode: string | null;
  /** For C-MAPSS engines: the replayed unit and its remaining cycles. */
  unit?: number;
  remainingCycles?: number;
}

export interface SimMachine {
  /** The asset id readings carry: `pump-1`, `engine-7`. */
  readonly asset: string;
  readonly kind: MachineKind;
  readonly tags: readonly SimTag[];
  /** The machine's state now: advances its physics to the current (accelerated) clock. */
  snapshot(): MachineSnapshot;
  truth(): MachineTruth;
}
