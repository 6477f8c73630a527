/**
 * Rollout states and decisions: a public contract (MQTT `<prefix>/<device>/rollout`, the status
 * API, registry tags, docs/REGISTRY.md).
 *
 *   idle ─> downloading ─> verifying ─> shadow ─> promoted ─(regression)─> rolled_back
 *                 │              │          └──> rejected
 *                 └──────────────┴─────────────> rejected
 *
 * verifying covers the package checks and then the version's acceptance tests
 * (docs/ACCEPTANCE.md); a version that fails them is rejected before its shadow.
 */
export type RolloutState =
  'idle' | 'downloading' | 'verifying' | 'shadow' | 'promoted' | 'rejected' | 'rolled_back';

/** Why a version was rejected or rolled back: stable codes for dashboards and registry tags. */
export type RolloutReason =
  | 'download_failed'
  | 'sha256_mismatch'
  | 'bad_package'
  | 'signature_missing'
  | 'signature_invalid'
  | 'load_failed'
  | 'incompatible'
  /** The version's own acceptance tests failed or could not run, or it has none and they are required. */
  | 'acceptance_failed'
  | 'errors'
  | 'nan_output'
  | 'too_slow'
  | 'disagreement'
  | 'regression'
  /** The shadow saw too few inputs (fewer than 10) to judge the version by shadowMaxSeconds. */
  | 'insufficient_samples'
  | 'manual';

/** One decision, as logged, published on MQTT and reported to the registry. */
export interface RolloutEvent {
  schema: 'vigil.rollout.v1';
  device: string;
  /** The configured model (models.<name>). */
  model: string;
  /** Registered model name and version in the registry (absent for a local package). */
  registered?: { name: string; alias: string; version: string };
  state: RolloutState;
  /** Versions as their manifests name them. */
  from?: string;
  to: string;
  reason?: RolloutReason;
  /** A sentence a person can act on. */
  message: string;
  /** Shadow or watch figures behind the decision. */
  evidence?: Record<string, number | string>;
  at: string;
}
