import type { SourceConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { AlertPublisher } from '../pipeline/pipeline.js';
import type { DataQualityFlag, DataQualityAlert } from '../pipeline/result.js';
import type { FrameSample } from '../pipeline/sample.js';
import type { ExpectationRule, Reading } from '../telemetry/reading.js';
import { ExpectationChecker } from './checker.js';
import type { DataQualityAlertConfig } from './config.js';
import { FrameQuality, ImageChecker } from './image.js';
import {
  DataQualityMonitor,
  type AlertOwner,
  type DataQualityAlertSink,
  type SourceDataQualityStatus,
} from './monitor.js';
import { PayloadChecker, type PayloadQualityHook } from './payload.js';
import { explainFlag, flagOf } from './policy.js';

export interface DataQualityOptions {
  deviceId: string;
  /** Every configured source (sources.<name>): the ones with `expectations` are checked. */
  sources: Record<string, SourceConfig>;
  sink: DataQualityAlertSink;
  publisher: AlertPublisher;
  metrics: Metrics;
  log: Logger;
  /** The pipeline and model a source's alerts name. */
  owner?: ((source: string) => AlertOwner) | undefined;
  onAlert?: ((alert: DataQualityAlert) => void) | undefined;
  /** How often staleness is checked and alerts are cleared by time (ms); 1000 by default. */
  tickMs?: number | undefined;
  maxSeries?: number | undefined;
}

/**
 * Data expectations on ingest, for the whole daemon (docs/DATA-QUALITY.md): one checker per
 * source that declares `expectations` (readings, JSON payloads, frames), one monitor that turns
 * violations into data_quality alerts with hysteresis, and a timer for staleness. The daemon
 * hands each source's checker to its ReadingGate, its payload hook to its context, and the frame
 * checks to the frame pipelines.
 */
export class DataQuality {
  readonly monitor: DataQualityMonitor;
  /** The image checks of every camera, for the frame pipelines. */
  readonly frames: FrameQuality;
  private readonly readings = new Map<string, ExpectationChecker>();
  private readonly payloads = new Map<string, PayloadChecker>();
  private readonly images = new Map<string, ImageChecker>();
  private readonly alertConfigs = new Map<string, DataQualityAlertConfig>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: DataQualityOptions) {
    this.monitor = new DataQualityMonitor({
      deviceId: o.deviceId,
      sink: o.sink,
      publisher: o.publisher,
      metrics: o.metrics,
      log: o.log,
      alertConfig: (source) => this.alertConfigs.get(source),
      owner: o.owner,
      onAlert: o.onAlert,
      maxSeries: o.maxSeries,
    });
    const now = Date.now();
    for (const [name, sc] of Object.entries(o.sources)) {
      const e = 'expectations' in sc ? sc.expectations : undefined;
      if (!e) continue;
      this.alertConfigs.set(name, e.alert);
      if ('image' in e) {
        if (e.image) this.images.set(name, new ImageChecker(name, e.image, this.monitor, now));
        continue;
      }
      if ('tags' in e && Object.keys(e.tags).length > 0)
        this.readings.set(name, new ExpectationChecker(name, e, this.monitor, now));
      if (sc.type === 'mqtt-json' && sc.expectations?.payload)
        this.payloads.set(
          name,
          new PayloadChecker(name, sc.expectations.payload, this.monitor, o.metrics, o.log),
        );
    }
    this.frames = new FrameQuality(this.images);
  }

  /** Whether any source declares expectations. */
  get active(): boolean {
    return this.readings.size + this.payloads.size + this.images.size > 0;
  }

  /** The per-reading checks of a telemetry source, for its ReadingGate; undefined when it declares none. */
  expectationsFor(source: string): ExpectationChecker | undefined {
    return this.readings.get(source);
  }

  /** The payload checks of an MQTT JSON source, for its context; undefined when it declares none. */
  payloadHookFor(source: string): PayloadQualityHook | undefined {
    return this.payloads.get(source);
  }

  /** A frame of a camera source arrived (staleness of the camera). */
  frameSeen(sample: FrameSample): void {
    this.images.get(sample.source)?.seen(sample);
  }

  /** Why a flagged reading broke a rule, with the bounds its source declares. */
  explain(r: Reading, rule: ExpectationRule): string {
    return this.readings.get(r.source)?.explain(r, rule) ?? explainFlag(r, rule);
  }

  /** What a result scored from these flagged readings says under the `flag` policy. */
  flagOf(readings: readonly Reading[]): DataQualityFlag {
    return flagOf(readings, (r, rule) => this.explain(r, rule));
  }

  /** Staleness and clearing by time, once; the timer calls it every tickMs. */
  tick(now = Date.now()): void {
    for (const c of this.readings.values()) if (c.watchesStaleness) c.staleCheck(now);
    for (const c of this.images.values()) if (c.watchesStaleness) c.staleCheck(now);
    this.monitor.tick(now);
  }

  /**
   * Starts the staleness timer. Staleness counts from here, not from construction: the daemon
   * calls it once every source has had its chance to connect.
   */
  start(now = Date.now()): void {
    if (this.timer || !this.active) return;
    for (const c of this.readings.values()) c.startClocks(now);
    for (const c of this.images.values()) c.startClocks(now);
    this.timer = setInterval(() => {
      try {
        this.tick();
      } catch (err) {
        this.o.log.error({ err: String(err) }, 'data-quality check failed');
      }
    }, this.o.tickMs ?? 1_000);
    this.timer.unref();
  }

  status(): Record<string, SourceDataQualityStatus> {
    return this.monitor.status();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.monitor.stop();
  }
}
