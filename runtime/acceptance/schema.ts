import { z } from 'zod';

/**
 * The `acceptance` section of a model package's vigil.json (docs/ACCEPTANCE.md): a small labelled
 * holdout set that travels with the model, and the behaviour the model declares it has on it.
 * `vigil models test` and the rollout controller run these checks through Vigil's own
 * preprocessing and engine before a version may serve.
 *
 * Only the format is checked here; whether a check fits the model (a shuffle of a tag the model
 * reads, brightness on an image model) is checked with the rest of the manifest
 * (runtime/model/package.ts, checkAcceptance).
 */

const share = z.number().min(0).max(1);
const packagePath = z
  .string()
  .min(1)
  .describe('A file of the package, relative to its folder, listed in files with its sha256');

/** Images: a labels.csv (columns file,label) beside PNG or JPEG frames, all in the package. */
export const ImageHoldout = z.strictObject({
  format: z.literal('images'),
  labels: packagePath.describe(
    'CSV with a header `file,label`: one frame per row, the file relative to the CSV, the label one of postprocessing.labels',
  ),
  description: z.string().optional().describe('Where the frames came from (for the report)'),
});

/** Telemetry: a JSON file of raw rows per sample (runtime/acceptance/holdout.ts, TelemetryHoldoutFile). */
export const TelemetryHoldout = z.strictObject({
  format: z.literal('telemetry'),
  file: packagePath.describe(
    'JSON file { columns, samples: [{ id, label, rows }] }: raw tag values per step, oldest first',
  ),
  description: z.string().optional().describe('Where the samples came from (for the report)'),
});

export const Holdout = z.discriminatedUnion('format', [ImageHoldout, TelemetryHoldout], {
  error: (issue) =>
    issue.code === 'invalid_union'
      ? "format must be 'images' (a labels.csv) or 'telemetry' (a JSON file)"
      : undefined,
});
export type Holdout = z.infer<typeof Holdout>;

export const OutputChecks = z
  .strictObject({
    shape: z
      .boolean()
      .default(true)
      .describe('Every output the engine returns has the shape vigil.json declares for it'),
    probabilities: z
      .union([
        z.literal(true),
        z.strictObject({
          tolerance: z
            .number()
            .positive()
            .max(0.5)
            .default(1e-3)
            .describe('How far from 1 the sum may be (an int8 output rounds each value to its scale)'),
        }),
      ])
      .optional()
      .describe(
        'The values postprocessing reads (a classifier after its activation; the last dimension of a failure_probability output) are each in [0, 1] and sum to 1 within tolerance (default 1e-3)',
      ),
    range: z
      .strictObject({
        min: z.number().optional().describe('Lowest allowed raw output value'),
        max: z.number().optional().describe('Highest allowed raw output value'),
      })
      .refine((r) => r.min !== undefined || r.max !== undefined, 'give min, max or both')
      .refine(
        (r) => r.min === undefined || r.max === undefined || r.min <= r.max,
        'min must not be above max',
      )
      .optional()
      .describe(
        'Bounds on the raw value postprocessing reads, before Vigil clips it (a RUL >= 0, an anomaly score in [-0.5, 0.5])',
      ),
  })
  .describe('Output shape and range on every holdout sample');

const agreement = share.default(1).describe('Share of holdout samples that must pass (1: every one)');

export const BrightnessInvariance = z.strictObject({
  kind: z.literal('brightness'),
  delta: z
    .number()
    .positive()
    .max(1)
    .describe('Added to and subtracted from every pixel, as a share of full scale (0.1 = 25.5 of 255)'),
  minAgreement: agreement,
});

export const ShiftInvariance = z.strictObject({
  kind: z.literal('shift'),
  pixels: z
    .number()
    .int()
    .positive()
    .max(64)
    .describe('The frame moves this many pixels left, right, up and down (edges repeated)'),
  minAgreement: agreement,
});

export const ShuffleInvariance = z.strictObject({
  kind: z.literal('shuffle'),
  tag: z.string().min(1).describe('A tag the model should not depend on'),
  tolerance: z
    .number()
    .min(0)
    .describe('Largest allowed change of the published score when the tag is shuffled'),
  seed: z.number().int().min(0).default(1).describe('Seed of the permutation'),
  minAgreement: agreement,
});

