/**
 * The live window of one pipeline: the last `capacity` samples' input features, output score,
 * predicted class and time, in preallocated rings. Recording a sample is O(features) with no
 * allocation; reading a column copies it out for an evaluation (off the pipeline's path).
 */
export class SampleWindow {
  private readonly features: Float64Array;
  private readonly scores: Float64Array;
  private readonly classes: Int32Array;
  private readonly times: Float64Array;
  /** Samples recorded since the window was created. */
  private total = 0;

  constructor(
    readonly capacity: number,
    readonly featureCount: number,
  ) {
    this.features = new Float64Array(capacity * featureCount);
    this.scores = new Float64Array(capacity);
    this.classes = new Int32Array(capacity);
    this.times = new Float64Array(capacity);
  }

  /** Samples recorded so far (also those that have left the window). */
  get recorded(): number {
    return this.total;
  }

  /** Samples in the window now. */
  get size(): number {
    return Math.min(this.total, this.capacity);
  }

  /** The row `features` is written into for the next sample; commit() makes it part of the window. */
  featureRow(): Float64Array {
    const slot = this.total % this.capacity;
    return this.features.subarray(slot * this.featureCount, (slot + 1) * this.featureCount);
  }

  commit(score: number, cls: number, time: number): void {
    const slot = this.total % this.capacity;
    this.scores[slot] = score;
    this.classes[slot] = cls;
    this.times[slot] = time;
    this.total++;
  }

  /** Slots of the newest `n` samples (at most size), oldest first. */
  private slots(n: number): number[] {
    const k = Math.min(n, this.size);
    const out = new Array<number>(k);
    for (let i = 0; i < k; i++) out[i] = (this.total - k + i) % this.capacity;
    return out;
  }

  /** Feature `f` of the newest `n` samples. */
  feature(f: number, n = this.size): Float64Array {
    const s = this.slots(n);
    const out = new Float64Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = this.features[s[i]! * this.featureCount + f]!;
    return out;
  }

  score(n = this.size): Float64Array {
    return Float64Array.from(this.slots(n), (s) => this.scores[s]!);
  }

  classIndex(n = this.size): Int32Array {
    return Int32Array.from(this.slots(n), (s) => this.classes[s]!);
  }

  /** Time of the oldest and newest of the newest `n` samples (ms since the epoch). */
  span(n = this.size): { from: number; to: number } {
    const s = this.slots(n);
    return s.length === 0
      ? { from: NaN, to: NaN }
      : { from: this.times[s[0]!]!, to: this.times[s[s.length - 1]!]! };
  }
}
