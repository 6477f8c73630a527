import { z } from 'zod';

/**
 * The model registry (MLflow-compatible, REST) that models follow for over-the-air rollout, and
 * the on-disk model store. docs/REGISTRY.md describes the flow from an ML engineer's alias to a
 * promoted version on the gateway.
 */
export const RegistryConfig = z.strictObject({
  url: z
    .string()
    .regex(/^https?:\/\/[^/?#]+/, 'an http(s) URL such as https://registry.plant.example:5000')
    .describe(
      'Base URL of the MLflow tracking server (it must serve artifacts: mlflow server --serve-artifacts)',
    ),
  username: z.string().optional().describe('User name for HTTP basic auth (MLflow basic-auth app)'),
  passwordFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      'File holding the password for username (white space around it trimmed), relative to the config file; used before passwordEnv',
    ),
  passwordEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
    .default('MLFLOW_TRACKING_PASSWORD')
    .describe('Environment variable holding the password for username (when passwordFile is not set)'),
  tokenFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      'File holding a bearer token (white space around it trimmed), relative to the config file; used when no username is set, before tokenEnv',
    ),
  tokenEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
    .default('MLFLOW_TRACKING_TOKEN')
    .describe(
      'Environment variable holding a bearer token (used when it is set, no username is and tokenFile is not set)',
    ),
  tls: z
    .strictObject({
      ca: z.string().optional().describe('PEM file of the CA that signed the registry certificate'),
      rejectUnauthorized: z
        .boolean()
        .default(true)
        .describe('Refuse registries whose certificate does not verify'),
    })
    .optional()
    .describe('TLS settings for https:// URLs'),
  pollIntervalSeconds: z
    .number()
    .min(1)
    .default(300)
    .describe(
      'How often each followed alias is checked; each poll waits a random 0–20 % longer so that a fleet spreads out',
    ),
  requestTimeoutMs: z
    .number()
    .int()
    .min(100)
    .default(15_000)
    .describe('One registry request may take this long'),
  backoff: z
    .strictObject({
      initialDelayMs: z
        .number()
        .int()
        .min(10)
        .default(5_000)
        .describe('First retry delay after a failed poll'),
      maxDelayMs: z
        .number()
        .int()
        .min(100)
        .default(900_000)
        .describe('The delay doubles per failure up to this, with jitter'),
    })
    .prefault({})
    .describe('Back-off between polls while the registry fails'),
  storeDir: z
    .string()
    .min(1)
    .default('vigil-data/models')
    .describe('Where downloaded versions are installed, relative to the config file'),
  keepVersions: z
    .number()
    .int()
    .min(2)
    .default(3)
    .describe('Installed versions kept per model (the active one and those before it, for instant rollback)'),
  signatures: z
    .strictObject({
      policy: z
        .enum(['off', 'verify', 'require'])
        .default('verify')
        .describe(
          'off: ignore signatures; verify: check a signature when the package has one; require: refuse a package without a valid one',
        ),
      publicKeys: z
        .array(z.string())
        .default([])
        .describe('PEM files of the ed25519 public keys whose signatures are accepted'),
    })
    .prefault({})
    .refine((sig) => sig.policy !== 'require' || sig.publicKeys.length > 0, {
      message: 'policy require needs at least one public key in publicKeys, or no package could ever pass',
      path: ['publicKeys'],
    })
    .describe('ed25519 signatures of the manifest (vigil.json.sig)'),
  reportTags: z
    .boolean()
    .default(true)
    .describe('Write rollout decisions back to the registry as model version tags (needs EDIT permission)'),
});
export type RegistryConfig = z.infer<typeof RegistryConfig>;

/** Per model: which registered model and alias it follows. */
export const ModelRegistrySource = z.strictObject({
  name: z.string().min(1).describe('Registered model name in the registry'),
  alias: z
    .string()
    .regex(/^[\w-]+$/, 'an MLflow alias: letters, digits, _ and -')
    .default('champion')
    .describe('Alias followed by this gateway, e.g. champion, challenger, production'),
  aliasByGroup: z
    .record(z.string(), z.string().regex(/^[\w-]+$/, 'an MLflow alias'))
    .default({})
    .describe('Alias per device group (device.group), overriding alias: e.g. { canary-line: challenger }'),
});
export type ModelRegistrySource = z.infer<typeof ModelRegistrySource>;

/** Per model: how a new version is tried before it replaces the current one. */
export const RolloutPolicy = z.strictObject({
  shadowSamples: z
    .number()
    .int()
    .min(1)
    .default(200)
    .describe('Live inputs the new version must score in shadow (results stored and compared, not acted on)'),
  shadowMaxSeconds: z
    .number()
    .positive()
    .default(3_600)
    .describe(
      'A shadow that has not seen shadowSamples inputs by then is decided on what it has (at least 10), else rejected',
    ),
  minAgreement: z
    .number()
    .min(0)
    .max(1)
    .default(0.95)
    .describe(
      'Share of inputs on which the new version must agree with the current one (same label; telemetry: same alert decision)',
    ),
  maxScoreShift: z
    .number()
    .min(0)
    .default(0.2)
    .describe('Largest allowed change of the mean score between the versions'),
  maxLatencyMs: z
    .number()
    .positive()
    .optional()
    .describe('p95 inference time the new version must stay under; default the pipeline budget'),
  watchSamples: z
    .number()
    .int()
    .min(1)
    .default(500)
    .describe('After promotion, inputs watched for a regression before the version counts as settled'),
  maxErrorRate: z
    .number()
    .min(0)
    .max(1)
    .default(0.01)
    .describe('Share of failed inferences (errors, NaN) that rolls a promoted version back'),
  maxBudgetViolationRate: z
    .number()
    .min(0)
    .max(1)
    .default(0.05)
    .describe('Share of inputs over the pipeline budget that rolls a promoted version back'),
  requireAcceptance: z
    .boolean()
    .default(false)
    .describe(
      'Refuse a new version whose package declares no acceptance tests (docs/ACCEPTANCE.md); when false, such a version is tried in shadow with a warning',
    ),
  acceptanceTimeoutSeconds: z
    .number()
    .positive()
    .max(86_400)
    .default(300)
    .describe(
      "Longest a new version's acceptance tests may run (they hold up promotes and rollbacks of this model meanwhile); a run that takes longer is stopped before its next inference and the version rejected as acceptance_failed (outcome error)",
    ),
});
export type RolloutPolicy = z.infer<typeof RolloutPolicy>;
