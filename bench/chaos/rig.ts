import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { ChaosBroker, freeLoopbackPort } from '../../simulator/chaos/mosquitto.js';
import { startMosquitto, type RunningMosquitto } from '../../test/helpers/mosquitto.js';
import { UpstreamReceiver } from '../../test/helpers/upstream-receiver.js';
import { AlertCollector } from './alerts.js';
import {
  DaemonProcess,
  UNBOUNDED_QUEUE,
  benchUpstream,
  repoRoot,
  type DaemonExit,
  type DaemonStatus,
} from '../daemon-process.js';
import { onInterrupt } from './interrupt.js';
import { MetricsScrape } from './prom.js';

/**
 * The gateway a drill runs against, all real and all on loopback:
 *
 *   frames (autocannon) --HTTP--> camera-http source `cam` --> pipeline `inspect` (defect-int8-onnx)
 *   telemetry (mqtt.js) --QoS 1--> plant Mosquitto <--mqtt-json source `line` (persistent session)
 *   [opcua: the simulator's node-opcua server <-- opcua source `plc`]
 *   vigil run --alerts, status (QoS 1)--> plant Mosquitto --> AlertCollector (persistent session)
 *   vigil run --upstream forwarder (QoS 1)--> upstream Mosquitto --> UpstreamReceiver
 *
 * The plant broker is a ChaosBroker (it can be killed and restarted with its persistence), the
 * upstream broker and its receiver stay up: what the receiver has is what the store held, so it
 * is the drills' witness of "stored" and "delivered". `vigil run` is its own process, started
 * from dist/ with the drill's environment, and seen only through HTTP and MQTT.
 */

export const DEVICE = 'chaos-gw';
export const PIPELINE = 'inspect';
export const CAMERA = 'cam';
export const LINE = 'line';
export const PLC = 'plc';
export const TOPIC_PREFIX = 'vigil';
/**
 * Frames the pipeline processes at once (pipelines.<name>.concurrency, the default). With the
 * one pending slot of the camera, the most frames the gateway holds after their 202.
 */
export const PIPELINE_CONCURRENCY = 2;
/** The pipeline's budget unless RigOptions.budgetMs says otherwise (ms). */
export const DEFAULT_BUDGET_MS = 100;
const MIB = 1024 * 1024;

export interface RigOptions {
  /** Folder of the store file; default the rig's own temporary folder. */
  storeDir?: string;
  /** More store settings (minFreeDiskMiB, quotaCheckSeconds...). */
  store?: Record<string, unknown>;
  /** Environment of the daemon (e.g. libfaketime's). */
  env?: Record<string, string>;
  /** The pipeline's budget (ms); default 100. */
  budgetMs?: number;
  /** An OPC-UA source `plc` on this endpoint, monitoring these nodes. */
  opcua?: { endpoint: string; items: Array<{ nodeId: string; asset: string; tag: string }> };
  /** The camera source's body limit; default 4 MiB. */
  maxBodyBytes?: number;
  /** Log level of the daemon; default info. */
  logLevel?: string;
}

export class ChaosRig {
  private readonly cleanups: Array<() => Promise<unknown>> = [];

  private constructor(
    readonly dir: string,
    readonly plant: ChaosBroker,
    readonly upstream: RunningMosquitto,
    readonly receiver: UpstreamReceiver,
    readonly alerts: AlertCollector,
    readonly daemon: DaemonProcess,
    readonly cameraUrl: string,
    readonly options: RigOptions,
  ) {}

