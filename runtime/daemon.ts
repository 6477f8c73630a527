import type { PipelineObserver } from './pipeline/observer.js';
import { createSource } from '../adapters/index.js';
import { resolvePath, type LoadedConfig } from './config/load.js';
import type { EngineOptions } from './engines/engine.js';
import { VigilError, errorMessage } from './errors.js';
import { ModelHost } from './model/host.js';
import { isImageManifest, isTelemetryManifest } from './model/manifest.js';
import { peekModelKind } from './model/package.js';
import type { Logger } from './log.js';
import { startOpsServer, type HealthReport } from './ops/http.js';
import { opsToken } from './ops/auth.js';
import { warnIfRoot } from './ops/privileges.js';
import { Metrics } from './ops/metrics.js';
import { FrameGallery } from './ops/frame-gallery.js';
import { PipelineHistory, metricDrops } from './ops/history.js';
import { Pipeline, type PipelineContext, type PipelineStats } from './pipeline/pipeline.js';
import type { FrameSample } from './pipeline/sample.js';
import type { Source } from './pipeline/source.js';
import { TelemetryPipeline, type TelemetryPipelineStats } from './pipeline/telemetry-pipeline.js';
import { MqttPublisher } from './publish/mqtt-publisher.js';
import type { Reading } from './telemetry/reading.js';
import { Store } from './store/store.js';
import { ReadingGate, type TagLimitMap } from './telemetry/gate.js';
import type { SourceConfig } from './config/schema.js';
import { TelemetryIngest, type SourceTelemetryStats } from './telemetry/ingest.js';
import { withDeadline } from './lifecycle.js';
import { UpstreamForwarder } from './forward/upstream.js';
import { StoreUpkeep } from './upkeep.js';
import { ModelRollouts } from './rollout/ota.js';
import { DriftMonitor } from './drift/monitor.js';
import { DataQuality } from './quality/data-quality.js';
import { NO_MODEL, type AlertOwner } from './quality/monitor.js';
import { expectationTagWarnings } from './quality/tag-names.js';
import type { SourceContext } from './pipeline/source.js';
import { StoreWriteGuard } from './store/write-guard.js';
import { VERSION } from './version.js';

export interface DaemonHooks {
  onResult?: PipelineContext['onResult'];
  onAlertPublished?: PipelineContext['onAlertPublished'];
}

/**
 * The composition root: builds every component from the validated config, starts them in
 * order (ops HTTP, store, models, MQTT, pipelines, sources) and stops them in reverse, each step
 * with a deadline. Nothing else in the runtime knows about concrete adapters.
 */
export class Daemon {
  readonly metrics = new Metrics();
  /** Frame pipelines (image models). */
  readonly pipelines = new Map<string, Pipeline>();
  /** Telemetry pipelines (telemetry models): readings in, windows scored. */
  readonly telemetryPipelines = new Map<string, TelemetryPipeline>();
  /** Per telemetry source, the telemetry pipelines that read it. */
  private readonly telemetryReaders = new Map<string, TelemetryPipeline[]>();
  readonly sources = new Map<string, Source>();
  private readonly models = new Map<string, ModelHost>();
  private store: Store | undefined;
  /** Whether frame sources may take frames while the store refuses writes (a full disk). */
  private storeGuard: StoreWriteGuard | undefined;
  private ingest: TelemetryIngest | undefined;
  private publisher: MqttPublisher | undefined;
  private upstream: UpstreamForwarder | undefined;
  private upkeep: StoreUpkeep | undefined;
  private rollouts: ModelRollouts | undefined;
  private drift: DriftMonitor | undefined;
  private dataQuality: DataQuality | undefined;
  private ops: Awaited<ReturnType<typeof startOpsServer>> | undefined;
  private readonly startedAt = new Date();
  /** Told about every scored sample of every pipeline (status page gallery, drift monitor). */
  private readonly observers: PipelineObserver[] = [];
  /** The status page's latency, throughput and drops over the last minutes (with the ops server). */
  private history: PipelineHistory | undefined;
  private stopping: Promise<void> | undefined;
  /** Set once every component, sources included, has been started: part of readiness. */
  private started = false;
  /** Aborted when the daemon stops: ends a start still in progress (a slow connect) and the sources' work. */
  private readonly lifetime = new AbortController();

