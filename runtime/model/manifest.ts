import { z } from 'zod';
import { Acceptance } from '../acceptance/schema.js';

/**
 * The model package manifest (`vigil.json`): the one description of a model that moves between
 * the data scientist, the registry, the disk and an engine. An engine never guesses
 * preprocessing or output meaning; this file says it.
 */

export const DType = z.enum(['float32', 'uint8', 'int8']);
export type DType = z.infer<typeof DType>;

/** Affine quantization of a tensor: real = scale * (q - zeroPoint). */
export const Quantization = z.strictObject({
  scale: z.number().positive(),
  zeroPoint: z.number().int(),
});
export type Quantization = z.infer<typeof Quantization>;

export const TensorSpec = z.strictObject({
  name: z.string().min(1).describe('Tensor name as the model file knows it'),
  dtype: DType,
  shape: z
    .array(z.number().int().positive())
    .min(1)
    .describe('Full static shape including the batch dimension'),
  layout: z.enum(['NHWC', 'NCHW', 'NC', 'NTC']).optional(),
  quantization: Quantization.optional().describe('Required when dtype is int8 or uint8'),
});
export type TensorSpec = z.infer<typeof TensorSpec>;

export const ImagePreprocessing = z.strictObject({
  type: z.literal('image'),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  colorSpace: z.enum(['grayscale', 'rgb', 'bgr']),
  /** How the frame is fitted to width x height (sharp's fit): fill stretches, cover crops, contain pads. */
  resize: z.enum(['fill', 'cover', 'contain']).default('fill'),
  /** value = (pixel - mean[c]) / std[c], pixel in 0..255; one entry per channel. */
  normalize: z.strictObject({ mean: z.array(z.number()).min(1), std: z.array(z.number().positive()).min(1) }),
  /** Frames larger than this are refused before decoding (decompression-bomb guard). */
  maxInputPixels: z
    .number()
    .int()
    .positive()
    .default(4096 * 4096),
});
export type ImagePreprocessing = z.infer<typeof ImagePreprocessing>;

export const ClassificationPostprocessing = z.strictObject({
  type: z.literal('classification'),
  /** Output tensor holding one score per label. */
  output: z.string().min(1),
  labels: z.array(z.string().min(1)).min(2),
  /** Whether the output is already a probability distribution, or logits that need a softmax. */
  activation: z.enum(['none', 'softmax']).default('none'),
  /** The label meaning "nothing wrong"; every other label is a defect class. */
  okLabel: z.string().min(1),
  /**
   * An alert is raised when defect score = 1 - p(okLabel) reaches this threshold. Chosen on the
   * validation set when the model is built; see the model card.
   */
  threshold: z.number().min(0).max(1),
  alertKind: z
    .string()
    .regex(/^[a-z][a-z0-9_]*$/)
    .default('defect'),
});
export type ClassificationPostprocessing = z.infer<typeof ClassificationPostprocessing>;

/**
 * How telemetry readings become a model input. Readings of one asset are aligned onto a common
 * axis (steps), held for at most `holdSteps` steps, cut into sliding windows of `window` steps
 * every `stride` steps, normalised per tag, and shaped as `features` says.
 *
 * The axis is either wall-clock time resampled every `stepSeconds` (using the readings' source
 * timestamps), or a counter tag the device itself reports (`cycle` for C-MAPSS engines: one
 * step per flight; `hours` for an hour meter, with `step` 1 = one step per operating hour).
 */
export const TelemetryAxis = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('time'),
    stepSeconds: z.number().positive().describe('Resampling step, in seconds of source time'),
  }),
  z.strictObject({
    type: z.literal('counter'),
    tag: z.string().min(1).describe('Tag whose value is the axis (cycle, hours); it is not a feature'),
    step: z.number().positive().default(1).describe('One step per this much increase of the counter'),
  }),
]);
export type TelemetryAxis = z.infer<typeof TelemetryAxis>;

