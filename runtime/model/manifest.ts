import { z } from 'zod';

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

export const ReferenceStats = z
  .looseObject({
    /** Statistics of the preprocessed input on the training set, for drift monitoring. */
    inputMean: z.array(z.number()).optional(),
    inputStd: z.array(z.number()).optional(),
  })
  .describe('Reference statistics of the inputs');

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
  preprocessing: ImagePreprocessing,
  postprocessing: ClassificationPostprocessing,
  referenceStats: ReferenceStats.optional(),
  /** Free-form build information and metrics, shown by `vigil models list`. */
  metadata: z.record(z.string(), z.unknown()).optional(),
  /** sha256 (hex) of every file in the package except vigil.json and its signature. */
  files: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/, 'sha256 as 64 lower-case hex digits')),
});
export type Manifest = z.infer<typeof Manifest>;
