import { VigilError } from '../errors.js';
import type { TensorMap } from '../engines/engine.js';
import type { ClassificationPostprocessing } from '../model/manifest.js';

export interface Classification {
  label: string;
  confidence: number;
  /** 1 - p(okLabel): how likely the frame shows any defect. */
  score: number;
  scores: Record<string, number>;
}

/** Reads a classifier's output as the manifest describes it. Non-finite outputs are an error. */
export function classify(outputs: TensorMap, pp: ClassificationPostprocessing): Classification {
  const out = outputs[pp.output];
  if (!out) throw new VigilError('VIGIL_ERR_INFERENCE', `model returned no output named '${pp.output}'`);
  const n = pp.labels.length;
  if (out.data.length < n) {
    throw new VigilError(
      'VIGIL_ERR_INFERENCE',
      `output '${pp.output}' has ${out.data.length} values, expected ${n} labels`,
    );
  }
  let probs = Array.from(out.data.subarray(0, n), Number);
  if (probs.some((p) => !Number.isFinite(p))) {
    throw new VigilError('VIGIL_ERR_INFERENCE', `output '${pp.output}' contains NaN or infinite values`);
  }
  if (pp.activation === 'softmax') {
    const max = Math.max(...probs);
    const exps = probs.map((p) => Math.exp(p - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    probs = exps.map((e) => e / sum);
  }
  let best = 0;
  for (let i = 1; i < n; i++) if (probs[i]! > probs[best]!) best = i;
  const scores: Record<string, number> = {};
  pp.labels.forEach((l, i) => (scores[l] = probs[i]!));
  const okIndex = pp.labels.indexOf(pp.okLabel);
  const score = okIndex < 0 ? 1 : Math.min(1, Math.max(0, 1 - probs[okIndex]!));
  return { label: pp.labels[best]!, confidence: probs[best]!, score, scores };
}