export const TelemetryPreprocessing = z.strictObject({
  type: z.literal('telemetry'),
  /** The feature tags, in the order of the model's feature columns. */
  tags: z.array(z.string().min(1)).min(1),
  axis: TelemetryAxis,
  /** Steps per window. */
  window: z.number().int().positive(),
  /** A window is scored every `stride` steps. */
  stride: z.number().int().positive().default(1),
  /**
   * A tag with no new reading in a step keeps its last value for at most this many steps; after
   * that the step is a gap and windows containing it are not scored (counted, never zero-filled).
   */
  holdSteps: z.number().int().min(0).default(1),
  /** value = (x - mean[i]) / std[i] per tag, in `tags` order. */
  normalize: z.strictObject({ mean: z.array(z.number()).min(1), std: z.array(z.number().positive()).min(1) }),
  /**
   * `window`: the normalised window as [1, window, tags] (NTC), oldest step first.
   * `summary`: per tag, in `tags` order, [mean, std, min, max, last, slope] of the normalised
   * window, flattened tag by tag to [1, tags * 6]. std is the population standard deviation
   * (numpy's default, ddof 0); slope is the least-squares slope per step (0 for a 1-step window).
   */
  features: z.enum(['window', 'summary']),
});
export type TelemetryPreprocessing = z.infer<typeof TelemetryPreprocessing>;

/** The statistics per tag of `summary` features, in this order. */
export const SUMMARY_FEATURES = ['mean', 'std', 'min', 'max', 'last', 'slope'] as const;
export const SUMMARY_STATS = SUMMARY_FEATURES.length;

/**
 * When a telemetry model's alert is raised and cleared, with hysteresis so that a value hovering
 * at the threshold raises it once: raised when the score crosses `raise` (going `direction`),
 * cleared only when it comes back past `clear`, each after `consecutive` scored windows in a row.
 *
 * `above`: raised when score >= raise, cleared when score < clear (clear <= raise).
 * `below`: raised when score <= raise, cleared when score > clear (clear >= raise).
 */
export const AlertHysteresis = z.strictObject({
  direction: z.enum(['above', 'below']),
  raise: z.number(),
  clear: z.number(),
  consecutive: z.number().int().min(1).default(1),
});
export type AlertHysteresis = z.infer<typeof AlertHysteresis>;

const alertKind = z.string().regex(/^[a-z][a-z0-9_]*$/);

/** Remaining useful life regression: output = RUL in axis units (cycles, hours). */
export const RulPostprocessing = z.strictObject({
  type: z.literal('rul'),
  output: z.string().min(1),
  /** RUL values are capped at this during training (piece-wise linear target); outputs are clipped to [0, cap]. */
  cap: z.number().positive(),
  unit: z.enum(['cycles', 'hours']),
  /** `failure_risk` raised when the predicted RUL falls below alert.raise (the horizon, default 30). */
  alert: AlertHysteresis,
  alertKind: alertKind.default('failure_risk'),
});
export type RulPostprocessing = z.infer<typeof RulPostprocessing>;

/** Probability that the machine fails within `horizon` axis units. */
export const FailureProbabilityPostprocessing = z.strictObject({
  type: z.literal('failure_probability'),
  output: z.string().min(1),
  /** Index of the failure probability in the output's last dimension (1 for [p(ok), p(fail)]). */
  index: z.number().int().min(0).default(0),
  horizon: z.number().positive(),
  unit: z.enum(['cycles', 'hours']),
  alert: AlertHysteresis,
  alertKind: alertKind.default('failure_risk'),
});
export type FailureProbabilityPostprocessing = z.infer<typeof FailureProbabilityPostprocessing>;

/** An anomaly score (higher = more unusual), thresholded on normal data. */
export const AnomalyPostprocessing = z.strictObject({
  type: z.literal('anomaly'),
  output: z.string().min(1),
  /** Index of the score in the output's last dimension. */
  index: z.number().int().min(0).default(0),
  /**
   * Some converters emit a score where lower is more unusual (Isolation Forest's decision
   * function); Vigil negates those so that the published score always grows with unusualness.
   */
  higherIsAnomalous: z.boolean().default(true),
  alert: AlertHysteresis,
  alertKind: alertKind.default('anomaly'),
});
export type AnomalyPostprocessing = z.infer<typeof AnomalyPostprocessing>;

/**
 * The reference distribution of one monitored quantity, computed by `vigil models reference`
 * with Vigil's own preprocessing and engine (docs/DRIFT.md). Bins are (-inf, e0], (e0, e1], ...,
 * (e_last, +inf): a value equal to an edge belongs to the bin below it.
 */