  private constructor(
    readonly loaded: LoadedConfig,
    private readonly log: Logger,
    private readonly hooks: DaemonHooks,
  ) {}

  get httpUrl(): string | undefined {
    return this.ops?.url;
  }

  static async start(loaded: LoadedConfig, log: Logger, hooks: DaemonHooks = {}): Promise<Daemon> {
    const daemon = new Daemon(loaded, log, hooks);
    try {
      await daemon.startAll();
    } catch (err) {
      await daemon.stop().catch(() => undefined);
      throw err;
    }
    return daemon;
  }

  private async startAll(): Promise<void> {
    const { config } = this.loaded;
    const log = this.log;
    log.info({ device: config.device.id, config: this.loaded.file, version: VERSION }, 'vigil starting');
    warnIfRoot(log);

    if (config.http.enabled) {
      // The status page's views watch every scored sample: the latest frames (references, not
      // copies) and per-interval latency; without the ops server nobody could look at them.
      const gallery = new FrameGallery();
      this.history = new PipelineHistory({
        budgets: Object.fromEntries(Object.entries(config.pipelines).map(([n, pc]) => [n, pc.budgetMs])),
        drops: metricDrops(this.metrics),
        log: log.child({ component: 'status-page' }),
      });
      this.observers.push(gallery, this.history);
      this.history.start();
      this.ops = await startOpsServer({
        host: config.http.host,
        port: config.http.port,
        log: log.child({ component: 'http' }),
        registry: this.metrics.registry,
        token: opsToken(config.http, { resolvePath: (p) => resolvePath(this.loaded, p) }),
        health: () => this.health(),
        statusPage: { gallery, history: this.history },
        api: {
          status: () => this.status(),
          alerts: (limit: number) => this.store?.recentAlerts(limit) ?? [],
          modelAction: async (model, action) =>
            this.rollouts
              ? this.rollouts.action(model, action)
              : {
                  status: 404,
                  body: {
                    error: 'this daemon follows no model registry (no registry: section in its config)',
                  },
                },
        },
      });
      log.info({ url: this.ops.url }, `ops HTTP listening on ${this.ops.url}`);
    }

    const storePath = resolvePath(this.loaded, config.store.path);
    this.store = Store.open(storePath, config.store, log.child({ component: 'store' }), {
      metrics: this.metrics,
    });
    const store = this.store;
    this.storeGuard = new StoreWriteGuard(() => store.probeWrite(), log.child({ component: 'store' }));
    const upstream = config.upstream?.enabled ? config.upstream : undefined;
    // Retention must not delete what is still waiting for the upstream broker.
    this.store.setForwarded(upstream?.classes);
    this.ingest = new TelemetryIngest({
      sink: this.store,
      metrics: this.metrics,
      log: log.child({ component: 'telemetry' }),
      batchSize: config.telemetry.batchSize,
      flushIntervalMs: config.telemetry.flushIntervalMs,
      onAccepted: (source, readings) => {
        for (const p of this.telemetryReaders.get(source) ?? []) p.offer(readings);
      },
    });

    this.rollouts = await ModelRollouts.open(this.loaded, log, this.metrics);
    for (const [name, mc] of Object.entries(config.models)) {
      const options: EngineOptions = { onnx: mc.onnx, tflite: mc.tflite, warmupRuns: mc.warmupRuns };
      const host = new ModelHost(
        name,
        (await this.rollouts?.packageFor(name)) ?? resolvePath(this.loaded, mc.package),
        options,
        this.metrics,
        log.child({ model: name }),
      );
      this.models.set(name, host);
      await host.load();
    }

    if (upstream) {
      this.upstream = new UpstreamForwarder({
        config: upstream,
        deviceId: config.device.id,
        queue: this.store,
        log: log.child({ component: 'upstream' }),
        metrics: this.metrics,
        resolvePath: (p) => resolvePath(this.loaded, p),
      });
      // Not awaited: a gateway must take in data at boot even when its upstream broker is
      // unreachable or slow to answer; the forwarder connects and retries in the background.
      this.upstream.start().catch((err: unknown) => {
        log.error({ err: errorMessage(err) }, `upstream forwarding could not start: ${errorMessage(err)}`);
      });
    }

    this.publisher = new MqttPublisher({
      config: config.mqtt,
      deviceId: config.device.id,
      reconnectMinMs: config.mqtt.reconnect.initialDelayMs,
      reconnectMaxMs: config.mqtt.reconnect.maxDelayMs,
      resolvePath: (p) => resolvePath(this.loaded, p),
      log: log.child({ component: 'mqtt' }),
      version: VERSION,
      outbox: this.store,
      onDelivered: (alert) => this.metrics.alertsPublished.inc({ kind: alert.kind }),
      status: () => this.status(),
    });
    await this.publisher.start();

    // Drift of every pipeline against its model's reference statistics (docs/DRIFT.md).
    this.drift = new DriftMonitor({
      deviceId: config.device.id,
      configs: Object.fromEntries(Object.entries(config.pipelines).map(([n, pc]) => [n, pc.drift])),
      sink: this.store,
      publisher: this.publisher,
      metrics: this.metrics,
      log: log.child({ component: 'drift' }),
    });
    this.observers.push(this.drift);

    // Data expectations of the sources (docs/DATA-QUALITY.md): checked on ingest, alerted on
    // through the same store and outbox as every other alert.
    const dataQuality = new DataQuality({
      deviceId: config.device.id,
      sources: config.sources,
      sink: this.store,
      publisher: this.publisher,
      metrics: this.metrics,
      log: log.child({ component: 'data-quality' }),
      owner: (source) => this.alertOwner(source),
    });
    this.dataQuality = dataQuality;
    for (const w of expectationTagWarnings(config.sources))
      log.warn({ path: w.path }, `${w.path}: ${w.message}`);

    for (const [name, pc] of Object.entries(config.pipelines)) {
      const model = this.models.get(pc.model)!;
      const common = {
        name,
        config: pc,
        deviceId: config.device.id,
        engine: () => model.current(),
        sink: this.store,
        publisher: this.publisher,
        metrics: this.metrics,
        log: log.child({ pipeline: name }),
        onResult: this.hooks.onResult,
        onAlertPublished: this.hooks.onAlertPublished,
        // A new version in shadow runs beside the current one; after a promotion it is watched.
        rollout: model,
        observers: this.observers,
      };
      if ((await this.pipelineKind(name, model)) === 'telemetry') {
        const p = new TelemetryPipeline({ ...common, dataQuality });
        this.telemetryPipelines.set(name, p);
        for (const s of pc.sources)
          this.telemetryReaders.set(s, [...(this.telemetryReaders.get(s) ?? []), p]);
      } else {
        this.pipelines.set(
          name,
          new Pipeline({
            ...common,
            inputError: (sample, reason) => this.countInputError(sample, reason),
            dataQuality: dataQuality.frames,
            onStoreError: () => this.storeGuard?.failed(),
          }),
        );
      }
    }

    for (const [name, p] of this.pipelines) {
      try {
        await p.warmUp();
      } catch (err) {
        log.warn(
          { pipeline: name, err: errorMessage(err) },
          `warm-up of pipeline ${name} failed: ${errorMessage(err)}`,
        );
      }
    }

    const ingest = this.ingest;
    for (const [name, sc] of Object.entries(config.sources)) {
      const readers = [...this.pipelines.entries()].filter(([pn]) =>
        config.pipelines[pn]!.sources.includes(name),
      );
      const frames = sc.type.startsWith('camera-');
      if (frames && readers.length === 0)
        log.warn({ source: name }, `source ${name} is not read by any pipeline; its frames are ignored`);
      const slog = log.child({ source: name });
      // Telemetry limits and expectations are per source; the gate applies the limits and the
      // clock checks, and carries the expectations the ingest applies to what passes.
      const gate = new ReadingGate(limitsOf(sc), config.telemetry, dataQuality.expectationsFor(name));
      const ctx: SourceContext = {
        log: slog,
        resolvePath: (p) => resolvePath(this.loaded, p),
        emit: (sample) => {
          this.metrics.framesIn.inc({ source: name });
          dataQuality.frameSeen(sample);
          for (const [, p] of readers) p.offer(sample);
        },
        reject: (reason, message, origin) => ingest.refuse(name, reason, message, origin, slog),
        readings: (batch) => ingest.accept(name, batch, gate, slog),
        readingsDurable: (batch, mark) => ingest.acceptDurable(name, batch, gate, slog, mark),
        reconnected: () => ingest.reconnected(name),
        payloadQuality: dataQuality.payloadHookFor(name),
        storeRefusing: () => this.storeGuard?.refusing === true,
      };
      const source = await createSource(name, sc, ctx);
      this.sources.set(name, source);
      await source.start(this.lifetime.signal);
    }

    if (this.rollouts) {
      for (const [name, host] of this.models) {
        const budgets = Object.values(config.pipelines)
          .filter((pc) => pc.model === name)
          .map((pc) => pc.budgetMs);
        this.rollouts.attach(name, host, budgets.length > 0 ? Math.min(...budgets) : 100, (event) => {
          this.publisher?.publishRolloutEvent(name, event).catch((err: unknown) => {
            log.warn({ model: name, err: errorMessage(err) }, 'rollout event not published on MQTT');
          });
        });
      }
      // After the sources: a new version's shadow needs live inputs.
      this.rollouts.start();
    }
    // Staleness counts from here: every source has had its chance to connect.
    dataQuality.start();
    this.upkeep = new StoreUpkeep(this.store, config.store, log.child({ component: 'store' }));
    this.upkeep.start();
    // Alerts whose PUBACK timed out on a connection that stayed up are retried here; a
    // reconnect replays them anyway.
    this.outboxTimer = setInterval(() => {
      if (this.publisher?.connected()) void this.publisher.flushOutbox();
    }, 30_000);
    this.outboxTimer.unref();
    // The retained status carries the backlog, so a subscriber sees it without polling the API.
    this.statusTimer = setInterval(() => {
      if (this.publisher?.connected())
        this.publisher.publishStatus().catch((err: unknown) => {
          log.debug({ err: errorMessage(err) }, 'status not republished');
        });
    }, config.mqtt.statusIntervalSeconds * 1000);
    this.statusTimer.unref();
    // Connection states are polled into gauges rather than pushed, so no component needs to
    // know about metrics to report them.
    this.gaugeTimer = setInterval(() => {
      this.updateStateGauges();
      for (const m of this.models.values()) m.supervise();
    }, 1_000);
    this.gaugeTimer.unref();
    this.updateStateGauges();
    this.started = true;
    log.info(
      {
        pipelines: [...this.pipelines.keys(), ...this.telemetryPipelines.keys()],
        sources: [...this.sources.keys()],
        models: [...this.models.keys()],
      },
      'vigil ready',
    );
  }

