import {
  SUMMARY_FEATURES,
  SUMMARY_STATS,
  isImageManifest,
  isTelemetryManifest,
  type Manifest,
  type TelemetryPreprocessing,
} from '../model/manifest.js';

/**
 * The per-sample input features drift is measured on, computed from the preprocessed tensor
 * exactly as the engine received it. The reference builder and the live monitor both use these
 * functions, so a reference and a live window are computed the same way. `featureSet` names the
 * definition; a reference built with another definition is not compared against.
 */
export interface FeatureExtractor {
  featureSet: string;
  names: readonly string[];
  /** Writes one value per name into `out`; O(tensor) at most, no allocation. */
  extract(input: Float32Array, out: Float64Array): void;
}

export const IMAGE_FEATURE_SET = 'image-stats-v1';
export const TELEMETRY_FEATURE_SET = 'telemetry-last-v1';

/** brightness: mean of the tensor; contrast: its standard deviation; sharpness: mean |horizontal difference|. */
export const IMAGE_FEATURES = ['brightness', 'contrast', 'sharpness'] as const;

/**
 * The three image statistics in one pass over the tensor (every channel together, in the
 * normalised units the model sees). A lighting or exposure change moves brightness and contrast;
 * focus, blur or a dirty lens move sharpness.
 */
export function imageStats(
  data: Float32Array,
  width: number,
  height: number,
  channels: number,
  layout: 'NHWC' | 'NCHW',
  out: Float64Array,
): void {
  let sum = 0;
  let sumSq = 0;
  let grad = 0;
  if (layout === 'NHWC') {
    const row = width * channels;
    for (let y = 0; y < height; y++) {
      const base = y * row;
      for (let i = base; i < base + channels; i++) {
        const v = data[i]!;
        sum += v;
        sumSq += v * v;
      }
      for (let i = base + channels; i < base + row; i++) {
        const v = data[i]!;
        sum += v;
        sumSq += v * v;
        const d = v - data[i - channels]!;
        grad += d < 0 ? -d : d;
      }
    }
  } else {
    for (let r = 0; r < channels * height; r++) {
      const base = r * width;
      let prev = data[base]!;
      sum += prev;
      sumSq += prev * prev;
      for (let i = base + 1; i < base + width; i++) {
        const v = data[i]!;
        sum += v;
        sumSq += v * v;
        const d = v - prev;
        grad += d < 0 ? -d : d;
        prev = v;
      }
    }
  }
  const n = width * height * channels;
  const mean = sum / n;
  out[0] = mean;
  out[1] = Math.sqrt(Math.max(0, sumSq / n - mean * mean));
  out[2] = width > 1 ? grad / ((width - 1) * height * channels) : 0;
}

/**
 * Telemetry: per tag, its normalised value at the window's newest step (the `last` summary
 * feature; the last row of a `window` tensor). With stride 1 every step is counted once, so the
 * live distribution is that of the readings themselves; reading it is O(tags).
 */
export function lastValueIndex(pre: TelemetryPreprocessing): number[] {
  const T = pre.tags.length;
  return pre.tags.map((_, t) =>
    pre.features === 'window' ? (pre.window - 1) * T + t : t * SUMMARY_STATS + SUMMARY_LAST,
  );
}

const SUMMARY_LAST = SUMMARY_FEATURES.indexOf('last');

/** The extractor for a model, or undefined for a model whose input has no defined features. */
export function extractorFor(m: Manifest): FeatureExtractor | undefined {
  if (isImageManifest(m)) {
    const pre = m.preprocessing;
    const channels = pre.colorSpace === 'grayscale' ? 1 : 3;
    const layout = m.inputs[0]!.layout === 'NCHW' ? 'NCHW' : 'NHWC';
    return {
      featureSet: IMAGE_FEATURE_SET,
      names: IMAGE_FEATURES,
      extract: (input, out) => imageStats(input, pre.width, pre.height, channels, layout, out),
    };
  }
  if (isTelemetryManifest(m)) {
    const index = lastValueIndex(m.preprocessing);
    return {
      featureSet: TELEMETRY_FEATURE_SET,
      names: m.preprocessing.tags,
      extract: (input, out) => {
        for (let i = 0; i < index.length; i++) out[i] = input[index[i]!]!;
      },
    };
  }
  return undefined;
}