export const ReferenceDistribution = z
  .strictObject({
    name: z.string().min(1).describe('Feature (brightness, a tag name) or output (score)'),
    edges: z
      .array(z.number())
      .describe('Ascending interior bin edges (quantiles of the reference); empty: the quantity is constant'),
    proportions: z.array(z.number().min(0).max(1)).min(1).describe('Share of the reference per bin'),
    sample: z
      .array(z.number())
      .max(1000)
      .optional()
      .describe('Ascending evenly spaced quantiles of the reference, for the two-sample KS test'),
    count: z.number().int().positive().describe('Reference values the distribution was computed from'),
    mean: z.number(),
    std: z.number().min(0),
  })
  .superRefine((d, ctx) => {
    if (d.proportions.length !== d.edges.length + 1)
      ctx.addIssue({
        code: 'custom',
        path: ['proportions'],
        message: `${d.edges.length + 1} proportions expected for ${d.edges.length} edges, got ${d.proportions.length}`,
      });
    if (d.edges.some((e, i) => i > 0 && !(e > d.edges[i - 1]!)))
      ctx.addIssue({ code: 'custom', path: ['edges'], message: 'edges must be strictly ascending' });
    const total = d.proportions.reduce((a, b) => a + b, 0);
    if (Math.abs(total - 1) > 1e-3)
      ctx.addIssue({ code: 'custom', path: ['proportions'], message: `must sum to 1, sum to ${total}` });
  });
export type ReferenceDistribution = z.infer<typeof ReferenceDistribution>;

export const ReferenceStats = z
  .looseObject({
    /** Statistics of the preprocessed input on the training set, for drift monitoring. */
    inputMean: z.array(z.number()).optional(),
    inputStd: z.array(z.number()).optional(),
    /** Which per-sample input features `features` holds (runtime/drift/features.ts). */
    featureSet: z.string().min(1).optional(),
    /** Reference distribution of each monitored input feature. */
    features: z.array(ReferenceDistribution).optional(),
    /** Reference distribution of the outputs: the score, and for classifiers the predicted labels. */
    output: z
      .strictObject({
        score: ReferenceDistribution.optional(),
        classes: z
          .strictObject({
            labels: z.array(z.string().min(1)).min(2),
            proportions: z.array(z.number().min(0).max(1)).min(2),
            count: z.number().int().positive(),
          })
          .refine((c) => c.labels.length === c.proportions.length, 'one proportion per label')
          .optional(),
      })
      .optional(),
    /** Where the reference data came from, for the model card and the drift alert's reader. */
    source: z
      .strictObject({
        data: z.string().min(1).describe('What the reference samples were, and how they were made'),
        samples: z.number().int().positive(),
        builtAt: z.string().optional(),
        builder: z.string().optional(),
      })
      .optional(),
  })
  .describe('Reference statistics of the inputs and outputs, for drift monitoring');

export const Manifest = z.strictObject({
  schemaVersion: z.literal(1),
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dot, dash, underscore'),
  version: z.string().min(1),
  description: z.string().optional(),
  format: z.enum(['onnx', 'tflite']),
  /** The model file, relative to the package folder. */
  file: z.string().min(1),
  inputs: z.array(TensorSpec).length(1, 'Vigil packages have exactly one input tensor'),
  outputs: z.array(TensorSpec).min(1),
  preprocessing: z.discriminatedUnion('type', [ImagePreprocessing, TelemetryPreprocessing]),
  postprocessing: z.discriminatedUnion('type', [
    ClassificationPostprocessing,
    RulPostprocessing,
    FailureProbabilityPostprocessing,
    AnomalyPostprocessing,
  ]),
  referenceStats: ReferenceStats.optional(),
  /** Acceptance tests: a labelled holdout and behaviour checks (runtime/acceptance/, docs/ACCEPTANCE.md). */
  acceptance: Acceptance.optional(),
  /** Free-form build information and metrics, shown by `vigil models list`. */
  metadata: z.record(z.string(), z.unknown()).optional(),
  /** sha256 (hex) of every file in the package except vigil.json and its signature. */
  files: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/, 'sha256 as 64 lower-case hex digits')),
});
export type Manifest = z.infer<typeof Manifest>;
export type TelemetryPostprocessing =
  RulPostprocessing | FailureProbabilityPostprocessing | AnomalyPostprocessing;

/** A manifest of an image model: what the frame pipeline runs. */
export type ImageManifest = Manifest & {
  preprocessing: ImagePreprocessing;
  postprocessing: ClassificationPostprocessing;
};
/** A manifest of a telemetry model: what the telemetry pipeline runs. */
export type TelemetryManifest = Manifest & {
  preprocessing: TelemetryPreprocessing;
  postprocessing: TelemetryPostprocessing;
};

export function isImageManifest(m: Manifest): m is ImageManifest {
  return m.preprocessing.type === 'image' && m.postprocessing.type === 'classification';
}

export function isTelemetryManifest(m: Manifest): m is TelemetryManifest {
  return m.preprocessing.type === 'telemetry' && m.postprocessing.type !== 'classification';
}
