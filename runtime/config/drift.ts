import { z } from 'zod';

/**
 * Drift monitoring of one pipeline (docs/DRIFT.md): its live inputs and outputs compared with
 * the reference statistics in its model's manifest, over a sliding window of recent samples.
 * Per pipeline rather than per model: one model may serve two lines whose light and parts
 * differ, and each line drifts on its own. Sample counts are frames for a frame pipeline and
 * scored windows for a telemetry pipeline; the defaults differ by kind where stated.
 */
export const DriftConfig = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        "Monitor this pipeline's inputs and outputs for drift; models without reference distributions fall back as docs/DRIFT.md says",
      ),
    windowSamples: z
      .number()
      .int()
      .min(20)
      .max(100_000)
      .optional()
      .describe(
        'Recent samples the live distributions are computed over (sliding); 500 frames or 2000 windows when absent (telemetry windows overlap and machines dwell in modes for hours: shorter windows read their own swings as drift)',
      ),
    minSamples: z
      .number()
      .int()
      .min(10)
      .optional()
      .describe('Samples needed in the window before it is evaluated at all; windowSamples when absent'),
    evaluateEverySamples: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'The window is evaluated (off the pipeline path) after this many new samples; windowSamples / 5 when absent',
      ),
    psiThreshold: z
      .number()
      .positive()
      .default(0.25)
      .describe('PSI above which a feature counts as drifted (0.1 slight, 0.25 significant by convention)'),
    psiClear: z
      .number()
      .positive()
      .default(0.1)
      .describe(
        'Every PSI must be below this (and every KS statistic below its clear level) to clear a raised drift alert',
      ),
    ksAlpha: z
      .number()
      .gt(0)
      .lt(1)
      .default(0.001)
      .describe(
        "Significance level of the KS test on frame models' score distribution: the statistic past its critical value counts as drifted",
      ),
    ksClearAlpha: z
      .number()
      .gt(0)
      .lt(1)
      .default(0.1)
      .describe(
        'A raised alert clears only when the KS statistic is below the critical value at this (larger) level',
      ),
    consecutive: z
      .number()
      .int()
      .min(1)
      .default(3)
      .describe(
        'Evaluations in a row past a threshold (or all under the clear levels) before the alert is raised (or cleared)',
      ),
    outputReference: z
      .enum(['manifest', 'live'])
      .default('manifest')
      .describe(
        "Output reference: the manifest's, or the first liveReferenceSamples outputs of this pipeline (a line whose defect rate differs from the reference's)",
      ),
    liveReferenceSamples: z
      .number()
      .int()
      .min(20)
      .optional()
      .describe('Samples a reference learned live is taken from; windowSamples when absent'),
  })
  .superRefine((c, ctx) => {
    if (c.psiClear > c.psiThreshold)
      ctx.addIssue({
        code: 'custom',
        path: ['psiClear'],
        message: `must not be above psiThreshold (${c.psiThreshold}), or a raised alert could never clear below where it was raised`,
      });
    if (c.ksClearAlpha < c.ksAlpha)
      ctx.addIssue({
        code: 'custom',
        path: ['ksClearAlpha'],
        message: `must not be below ksAlpha (${c.ksAlpha}): the clear level must be at or under the raise level`,
      });
    if (c.minSamples !== undefined && c.windowSamples !== undefined && c.minSamples > c.windowSamples)
      ctx.addIssue({
        code: 'custom',
        path: ['minSamples'],
        message: `must not be above windowSamples (${c.windowSamples}): the window never holds more`,
      });
  });
export type DriftConfig = z.infer<typeof DriftConfig>;

/** Window sizes once the kind of the pipeline is known. */
export interface DriftWindow {
  windowSamples: number;
  minSamples: number;
  evaluateEverySamples: number;
  liveReferenceSamples: number;
}

export const DRIFT_DEFAULT_WINDOW = { frame: 500, window: 2000 } as const;

export function driftWindow(cfg: DriftConfig, kind: 'frame' | 'window'): DriftWindow {
  const windowSamples = cfg.windowSamples ?? DRIFT_DEFAULT_WINDOW[kind];
  return {
    windowSamples,
    minSamples: Math.min(cfg.minSamples ?? windowSamples, windowSamples),
    evaluateEverySamples: cfg.evaluateEverySamples ?? Math.max(1, Math.round(windowSamples / 5)),
    liveReferenceSamples: cfg.liveReferenceSamples ?? windowSamples,
  };
}
