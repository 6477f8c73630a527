/**
 * The simulated inspection camera. The simulator is the outside world: it depends on nothing in
 * runtime/ or adapters/ and reaches Vigil only through real ingest paths (files, HTTP).
 */
export const DEFECT_CLASSES = ['ok', 'scratch', 'crack', 'inclusion'] as const;
export type DefectClass = (typeof DEFECT_CLASSES)[number];

/** Ground truth of one frame; known to the simulator only, never sent to Vigil. */
export interface FrameTruth {
  label: DefectClass;
  /** Bounding box of the defect in frame pixels; absent for 'ok'. */
  box?: { x: number; y: number; width: number; height: number };
}

export interface RenderOptions {
  width: number;
  height: number;
  label: DefectClass;
  /** Seed of this frame alone: the same seed renders the same frame. */
  seed: number;
  format: 'jpeg' | 'png';
}

export interface RenderedFrame {
  data: Buffer;
  format: 'jpeg' | 'png';
  truth: FrameTruth;
}
