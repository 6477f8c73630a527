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
  /** A change of the line's lighting or the camera's exposure; absent: as rendered for training. */
  lighting?: Lighting | undefined;
}

/**
 * The light on the line changed (a lamp ageing or replaced, a skylight, an exposure or gain
 * setting changed): every pixel is scaled by `gain` and shifted by `offset` (0..255 scale) before
 * the sensor noise and 8-bit clipping. Drift monitoring is tested against this.
 */
export interface Lighting {
  /** Multiplies the light; 1 unchanged, 0.6 a dimmer line. */
  gain: number;
  /** Added to every pixel value, 0 unchanged. */
  offset?: number | undefined;
}

export interface RenderedFrame {
  data: Buffer;
  format: 'jpeg' | 'png';
  truth: FrameTruth;
}
