import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MqttJsonSource } from '../../adapters/mqtt/json-source.js';
import { MqttConfig, PipelineConfig, StoreConfig, VigilConfig } from '../../runtime/config/schema.js';
import type { Engine, TensorMap } from '../../runtime/engines/engine.js';
import { loadEngine } from '../../runtime/engines/load.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import type { DataQualityAlert, Result } from '../../runtime/pipeline/result.js';
import type { SourceContext } from '../../runtime/pipeline/source.js';
import { TelemetryPipeline } from '../../runtime/pipeline/telemetry-pipeline.js';
import { MqttPublisher } from '../../runtime/publish/mqtt-publisher.js';
import type { DataQualityPolicy } from '../../runtime/quality/config.js';
import { DataQuality } from '../../runtime/quality/data-quality.js';
import type { AlertOwner } from '../../runtime/quality/monitor.js';
import { Store } from '../../runtime/store/store.js';
import { ReadingGate } from '../../runtime/telemetry/gate.js';
import { TelemetryIngest } from '../../runtime/telemetry/ingest.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { OPTIONS } from '../engines/support.js';
import { metricValue } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { watch, type Watcher } from '../publish/subscriber.js';

/**
 * What the data-quality tests stand on, all real: a Mosquitto broker, a SQLite store, the MQTT
 * publisher with the store as its outbox, a subscriber on the device's alert topics, and the
 * daemon's DataQuality built from a `sources:` section as a user writes it.
 */
export interface QualityRig {
  broker: RunningMosquitto;
  dir: string;
  store: Store;
  publisher: MqttPublisher;
  watcher: Watcher;
  metrics: Metrics;
  /** The config the rig was built from, parsed as the daemon parses it. */
  config: VigilConfig;
  quality: DataQuality;
  alerts: DataQualityAlert[];
  /** A TelemetryIngest into the store whose gates carry the sources' expectations. */
  ingest: TelemetryIngest;
  /** Accepted readings by source, as the ingest hands them on (with their flags). */
  accepted: Reading[];
  accept(source: string, batch: Reading[]): void;
  /** The source's ReadingGate (its limits and expectations), one per source as in the daemon. */
  gate(source: string): ReadingGate;
  /** A metric's value now, from the rig's registry (0 when the series does not exist). */
  metric(name: string, labels: Record<string, string>): Promise<number>;
  /** The flags column of the stored readings of a tag, oldest first (after a flush). */
  storedFlags(tag: string): Array<string | null>;
  close(): Promise<void>;
}

export const DEVICE = 'gw-dq';