  static async start(options: RigOptions = {}): Promise<ChaosRig> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-chaos-'));
    const cleanups: Array<() => Promise<unknown>> = [() => rm(dir, { recursive: true, force: true })];
    const undo = async () => {
      for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    };
    // Interrupted while starting: stop what was started so far (bench/chaos/interrupt.ts).
    const forget = onInterrupt(undo);
    try {
      // Brokers that keep every queued message: Mosquitto's default of 1000 per session would be
      // the broker's loss, not the gateway's.
      const plant = await ChaosBroker.start({
        dataDir: path.join(dir, 'plant-broker'),
        extraConfig: UNBOUNDED_QUEUE,
      });
      cleanups.push(() => plant.stop());
      const upstream = await startMosquitto({ extraConfig: UNBOUNDED_QUEUE });
      cleanups.push(() => upstream.stop());
      const receiver = await UpstreamReceiver.start({ url: upstream.url, topicPrefix: TOPIC_PREFIX });
      cleanups.push(() => receiver.stop());
      const alerts = await AlertCollector.start(
        plant.url,
        TOPIC_PREFIX,
        DEVICE,
        `chaos-alerts-${process.pid}`,
      );
      cleanups.push(() => alerts.stop());

      const opsPort = await freeLoopbackPort();
      const camPort = await freeLoopbackPort();
      const storeDir = options.storeDir ?? dir;
      await mkdir(storeDir, { recursive: true });
      const configFile = path.join(dir, 'vigil.yaml');
      await writeFile(
        configFile,
        stringify(rigConfig(options, { opsPort, camPort, storeDir, plant, upstream, dir })),
      );
      const opsUrl = `http://127.0.0.1:${opsPort}`;
      const daemon = new DaemonProcess(configFile, opsUrl, options.env ?? {});
      cleanups.push(() => daemon.kill());
      await daemon.requireReady();
      const rig = new ChaosRig(
        dir,
        plant,
        upstream,
        receiver,
        alerts,
        daemon,
        `http://127.0.0.1:${camPort}/frames`,
        options,
      );
      rig.cleanups.push(...cleanups);
      await rig.waitFor(
        'the telemetry sources to come up',
        async () => {
          const s = await rig.status();
          const up = (n: string) => s?.telemetry?.[n]?.state === 'up';
          return up(LINE) && (!options.opcua || up(PLC)) && s?.mqtt?.connected === true;
        },
        30_000,
      );
      return rig;
    } catch (err) {
      await undo();
      throw err;
    } finally {
      forget();
    }
  }

  get opsUrl(): string {
    return this.daemon.opsUrl;
  }

  /** The config file `vigil run` was started with. */
  get configFile(): string {
    return path.join(this.dir, 'vigil.yaml');
  }

  status(): Promise<DaemonStatus | undefined> {
    return this.daemon.status();
  }

  metrics(): Promise<MetricsScrape> {
    return MetricsScrape.fetch(this.opsUrl);
  }

  /** Polls `check` every `everyMs` until it holds; throws naming `what` after `timeoutMs`. */
  async waitFor(
    what: string,
    check: () => Promise<boolean> | boolean,
    timeoutMs: number,
    everyMs = 100,
  ): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (await check()) return Date.now() - t0;
      if (!this.daemon.alive)
        throw new Error(`vigil run exited (${JSON.stringify(this.daemon.exit)}) while waiting for ${what}`);
      if (Date.now() - t0 > timeoutMs)
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}:\n${this.daemon.logs().slice(-3_000)}`,
        );
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  /** Stops the daemon (SIGTERM) and everything the rig started; the exit of the daemon. */
  async stop(): Promise<DaemonExit | undefined> {
    let exit = this.daemon.exit;
    if (this.daemon.alive) {
      const { code, signal } = await this.daemon.terminate(30_000);
      exit = { code, signal };
    }
    for (const c of this.cleanups.splice(0).reverse()) await c().catch(() => undefined);
    return exit;
  }
}

function rigConfig(
  o: RigOptions,
  r: {
    opsPort: number;
    camPort: number;
    storeDir: string;
    plant: ChaosBroker;
    upstream: RunningMosquitto;
    dir: string;
  },
): Record<string, unknown> {
  const sources: Record<string, unknown> = {
    [CAMERA]: {
      type: 'camera-http',
      listen: { host: '127.0.0.1', port: r.camPort },
      maxBodyBytes: o.maxBodyBytes ?? 4 * MIB,
    },
    [LINE]: {
      type: 'mqtt-json',
      url: r.plant.url,
      clientId: 'vigil-chaos-line',
      qos: 1,
      reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 },
      subscriptions: [
        { topic: 'plant/+/telemetry', asset: '{1}', tags: { n: 'n', temp: 'temp' }, timestampField: 'ts' },
      ],
    },
  };
  if (o.opcua)
    sources[PLC] = {
      type: 'opcua',
      endpoint: o.opcua.endpoint,
      pkiFolder: path.join(r.dir, 'pki-opcua'),
      reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 },
      subscription: { publishingIntervalMs: 100 },
      items: o.opcua.items.map((i) => ({ ...i, samplingIntervalMs: 50, queueSize: 100 })),
    };
  return {
    version: 1,
    device: { id: DEVICE },
    log: { level: o.logLevel ?? 'info' },
    http: { host: '127.0.0.1', port: r.opsPort },
    mqtt: { url: r.plant.url, topicPrefix: TOPIC_PREFIX, statusIntervalSeconds: 5 },
    store: { path: path.join(r.storeDir, 'vigil.db'), ...(o.store ?? {}) },
    upstream: benchUpstream(r.upstream.url, TOPIC_PREFIX),
    shutdown: { timeoutSeconds: 10 },
    models: { defect: { package: path.join(repoRoot(), 'models/defect/packages/defect-int8-onnx') } },
    sources,
    pipelines: {
      [PIPELINE]: {
        sources: [CAMERA],
        model: 'defect',
        budgetMs: o.budgetMs ?? DEFAULT_BUDGET_MS,
        concurrency: PIPELINE_CONCURRENCY,
      },
    },
  };
}
