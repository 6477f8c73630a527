import { z } from 'zod';
import { AssetName, TagName } from '../config/sources/telemetry.js';

/**
 * The config of data expectations (docs/DATA-QUALITY.md): what a QA engineer declares about the
 * data a source delivers, per tag for telemetry, per frame for cameras, per payload for MQTT JSON.
 * Unlike `limits` (a physically impossible value, refused and never stored), a broken expectation
 * is data out of spec: the reading is stored with its `flags`, counted, alerted on with
 * hysteresis, and each pipeline's `dataQuality.policy` decides what its model sees of it.
 */

export const ExpectedRange = z
  .strictObject({
    min: z.number().optional().describe('Smallest value in spec'),
    max: z.number().optional().describe('Largest value in spec'),
  })
  .refine((r) => r.min !== undefined || r.max !== undefined, { message: 'give min, max or both' })
  .refine((r) => r.min === undefined || r.max === undefined || r.min <= r.max, {
    message: 'min must not be greater than max',
  });

export const TagExpectation = z
  .strictObject({
    range: ExpectedRange.optional().describe(
      'Values outside are flagged `range` (stored and flagged; `limits` is for values that are physically impossible, which are refused)',
    ),
    notNull: z
      .boolean()
      .optional()
      .describe('A reading without a value (a device reporting a bad or empty value) is flagged `not_null`'),
    maxRateOfChange: z
      .number()
      .positive()
      .optional()
      .describe(
        'Largest change per second (absolute, in the tag’s units) from the previous value of the same asset, by source time; faster is flagged `rate_of_change`',
      ),
    staleAfterSeconds: z
      .number()
      .positive()
      .optional()
      .describe(
        'An asset whose tag has sent no reading for this long raises `stale` (checked every second; cleared by the next reading)',
      ),
    allowedValues: z
      .array(z.number().describe('A value in spec'))
      .min(1)
      .max(1000)
      .optional()
      .describe('The only values in spec (state codes, modes); any other value is flagged `allowed_values`'),
  })
  .refine((e) => Object.values(e).some((v) => v !== undefined && v !== false), {
    message:
      'declare at least one expectation (range, notNull, maxRateOfChange, staleAfterSeconds, allowedValues)',
  })
  .describe('What one tag is expected to deliver');
export type TagExpectation = z.infer<typeof TagExpectation>;

export const DataQualityAlertConfig = z
  .strictObject({
    raiseAfter: z
      .number()
      .int()
      .min(1)
      .default(3)
      .describe(
        'Violations of one rule by one asset and tag within windowSeconds before a data_quality alert is raised (stale and schema_drift raise at once)',
      ),
    windowSeconds: z.number().positive().default(60).describe('The window raiseAfter counts violations in'),
    clearAfterReadings: z
      .number()
      .int()
      .min(1)
      .default(10)
      .describe(
        'A raised alert clears after this many readings (messages, frames) in a row that meet the rule',
      ),
    clearAfterSeconds: z
      .number()
      .positive()
      .default(300)
      .describe('…or after this long without a violation of the rule, whichever comes first'),
  })
  .describe('Hysteresis of the data_quality alerts of this source');
export type DataQualityAlertConfig = z.infer<typeof DataQualityAlertConfig>;
export const DATA_QUALITY_ALERT_DEFAULTS: DataQualityAlertConfig = DataQualityAlertConfig.parse({});

/** A dotted path into a JSON payload, as subscriptions write them (`data.temp`, `values.0`). */
const PayloadPath = z
  .string()
  .regex(/^[^.\s][^.]*(\.[^.]+)*$/, 'a dotted path into the payload such as data.temp or values.0');

export const PayloadExpectations = z
  .strictObject({
    requiredFields: z
      .array(PayloadPath.describe('A dotted path that must be in every payload'))
      .max(200)
      .default([])
      .describe(
        'Fields every payload must have (dotted paths); a message without one is reported as `payload_fields` and its readings are still taken',
      ),
    schemaDrift: z
      .boolean()
      .default(true)
      .describe(
        'Track the fields of the payloads and their JSON types per subscription and asset; a change (fields added, removed or of another type) is reported as `schema_drift` with the field names',
      ),
  })
  .describe('What the JSON payloads of this source are expected to look like');
