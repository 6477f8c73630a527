import type { TensorMap } from '../engines/engine.js';
import { VigilError } from '../errors.js';
import type { TelemetryPostprocessing } from '../model/manifest.js';

/** The label a telemetry result and its alerts carry, by postprocessing type. */
export const TELEMETRY_LABELS = { rul: 'rul', failure_probability: 'risk', anomaly: 'anomaly' } as const;
export type TelemetryLabel = (typeof TELEMETRY_LABELS)[keyof typeof TELEMETRY_LABELS];

export interface TelemetryScore {
  label: TelemetryLabel;
  /** The value compared with alert.raise and alert.clear. */
  score: number;
  /** The raw output values read, by output name (`name[i]` for outputs with several values). */
  outputs: Record<string, number>;
}

/** Raw values kept per output in a result: enough for a small head, bounded for a large one. */
const MAX_RAW_VALUES = 16;

/**
 * Reads a telemetry model's output as its manifest says: a RUL clipped to [0, cap], a failure
 * probability clipped to [0, 1], or an anomaly score turned so that higher is more unusual.
 * Non-finite outputs are an error.
 */
export function scoreTelemetry(outputs: TensorMap, pp: TelemetryPostprocessing): TelemetryScore {
  const out = outputs[pp.output];
  if (!out) throw new VigilError('VIGIL_ERR_INFERENCE', `model returned no output named '${pp.output}'`);
  const index = pp.type === 'rul' ? 0 : pp.index;
  if (out.data.length <= index) {
    throw new VigilError(
      'VIGIL_ERR_INFERENCE',
      `output '${pp.output}' has ${out.data.length} values; postprocessing reads value ${index}`,
    );
  }
  const raw = Number(out.data[index]);
  if (!Number.isFinite(raw)) {
    throw new VigilError('VIGIL_ERR_INFERENCE', `output '${pp.output}' is ${raw}, not a finite number`);
  }
  const kept: Record<string, number> = {};
  for (const [name, t] of Object.entries(outputs)) {
    const n = Math.min(t.data.length, MAX_RAW_VALUES);
    for (let i = 0; i < n; i++) kept[t.data.length === 1 ? name : `${name}[${i}]`] = Number(t.data[i]);
  }
  let score: number;
  switch (pp.type) {
    case 'rul':
      score = Math.min(pp.cap, Math.max(0, raw));
      break;
    case 'failure_probability':
      score = Math.min(1, Math.max(0, raw));
      break;
    case 'anomaly':
      score = pp.higherIsAnomalous ? raw : -raw;
      break;
  }
  return { label: TELEMETRY_LABELS[pp.type], score, outputs: kept };
}
