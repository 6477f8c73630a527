import { z } from 'zod';

/**
 * Pieces every telemetry source's config shares (OPC-UA, serial, Modbus, MQTT, Sparkplug B), so
 * that assets, tags, plausible ranges and reconnect back-off read the same everywhere.
 */

export const AssetName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/,
    'an asset id: letters, digits, dot, colon, dash and underscore, starting with a letter or digit',
  );

/** Tag names come from devices (Sparkplug metric names contain '/' and spaces), so stay permissive. */
export const TagName = z
  .string()
  .min(1)
  .max(200)
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  .regex(/^[^\u0000-\u001f#+]+$/, 'no control characters and no MQTT wildcards (# +)');

export const TagLimits = z
  .record(
    TagName,
    z
      .strictObject({
        min: z.number().optional().describe('Smallest plausible value'),
        max: z.number().optional().describe('Largest plausible value'),
      })
      .refine((l) => l.min === undefined || l.max === undefined || l.min <= l.max, {
        message: 'min must not be greater than max',
      })
      .describe('The plausible range of one tag'),
  )
  .default({})
  .describe(
    'Plausible range per tag (by tag name, for every asset of this source); readings outside are refused as out_of_range and counted',
  );

export const Reconnect = z
  .strictObject({
    initialDelayMs: z.number().int().min(10).default(500).describe('First delay after a lost connection'),
    maxDelayMs: z
      .number()
      .int()
      .min(100)
      .default(30_000)
      .describe('The delay doubles per failed attempt up to this, with jitter'),
  })
  .default({ initialDelayMs: 500, maxDelayMs: 30_000 })
  .describe('Back-off between reconnect attempts');

export const TelemetryConfig = z.strictObject({
  maxClockSkewSeconds: z
    .number()
    .min(0)
    .default(300)
    .describe('Source timestamps further in the future than this are refused (bad_timestamp)'),
  maxAgeSeconds: z
    .number()
    .positive()
    .default(7 * 24 * 3600)
    .describe('Source timestamps older than this are refused (bad_timestamp)'),
  batchSize: z
    .number()
    .int()
    .min(1)
    .default(1000)
    .describe('Readings written to SQLite in one transaction at most'),
  flushIntervalMs: z
    .number()
    .int()
    .min(1)
    .default(100)
    .describe('Accepted readings are written at least this often'),
});
export type TelemetryConfig = z.infer<typeof TelemetryConfig>;
export const TELEMETRY_DEFAULTS: TelemetryConfig = TelemetryConfig.parse({});
