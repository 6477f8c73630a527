import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { HttpSink } from '../../simulator/camera/sinks.js';

/**
 * A production line for the rollout tests: the simulator's camera POSTing small JPEG frames, 30 %
 * of them defective, to a daemon's camera-http source, until stopped.
 */
export function startLineCamera(port: number, fps: number, seed: number): SimCamera {
  const camera = new SimCamera({
    name: 'cam',
    fps,
    width: 320,
    height: 240,
    defectRate: 0.3,
    seed,
    format: 'jpeg',
    sink: new HttpSink(`http://127.0.0.1:${port}/frames`),
    render: renderFrame,
  });
  camera.start();
  return camera;
}

/** Stops the camera and waits for its last frame to be sent; undefined is fine. */
export async function stopLineCamera(camera: SimCamera | undefined): Promise<void> {
  camera?.stop();
  await camera?.finished.catch(() => undefined);
}