export type PayloadExpectations = z.infer<typeof PayloadExpectations>;

const telemetryFields = {
  tags: z
    .record(TagName, TagExpectation)
    .default({})
    .describe('Expectations per tag (by the tag name this source gives it), for every asset of this source'),
  assets: z
    .array(AssetName.describe('An asset id of this source'))
    .min(1)
    .optional()
    .describe(
      'Check only these assets; every asset when absent. Listed assets are also expected to report at all (staleAfterSeconds counts from the start)',
    ),
  alert: DataQualityAlertConfig.prefault({}),
};

export const TelemetryExpectations = z
  .strictObject(telemetryFields)
  .describe('Data expectations on the readings of this source (docs/DATA-QUALITY.md)');
export type TelemetryExpectations = z.infer<typeof TelemetryExpectations>;

export const MqttJsonExpectations = z
  .strictObject({
    ...telemetryFields,
    payload: PayloadExpectations.optional().describe(
      'Expectations on the JSON payloads themselves; absent: payloads are not checked',
    ),
  })
  .describe('Data expectations on the payloads and readings of this source (docs/DATA-QUALITY.md)');
export type MqttJsonExpectations = z.infer<typeof MqttJsonExpectations>;

export const ImageFormat = z.enum(['jpeg', 'png']);

export const ImageExpectations = z
  .strictObject({
    minWidth: z.number().int().positive().optional().describe('Narrowest frame in spec (pixels)'),
    minHeight: z.number().int().positive().optional().describe('Lowest frame in spec (pixels)'),
    maxWidth: z.number().int().positive().optional().describe('Widest frame in spec (pixels)'),
    maxHeight: z.number().int().positive().optional().describe('Highest frame in spec (pixels)'),
    formats: z
      .array(ImageFormat.describe('An encoding in spec'))
      .min(1)
      .optional()
      .describe('Encodings in spec; others are flagged'),
    maxBytes: z.number().int().positive().optional().describe('Largest encoded frame in spec (bytes)'),
    brightness: z
      .strictObject({
        min: z.number().min(0).max(255).optional().describe('Darkest mean brightness in spec'),
        max: z.number().min(0).max(255).optional().describe('Brightest mean brightness in spec'),
      })
      .optional()
      .describe(
        'Mean brightness (0-255) of the frame as the model sees it (after resizing): a covered lens, a lamp out, a washed-out picture',
      ),
    staleAfterSeconds: z
      .number()
      .positive()
      .optional()
      .describe('No frame from this source for this long raises `stale` (cleared by the next frame)'),
  })
  .refine((e) => e.minWidth === undefined || e.maxWidth === undefined || e.minWidth <= e.maxWidth, {
    message: 'minWidth must not be greater than maxWidth',
  })
  .refine((e) => e.minHeight === undefined || e.maxHeight === undefined || e.minHeight <= e.maxHeight, {
    message: 'minHeight must not be greater than maxHeight',
  })
  .describe('What every frame of this camera is expected to be; a frame that is not is flagged `image`');
export type ImageExpectations = z.infer<typeof ImageExpectations>;

export const CameraExpectations = z
  .strictObject({
    image: ImageExpectations.optional().describe('Expectations on each frame'),
    alert: DataQualityAlertConfig.prefault({}),
  })
  .describe('Data expectations on the frames of this camera (docs/DATA-QUALITY.md)');
export type CameraExpectations = z.infer<typeof CameraExpectations>;

export const DataQualityPolicy = z.enum(['skip', 'hold', 'flag']);
export type DataQualityPolicy = z.infer<typeof DataQualityPolicy>;

export const PipelineDataQuality = z
  .strictObject({
    policy: DataQualityPolicy.default('skip').describe(
      "What the model sees of an input that broke a data expectation. skip: telemetry: the reading counts as missing, so windows with it are not scored (skip reason data_quality); frames: the frame is not scored (drop reason data_quality). hold (telemetry only): the reading is dropped, so the tag keeps its last good value within the model's holdSteps. flag: scored anyway, and the result and alert carry dataQuality with the broken expectations",
    ),
  })
  .describe('How this pipeline treats inputs that broke a data expectation (docs/DATA-QUALITY.md)');
export type PipelineDataQuality = z.infer<typeof PipelineDataQuality>;
