import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HttpCameraSource } from '../../adapters/camera/http.js';
import { startEmbeddedBroker } from '../../runtime/broker/embedded.js';
import { parseConfig } from '../../runtime/config/load.js';
import { Daemon } from '../../runtime/daemon.js';
import { silentLogger } from '../../runtime/log.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { ROOT, waitFor } from '../helpers/daemon.js';

describe('an engine whose worker dies', () => {
  it('is replaced by a fresh one, counted, and frames flow again', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-supervise-'));
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, log: silentLogger() });
    const loaded = parseConfig(
      {
        device: { id: 'sup' },
        http: { enabled: false },
        mqtt: { url: broker.url },
        store: { path: path.join(dir, 'vigil.db') },
        models: { m: { package: path.join(ROOT, 'models/defect/packages/defect-int8-tflite') } },
        sources: { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: 0 } } },
        pipelines: { p: { sources: ['cam'], model: 'm' } },
      },
      '(test)',
      dir,
    );
    const daemon = await Daemon.start(loaded, silentLogger());
    try {
      const internals = daemon as unknown as {
        models: Map<string, { engine?: { worker: { worker: { terminate(): Promise<number> } } } }>;
      };
      await internals.models.get('m')!.engine!.worker.worker.terminate();

      await waitFor('the engine to be replaced', async () => {
        const restarts = (await daemon.metrics.modelRestarts.get()).values[0]?.value ?? 0;
        const h = daemon.health();
        return restarts === 1 && h.models[0]!.ready ? true : undefined;
      });

      const port = (daemon.sources.get('cam') as HttpCameraSource).port!;
      const frame = await renderFrame({ width: 640, height: 480, label: 'crack', seed: 3, format: 'jpeg' });
      const r = await fetch(`http://127.0.0.1:${port}/frames`, {
        method: 'POST',
        body: frame.data,
        headers: { 'content-type': 'image/jpeg' },
      });
      expect(r.status).toBe(202);
      await waitFor('the frame processed by the new engine', () =>
        daemon.pipelines.get('p')!.snapshot().processed === 1 ? true : undefined,
      );
      expect(daemon.pipelines.get('p')!.snapshot().alerts).toEqual({ defect: 1 });
    } finally {
      await daemon.stop();
      await broker.close();
    }
  });
});
