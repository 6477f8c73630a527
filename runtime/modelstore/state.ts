import { z } from 'zod';

/**
 * <root>/<model>/state.json: which installed version runs, the ones that ran before it (for
 * rollback), and the versions refused so far (so that a poll does not pull them again). The
 * versions/ folder is the truth about what is installed; this file only points into it.
 */

/** Refused versions kept on record; the oldest are forgotten beyond this. */
export const MAX_REJECTED = 200;
/** Previously active versions kept on record, most recent first. */
export const MAX_PREVIOUS = 50;

export const STATE_SCHEMA = 'vigil.modelstore.v1';

export const Rejection = z.strictObject({
  /** A RolloutReason code, or any short word the caller chose. */
  reason: z.string().min(1),
  message: z.string().optional(),
  at: z.string(),
});
export type Rejection = z.infer<typeof Rejection>;

export const ModelState = z.strictObject({
  schema: z.literal(STATE_SCHEMA),
  active: z.string().nullable(),
  /** Versions that were active before, most recent first. */
  previous: z.array(z.string()),
  rejected: z.record(z.string(), Rejection),
  updatedAt: z.string(),
});
export type ModelState = z.infer<typeof ModelState>;

export function emptyState(): ModelState {
  return {
    schema: STATE_SCHEMA,
    active: null,
    previous: [],
    rejected: {},
    updatedAt: new Date(0).toISOString(),
  };
}

/** Keeps the record bounded over years of rollouts. */
export function trimState(s: ModelState): ModelState {
  const rejected = Object.entries(s.rejected)
    .sort(([, a], [, b]) => b.at.localeCompare(a.at))
    .slice(0, MAX_REJECTED);
  return { ...s, previous: s.previous.slice(0, MAX_PREVIOUS), rejected: Object.fromEntries(rejected) };
}