export async function startQualityRig(opts: {
  /** The `sources:` section, or a function of the rig's broker URL for sources that connect to it. */
  sources: Record<string, unknown> | ((brokerUrl: string) => Record<string, unknown>);
  owner?: (source: string) => AlertOwner;
  onAccepted?: (source: string, readings: readonly Reading[]) => void;
}): Promise<QualityRig> {
  const broker = await startMosquitto();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-quality-'));
  const dbFile = path.join(dir, 'vigil.db');
  const store = Store.open(dbFile, StoreConfig.parse({ path: 'x', synchronous: 'normal' }), silentLogger());
  const publisher = new MqttPublisher({
    config: MqttConfig.parse({ url: broker.url }),
    deviceId: DEVICE,
    log: silentLogger(),
    version: 'test',
    outbox: store,
    env: {},
  });
  await publisher.start();
  const watcher = await watch(broker.url, `vigil/${DEVICE}/alerts/#`);
  const metrics = new Metrics({ processMetrics: false });
  const config = VigilConfig.parse({
    device: { id: DEVICE },
    models: {},
    sources: typeof opts.sources === 'function' ? opts.sources(broker.url) : opts.sources,
    pipelines: {},
  });
  const alerts: DataQualityAlert[] = [];
  const quality = new DataQuality({
    deviceId: DEVICE,
    sources: config.sources,
    sink: store,
    publisher,
    metrics,
    log: silentLogger(),
    owner: opts.owner,
    onAlert: (a) => alerts.push(a),
  });
  const accepted: Reading[] = [];
  const ingest = new TelemetryIngest({
    sink: store,
    metrics,
    log: silentLogger(),
    batchSize: 1000,
    flushIntervalMs: 10,
    onAccepted: (source, readings) => {
      accepted.push(...readings);
      opts.onAccepted?.(source, readings);
    },
  });
  const gates = new Map<string, ReadingGate>();
  const gateOf = (source: string) => {
    let g = gates.get(source);
    if (!g) {
      const sc = config.sources[source];
      const limits = sc && 'limits' in sc ? sc.limits : {};
      g = new ReadingGate(limits, config.telemetry, quality.expectationsFor(source));
      gates.set(source, g);
    }
    return g;
  };
  return {
    broker,
    dir,
    store,
    publisher,
    watcher,
    metrics,
    config,
    quality,
    alerts,
    ingest,
    accepted,
    accept: (source, batch) => ingest.accept(source, batch, gateOf(source), silentLogger()),
    gate: gateOf,
    metric: async (name, labels) => metricValue(await metrics.registry.metrics(), name, labels),
    storedFlags(tag) {
      ingest.flush();
      const db = new Database(dbFile, { readonly: true });
      try {
        return (
          db.prepare('SELECT flags FROM readings WHERE tag = ? ORDER BY id').all(tag) as Array<{
            flags: string | null;
          }>
        ).map((r) => r.flags);
      } finally {
        db.close();
      }
    },
    async close() {
      ingest.close();
      await quality.stop();
      await watcher.end();
      await publisher.stop();
      store.close();
      await broker.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A good reading of `tag` on `asset`, measured and received at `t`. */
export function reading(
  source: string,
  asset: string,
  tag: string,
  value: number | null,
  t: number,
  extra: Partial<Reading> = {},
): Reading {
  return {
    source,
    asset,
    tag,
    value,
    quality: value === null ? 'bad' : 'good',
    ...(value === null ? { status: 'NoValue' } : {}),
    sourceTime: t,
    receivedAt: t,
    ...extra,
  };
}

/**
 * An MQTT JSON source as a user declares it, with one subscription. The URL is never dialled
 * unless a test starts the source (startJsonSource), which needs the rig's broker URL.
 */
export function jsonSource(
  subscription: Record<string, unknown>,
  extra: Record<string, unknown> = {},
  url = 'mqtt://127.0.0.1:1',
): Record<string, unknown> {
  return { type: 'mqtt-json', url, subscriptions: [subscription], ...extra };
}

/**
 * A real MqttJsonSource of the rig's config, wired as the daemon wires it: its readings through
 * the rig's gate and ingest, its payloads through the rig's payload checks.
 */
export async function startJsonSource(rig: QualityRig, name: string): Promise<MqttJsonSource> {
  const sc = rig.config.sources[name];
  if (sc?.type !== 'mqtt-json') throw new Error(`source ${name} is not an mqtt-json source`);
  const log = silentLogger();
  const ctx: SourceContext = {
    log,
    resolvePath: (p) => p,
    emit: () => undefined,
    reject: (reason, message, origin) => rig.ingest.refuse(name, reason, message, origin, log),
    readings: (batch) => rig.ingest.accept(name, batch, rig.gate(name), log),
    readingsDurable: (batch, mark) => rig.ingest.acceptDurable(name, batch, rig.gate(name), log, mark),
    reconnected: () => undefined,
    payloadQuality: rig.quality.payloadHookFor(name),
  };
  const source = new MqttJsonSource(name, sc, ctx);
  await source.start(new AbortController().signal);
  return source;
}

/** The mean-rul fixture: RUL = the mean of its 4-cycle window of tags a, b, c (axis: tag cycle). */
export const MEAN_RUL = path.resolve(import.meta.dirname, '../fixtures/telemetry-models/mean-rul');

/**
 * One TelemetryPipeline per dataQuality policy on the same source, each scoring with the real
 * mean-rul model in its worker thread through an engine that notes every window it is given: the
 * score and the inputs show exactly which values the model saw. Hand them the rig's accepted
 * readings (startQualityRig's onAccepted) as the daemon does.
 */
export interface PolicyPipelines {
  pipelines: Map<DataQualityPolicy, TelemetryPipeline>;
  results: Map<DataQualityPolicy, Result[]>;
  /** Window tensors each policy's model was given. */
  inputs: Map<DataQualityPolicy, Float32Array[]>;
  offer(readings: readonly Reading[]): void;
  idle(): Promise<void>;
  close(): Promise<void>;
}

export async function startPolicyPipelines(
  rig: QualityRig,
  source: string,
  policies: readonly DataQualityPolicy[] = ['skip', 'hold', 'flag'],
): Promise<PolicyPipelines> {
  const real: WorkerEngine = await loadEngine(MEAN_RUL, OPTIONS, silentLogger());
  const pipelines = new Map<DataQualityPolicy, TelemetryPipeline>();
  const results = new Map<DataQualityPolicy, Result[]>();
  const inputs = new Map<DataQualityPolicy, Float32Array[]>();
  for (const policy of policies) {
    const seen: Float32Array[] = [];
    inputs.set(policy, seen);
    const engine: Engine = {
      manifest: real.manifest,
      backend: real.backend,
      provider: real.provider,
      run(t: TensorMap) {
        seen.push(Float32Array.from(t['window']!.data as Float32Array));
        return real.run(t);
      },
      close: async () => undefined,
    };
    const got: Result[] = [];
    results.set(policy, got);
    pipelines.set(
      policy,
      new TelemetryPipeline({
        name: `p-${policy}`,
        // Every window scored however late under load: a superseded window would read as a policy effect.
        config: PipelineConfig.parse({
          sources: [source],
          model: 'mean-rul',
          dataQuality: { policy },
          maxPendingWindows: 1000,
        }),
        deviceId: DEVICE,
        engine: () => engine,
        sink: rig.store,
        publisher: rig.publisher,
        metrics: rig.metrics,
        log: silentLogger(),
        onResult: (r) => got.push(r),
        dataQuality: rig.quality,
      }),
    );
  }
  return {
    pipelines,
    results,
    inputs,
    offer(readings) {
      for (const p of pipelines.values()) p.offer(readings);
    },
    async idle() {
      for (const p of pipelines.values()) await p.idle();
    },
    async close() {
      for (const p of pipelines.values()) await p.stop();
      await real.close();
    },
  };
}
