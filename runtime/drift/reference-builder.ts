import type { Engine } from '../engines/engine.js';
import {
  isImageManifest,
  type ImageManifest,
  type Manifest,
  type ReferenceDistribution,
  type TelemetryManifest,
} from '../model/manifest.js';
import { classify } from '../pipeline/postprocess.js';
import { decodeAndResize, normalize } from '../pipeline/preprocess.js';
import { scoreTelemetry } from '../pipeline/telemetry-postprocess.js';
import type { Reading } from '../telemetry/reading.js';
import { Windower } from '../telemetry/window.js';
import { extractorFor, type FeatureExtractor } from './features.js';
import { classProportions, distributionOf } from './reference.js';

type ReferenceStats = NonNullable<Manifest['referenceStats']>;

/** One sample as the pipeline sees it: the tensor the engine got, and what the model said. */
export interface ScoredInput {
  input: Float32Array;
  score: number;
  label: string;
}

/**
 * Collects the features and outputs of reference samples and turns them into a manifest's
 * referenceStats, with the very feature extraction the live monitor uses.
 */
export class ReferenceBuilder {
  private readonly extractor: FeatureExtractor | undefined;
  private readonly features: number[][];
  private readonly scores: number[] = [];
  private readonly classes: number[] = [];
  private readonly labels: readonly string[];
  private readonly row: Float64Array;

  constructor(private readonly manifest: Manifest) {
    this.extractor = extractorFor(manifest);
    this.features = (this.extractor?.names ?? []).map(() => []);
    this.row = new Float64Array(this.features.length);
    this.labels = isImageManifest(manifest) ? manifest.postprocessing.labels : [];
  }

  get count(): number {
    return this.scores.length;
  }

  add(s: ScoredInput): void {
    if (this.extractor) {
      this.extractor.extract(s.input, this.row);
      this.row.forEach((v, i) => this.features[i]!.push(v));
    }
    this.scores.push(s.score);
    if (this.labels.length > 0) this.classes.push(this.labels.indexOf(s.label));
  }

  /** The manifest's referenceStats with the distributions added (inputMean/inputStd kept). */
  build(source: { data: string; builder: string }): ReferenceStats {
    if (this.count === 0) throw new Error('no reference samples were scored');
    const names = this.extractor?.names ?? [];
    const features: ReferenceDistribution[] = names.map((n, i) =>
      distributionOf(n, this.features[i]!, { keepSample: false }),
    );
    const output: NonNullable<ReferenceStats['output']> = { score: distributionOf('score', this.scores) };
    if (this.labels.length > 0)
      output.classes = {
        labels: [...this.labels],
        proportions: classProportions(
          this.labels,
          this.classes.filter((c) => c >= 0),
        ),
        count: this.classes.length,
      };
    return {
      ...(this.manifest.referenceStats ?? {}),
      ...(this.extractor ? { featureSet: this.extractor.featureSet, features } : {}),
      output,
      source: { ...source, samples: this.count, builtAt: new Date().toISOString() },
    };
  }
}

/** A frame through Vigil's own decode, resize, normalisation, engine and classification. */
export async function scoreFrame(engine: Engine, m: ImageManifest, frame: Uint8Array): Promise<ScoredInput> {
  const spec = m.inputs[0]!;
  const data = normalize(
    await decodeAndResize(frame, m.preprocessing),
    m.preprocessing,
    spec.layout === 'NCHW' ? 'NCHW' : 'NHWC',
  );
  const outputs = await engine.run({ [spec.name]: { dtype: 'float32', shape: spec.shape, data } });
  const c = classify(outputs, m.postprocessing);
  return { input: data, score: c.score, label: c.label };
}

/**
 * Readings through Vigil's own windowing (Windower with the manifest's preprocessing), engine
 * and telemetry postprocessing: every window the live pipeline would score, in order.
 */
export async function* scoreReadings(
  engine: Engine,
  m: TelemetryManifest,
  batches: Iterable<Reading[]>,
): AsyncGenerator<ScoredInput> {
  const windower = new Windower({ preprocessing: m.preprocessing });
  const spec = m.inputs[0]!;
  for (const batch of batches) {
    for (const w of windower.push(batch).windows) {
      const outputs = await engine.run({
        [spec.name]: { dtype: 'float32', shape: spec.shape, data: w.tensor },
      });
      const s = scoreTelemetry(outputs, m.postprocessing);
      yield { input: w.tensor, score: s.score, label: s.label };
    }
  }
}
