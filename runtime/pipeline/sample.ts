/**
 * What a source hands the runtime: one typed, stamped sample. Frames carry their encoded bytes;
 * decoding happens in the pipeline, off the source's path, so that a slow decode never blocks
 * ingest.
 */
export interface FrameSample {
  kind: 'frame';
  /** Unique id given at ingest; follows the sample into results, alerts and logs. */
  id: string;
  /** The configured source name (`sources.<name>`). */
  source: string;
  /** Wall-clock time of arrival, ms since the epoch (stored, published). */
  receivedAt: number;
  /** Monotonic arrival time, `performance.now()` ms: the start of every latency measurement. */
  arrivedAt: number;
  /** Encoded image bytes (JPEG or PNG). */
  data: Buffer;
  /** Where it came from, as the outside world names it: a file name, a remote address. */
  origin: string;
  /** Declared media type, where the transport says one (HTTP Content-Type). */
  contentType?: string | undefined;
}

export type Sample = FrameSample;