export const Invariance = z.discriminatedUnion(
  'kind',
  [BrightnessInvariance, ShiftInvariance, ShuffleInvariance],
  {
    error: (issue) =>
      issue.code === 'invalid_union'
        ? "kind must be 'brightness' or 'shift' (image models) or 'shuffle' (telemetry models)"
        : undefined,
  },
);
export type Invariance = z.infer<typeof Invariance>;

export const Monotonic = z.strictObject({
  tag: z.string().min(1).describe('The tag raised along the path'),
  direction: z
    .enum(['increasing', 'decreasing'])
    .describe('How the published score must move as the tag rises (RUL: decreasing for a wear signal)'),
  by: z
    .number()
    .positive()
    .describe("How far the tag is raised in all, in the tag's own units, at every step of the window"),
  profile: z
    .enum(['level', 'trend'])
    .default('level')
    .describe(
      "level: every step of the window raised by the same amount; trend: raised from 0 at the window's oldest step to the amount at its newest (a rising signal)",
    ),
  steps: z.number().int().min(1).max(100).default(5).describe('Points along the path after the start'),
  tolerance: z
    .number()
    .min(0)
    .default(0)
    .describe('Largest allowed move the wrong way between two points of the path'),
  minAgreement: agreement,
});
export type Monotonic = z.infer<typeof Monotonic>;

const higherIsBetter = ['accuracy', 'precision', 'recall', 'f1', 'auc'] as const;
const lowerIsBetter = ['mae', 'rmse'] as const;
export type HigherIsBetter = (typeof higherIsBetter)[number];
export type LowerIsBetter = (typeof lowerIsBetter)[number];

/** Rejects the other family's metric names with a sentence that says where they belong. */
function metricsObject<K extends string>(
  keys: readonly K[],
  wrong: readonly string[],
  hint: string,
  value: z.ZodNumber,
) {
  const shape = Object.fromEntries(keys.map((k) => [k, value.optional()])) as Record<
    K,
    z.ZodOptional<z.ZodNumber>
  >;
  return z.looseObject(shape).superRefine((o, ctx) => {
    for (const key of Object.keys(o)) {
      if ((keys as readonly string[]).includes(key)) continue;
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message: wrong.includes(key)
          ? hint.replace('%s', key)
          : `unknown metric '${key}' (known: ${keys.join(', ')})`,
      });
    }
  });
}

export const MinMetrics = metricsObject(
  higherIsBetter,
  lowerIsBetter,
  '%s is an error (lower is better): declare its ceiling under maxMetrics',
  share,
).describe(
  'Floors on the holdout: accuracy, precision, recall, f1, auc (0..1). precision/recall/f1 are of the alert decision',
);

export const MaxMetrics = metricsObject(
  lowerIsBetter,
  higherIsBetter,
  '%s is a score (higher is better): declare its floor under minMetrics',
  z.number().min(0),
).describe('Ceilings on the holdout: mae, rmse (RUL models, in the output unit)');

export const AcceptanceChecks = z
  .strictObject({
    outputs: OutputChecks.optional(),
    invariance: z.array(Invariance).optional(),
    monotonic: z.array(Monotonic).optional(),
    minMetrics: MinMetrics.optional(),
    maxMetrics: MaxMetrics.optional(),
  })
  .refine(
    (c) =>
      c.outputs !== undefined ||
      (c.invariance?.length ?? 0) > 0 ||
      (c.monotonic?.length ?? 0) > 0 ||
      Object.keys(c.minMetrics ?? {}).length > 0 ||
      Object.keys(c.maxMetrics ?? {}).length > 0,
    'declare at least one check (outputs, invariance, monotonic, minMetrics or maxMetrics)',
  );
export type AcceptanceChecks = z.infer<typeof AcceptanceChecks>;

export const Acceptance = z
  .strictObject({
    holdout: Holdout,
    checks: AcceptanceChecks,
  })
  .describe('Acceptance tests: a labelled holdout and the behaviour checks run on it (docs/ACCEPTANCE.md)');
export type Acceptance = z.infer<typeof Acceptance>;
