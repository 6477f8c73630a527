import type { DType, Manifest } from '../model/manifest.js';

export type TensorArray = Float32Array | Uint8Array | Int8Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorArray;
}

/** Name to tensor, for a model's inputs or outputs. */
export type TensorMap = Record<string, Tensor>;

/**
 * A loaded, verified and warmed-up model. One engine runs one inference at a time; callers (the
 * scheduler) serialise calls. `run` never blocks the event loop: native inference runs on
 * another thread.
 */
export interface Engine {
  readonly manifest: Manifest;
  /** The runtime library: 'onnxruntime-node' or 'tflite'. */
  readonly backend: 'onnxruntime-node' | 'tflite';
  /**
   * What actually executes the model: an ONNX execution provider ('cpu', 'webgpu', 'cuda'...),
   * or for TFLite 'xnnpack', 'cpu' or 'delegate:<library>'. Shown in /readyz and metrics.
   */
  readonly provider: string;
  /** What the config asked for, in order of preference (ONNX providers; TFLite 'xnnpack', 'cpu' or 'delegate:<library>'). */
  readonly requested?: readonly string[] | undefined;
  /** The asked-for providers that could not be used, each with the runtime's reason. */
  readonly fallbacks?: ReadonlyArray<{ provider: string; reason: string }> | undefined;
  /** Inputs are float32 in model units (already normalised); quantization is the engine's job. */
  run(inputs: TensorMap): Promise<TensorMap>;
  close(): Promise<void>;
}

export interface OnnxEngineOptions {
  /** Execution providers in order of preference; the first one that loads is used. */
  executionProviders: string[];
  intraOpThreads: number;
}

export interface TfliteEngineOptions {
  threads: number;
  xnnpack: boolean;
  /** Shared library of an external delegate (Edge TPU, vendor NPU); replaces XNNPACK. */
  delegate?: { library: string; options: Record<string, string> } | undefined;
}

export interface EngineOptions {
  onnx: OnnxEngineOptions;
  tflite: TfliteEngineOptions;
  /** Warm-up inferences run on load, before the model counts as ready. */
  warmupRuns: number;
}
