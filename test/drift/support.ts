import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DriftConfig } from '../../runtime/config/drift.js';
import { MqttConfig, StoreConfig } from '../../runtime/config/schema.js';
import { DriftMonitor } from '../../runtime/drift/monitor.js';
import type { DriftAlert } from '../../runtime/drift/types.js';
import { loadEngine } from '../../runtime/engines/load.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import { Store } from '../../runtime/store/store.js';
import { OPTIONS } from '../engines/support.js';
import { ROOT } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { watch, type Watcher } from '../publish/subscriber.js';

/** Where the drift tests leave their measured figures (git-ignored), for docs/DRIFT.md and the model cards. */
export const ARTIFACTS = path.join(ROOT, 'test-artifacts');

export async function keepFigures(name: string, figures: Record<string, unknown>): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await writeFile(path.join(ARTIFACTS, name), JSON.stringify(figures, null, 2) + '\n');
  console.log(`[drift] ${name}: ${JSON.stringify(figures)}`);
}

/** The largest value / threshold seen per measure, over every evaluation of a phase. */
export class PeakTracker {
  readonly peaks: Record<string, { value: number; threshold: number; ratio: number }> = {};
  evaluations = 0;
  /** Evaluations with a measure past its threshold (one evaluation counts once). */
  pastThreshold = 0;

  add(
    measures: ReadonlyArray<{
      name: string;
      test: string;
      value: number;
      threshold: number;
      drifted: boolean;
    }>,
  ) {
    this.evaluations++;
    if (measures.some((m) => m.drifted)) this.pastThreshold++;
    for (const m of measures) {
      const key = `${m.name}/${m.test}`;
      const ratio = m.value / m.threshold;
      if (!this.peaks[key] || ratio > this.peaks[key].ratio)
        this.peaks[key] = { value: m.value, threshold: round4(m.threshold), ratio: round4(ratio) };
    }
  }
}

export const round4 = (x: number) => Math.round(x * 10000) / 10000;

/**
 * What both end-to-end drift tests stand on, all real: a Mosquitto broker, a SQLite store, the
 * MQTT publisher, a subscriber on the drift alerts topic, the package's engine, and a drift
 * monitor with the default settings for one pipeline. The test builds its own pipeline on top.
 */
export interface DriftRig {
  broker: RunningMosquitto;
  dir: string;
  store: Store;
  publisher: MqttPublisher;
  watcher: Watcher;
  engine: WorkerEngine;
  metrics: Metrics;
  monitor: DriftMonitor;
  /** Stops everything in reverse order of start (the test stops its pipeline first). */
  close(): Promise<void>;
}

export async function startDriftRig(opts: {
  device: string;
  packageDir: string;
  pipeline: string;
  maxRows?: number;
  onAlert: (alert: DriftAlert) => void;
}): Promise<DriftRig> {
  const broker = await startMosquitto();
  const dir = await mkdtemp(path.join(os.tmpdir(), `vigil-drift-${opts.pipeline}-`));
  const store = Store.open(
    path.join(dir, 'vigil.db'),
    StoreConfig.parse({
      path: 'x',
      synchronous: 'normal',
      ...(opts.maxRows === undefined ? {} : { maxRows: opts.maxRows }),
    }),
    silentLogger(),
  );
  const publisher = new MqttPublisher({
    config: MqttConfig.parse({ url: broker.url }),
    deviceId: opts.device,
    log: silentLogger(),
    version: 'test',
    outbox: store,
    env: {},
  });
  await publisher.start();
  const watcher = await watch(broker.url, `vigil/${opts.device}/alerts/drift`);
  const engine = await loadEngine(opts.packageDir, OPTIONS, silentLogger());
  const metrics = new Metrics({ processMetrics: false });
  const monitor = new DriftMonitor({
    deviceId: opts.device,
    configs: { [opts.pipeline]: DriftConfig.parse({}) },
    sink: store,
    publisher,
    metrics,
    log: silentLogger(),
    onAlert: opts.onAlert,
  });
  return {
    broker,
    dir,
    store,
    publisher,
    watcher,
    engine,
    metrics,
    monitor,
    async close() {
      await monitor.stop();
      await watcher.end();
      await publisher.stop();
      await engine.close();
      store.close();
      await broker.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