  /**
   * Whether a pipeline scores frames or telemetry windows: its model's manifest says; when the
   * model did not load, its vigil.json (unverified) does, else the kind of its sources. A
   * pipeline whose sources are of the other kind can never work and stops the start.
   */
  private async pipelineKind(name: string, model: ModelHost): Promise<'image' | 'telemetry'> {
    const pc = this.loaded.config.pipelines[name]!;
    const sources = pc.sources.map((s) => ({
      name: s,
      frames: this.loaded.config.sources[s]!.type.startsWith('camera-'),
    }));
    const m = model.current()?.manifest;
    const kind =
      (m && isTelemetryManifest(m) ? 'telemetry' : m && isImageManifest(m) ? 'image' : undefined) ??
      (await peekModelKind(model.packageDir)) ??
      (sources.every((s) => s.frames) ? 'image' : 'telemetry');
    const wrong = sources.filter((s) => s.frames !== (kind === 'image'));
    if (wrong.length > 0) {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `pipeline ${name} runs model ${pc.model}, ${kind === 'image' ? 'an image model that scores camera frames' : 'a telemetry model that scores windows of readings'}, ` +
          `but reads ${wrong.map((s) => `'${s.name}'`).join(', ')}, ${kind === 'image' ? 'not a camera source' : 'a camera source'}. ` +
          `Give pipelines.${name}.sources only ${kind === 'image' ? 'camera' : 'telemetry'} sources, or another model.`,
        { detail: { pipeline: name, model: pc.model, sources: wrong.map((s) => s.name) } },
      );
    }
    if (kind === 'image' && pc.threshold !== undefined && (pc.threshold < 0 || pc.threshold > 1)) {
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `pipelines.${name}.threshold is ${pc.threshold}, but model ${pc.model} is an image model whose threshold is a defect score from 0 to 1.`,
        { detail: { pipeline: name, threshold: pc.threshold } },
      );
    }
    return kind;
  }

  /**
   * The pipeline and model a data_quality alert about a source names: the first pipeline that
   * reads it (in config order) and the model serving it, with every reader listed apart; the
   * source itself and no model when none does. One pipeline name, never a list: `pipeline` is a
   * label of vigil_alerts_total, and a joined list would make a series per combination.
   */
  private alertOwner(source: string): AlertOwner {
    const readers = Object.entries(this.loaded.config.pipelines).filter(([, pc]) =>
      pc.sources.includes(source),
    );
    if (readers.length === 0) return { pipeline: source, pipelines: [], model: NO_MODEL };
    const engine = this.models.get(readers[0]![1].model)?.current();
    return {
      pipeline: readers[0]![0],
      pipelines: readers.map(([n]) => n),
      model: engine
        ? {
            name: engine.manifest.name,
            version: engine.manifest.version,
            backend: engine.backend,
            provider: engine.provider,
          }
        : { ...NO_MODEL, name: readers[0]![1].model },
    };
  }

  /** Samples already counted as bad input, so that one sample read by two pipelines counts once. */
  private readonly countedBadSamples = new WeakSet<FrameSample>();

  private countInputError(sample: FrameSample, reason: string): void {
    if (this.countedBadSamples.has(sample)) return;
    this.countedBadSamples.add(sample);
    this.metrics.inputErrors.inc({ source: sample.source, reason });
  }

  private statusTimer: NodeJS.Timeout | undefined;
  private gaugeTimer: NodeJS.Timeout | undefined;
  private outboxTimer: NodeJS.Timeout | undefined;

  private updateStateGauges(): void {
    this.metrics.mqttConnected.set(this.publisher?.connected() ? 1 : 0);
    // Refreshes the upstream gauges (backlog, age, drain rate) as a side effect.
    this.upstream?.status();
    for (const [name, s] of this.sources)
      this.metrics.sourceUp.set({ source: name, type: s.type }, s.state() === 'up' ? 1 : 0);
  }

  health(): HealthReport {
    const models = [...this.models.values()].map((m) => m.health());
    const expected = Object.keys(this.loaded.config.models).length;
    const sources = [...this.sources.values()].map((s) => ({ name: s.name, type: s.type, state: s.state() }));
    return {
      ready:
        models.length === expected &&
        models.every((m) => m.ready) &&
        this.store !== undefined &&
        this.started &&
        this.stopping === undefined,
      models,
      sources,
      mqtt: { connected: this.publisher?.connected() ?? false },
    };
  }

  status(): Record<string, unknown> {
    const pipelines: Record<string, PipelineStats> = {};
    for (const [n, p] of this.pipelines) pipelines[n] = p.snapshot();
    const telemetryPipelines: Record<string, TelemetryPipelineStats> = {};
    for (const [n, p] of this.telemetryPipelines) telemetryPipelines[n] = p.snapshot();
    const telemetry: Record<string, SourceTelemetryStats & { state: string }> = {};
    for (const [n, s] of this.sources) {
      if (s.type.startsWith('camera-') || !this.ingest) continue;
      // A snapshot: the live counters keep changing, and a report written later (vigil simulate
      // serialises it after the daemon stopped) must show the counts of this moment.
      const stats = this.ingest.statsFor(n);
      telemetry[n] = {
        state: s.state(),
        ...stats,
        readings: { ...stats.readings },
        rejected: { ...stats.rejected },
      };
    }
    return {
      device: this.loaded.config.device.id,
      version: VERSION,
      startedAt: this.startedAt.toISOString(),
      ...this.health(),
      pipelines,
      telemetryPipelines,
      telemetry,
      store: this.storeStatus(),
      upstream: this.upstream?.status() ?? { enabled: false },
      ...(this.rollouts ? { rollout: this.rollouts.status() } : {}),
      drift: this.drift?.status() ?? {},
      // Per source: data-quality alerts raised and not cleared, and violations counted.
      dataQuality: this.dataQuality?.status() ?? {},
    };
  }

  private storeStatus(): Record<string, unknown> | undefined {
    const store = this.store;
    if (!store?.isOpen()) return undefined;
    try {
      return {
        path: store.path,
        id: store.storeId,
        ...store.durability(),
        ...(store.recovery ? { recovery: store.recovery } : {}),
        classes: store.classStats(),
        outbox: { alerts: store.countAlerts({ published: false }) },
      };
    } catch (err) {
      return { path: store.path, error: errorMessage(err) };
    }
  }

  /** The latest accepted reading of every source, asset and tag (kept in memory). */
  latestReadings(): Reading[] {
    return this.ingest?.latest() ?? [];
  }

  /** Readings in the store (after writing what is pending). */
  countReadings(): number {
    this.ingest?.flush();
    return this.store?.countReadings() ?? 0;
  }

  /** Reverse order of start; each step bounded so that one stuck component cannot hang shutdown. */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  /**
   * Stops in reverse order of start within shutdown.timeoutSeconds in all: inputs first (nothing
   * new is accepted), then what is in flight is finished and stored, the upstream backlog is
   * forwarded for what time is left (at most upstream.flushOnStopSeconds), and the store is
   * checkpointed and closed last. Every step has its share of the time; a step that hangs is
   * logged and skipped, never waited for beyond the bound.
   */
  private async stopAll(): Promise<void> {
    const log = this.log;
    const started = Date.now();
    // A second is kept for the store's final checkpoint and close and the ops server.
    const deadline = started + this.loaded.config.shutdown.timeoutSeconds * 1000 - 1_000;
    const left = (cap: number) => Math.max(1, Math.min(cap, deadline - Date.now()));
    this.lifetime.abort();
    this.upkeep?.stop();
    this.storeGuard?.stop();
    if (this.gaugeTimer) clearInterval(this.gaugeTimer);
    if (this.outboxTimer) clearInterval(this.outboxTimer);
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.history?.stop();
    for (const [name, s] of this.sources) await withDeadline(`source ${name}`, s.stop(), left(5_000), log);
    for (const [name, p] of this.pipelines)
      await withDeadline(`pipeline ${name}`, p.stop(), left(5_000), log);
    for (const [name, p] of this.telemetryPipelines)
      await withDeadline(`pipeline ${name}`, p.stop(), left(5_000), log);
    // After the pipelines, whose last samples it may still evaluate; before the publisher it sends with.
    if (this.drift) await withDeadline('drift monitor', this.drift.stop(), left(2_000), log);
    if (this.dataQuality) await withDeadline('data quality', this.dataQuality.stop(), left(2_000), log);
    try {
      this.ingest?.close();
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'final write of readings failed');
    }
    if (this.upstream) {
      const flushMs = left((this.loaded.config.upstream?.flushOnStopSeconds ?? 0) * 1000);
      await withDeadline('upstream forwarder', this.upstream.stop(flushMs), flushMs + 500, log);
    }
    if (this.publisher) await withDeadline('mqtt publisher', this.publisher.stop(), left(5_000), log);
    if (this.rollouts) await withDeadline('model rollouts', this.rollouts.stop(), left(5_000), log);
    for (const [name, m] of this.models) await withDeadline(`model ${name}`, m.close(), left(10_000), log);
    try {
      this.store?.close();
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'store close failed');
    }
    if (this.ops) await withDeadline('ops HTTP', this.ops.close(), 500, log);
    log.info({ ms: Date.now() - started }, 'vigil stopped');
  }
}

/** A telemetry source's plausible ranges per tag; frame sources have none. */
function limitsOf(sc: SourceConfig): TagLimitMap {
  return 'limits' in sc ? (sc as { limits: TagLimitMap }).limits : {};
}
