import { z } from 'zod';
import { CameraFolderSource, CameraHttpSource } from './sources/camera.js';
import { MqttJsonSource, MqttTls, SparkplugSource } from './sources/mqtt.js';
import { ModbusRtuSource, SerialLineSource } from './sources/serial.js';
import { OpcUaSource } from './sources/opcua.js';
import { TELEMETRY_DEFAULTS, TelemetryConfig } from './sources/telemetry.js';
import { UpstreamConfig } from './upstream.js';
import { DriftConfig } from './drift.js';
import { ModelRegistrySource, RegistryConfig, RolloutPolicy } from './registry.js';
import { PipelineDataQuality } from '../quality/config.js';

export { CameraFolderSource, CameraHttpSource } from './sources/camera.js';
export { TelemetryConfig } from './sources/telemetry.js';
export { MqttJsonSource, SparkplugSource } from './sources/mqtt.js';
export { ModbusRtuSource, SerialLineSource } from './sources/serial.js';
export { OpcUaSource } from './sources/opcua.js';

/**
 * The one schema of Vigil's YAML config: the single source of every setting's type, default and
 * description. Types are inferred from it; docs/CONFIG.md is generated from it
 * (`vigil config schema`); unknown keys are rejected so that a misspelt key never silently falls
 * back to a default.
 */

const name = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_-]*$/,
    'use letters, digits, dash and underscore, starting with a letter or digit',
  );

const port = z.number().int().min(0).max(65535);

export const SourceConfig = z.discriminatedUnion('type', [
  CameraFolderSource,
  CameraHttpSource,
  MqttJsonSource,
  SparkplugSource,
  SerialLineSource,
  ModbusRtuSource,
  OpcUaSource,
]);
export type SourceConfig = z.infer<typeof SourceConfig>;

export const ModelConfig = z.strictObject({
  package: z
    .string()
    .min(1)
    .describe('Folder of the model package (vigil.json + model file), relative to the config file'),
  onnx: z
    .strictObject({
      executionProviders: z
        .array(z.enum(['cpu', 'webgpu', 'cuda', 'tensorrt', 'dml', 'coreml']))
        .min(1)
        .default(['cpu'])
        .describe('ONNX Runtime execution providers in order of preference; CPU is the last resort'),
      intraOpThreads: z
        .number()
        .int()
        .min(0)
        .default(1)
        .describe('Threads per inference; 0 lets ONNX Runtime choose'),
    })
    .default({ executionProviders: ['cpu'], intraOpThreads: 1 })
    .describe('Settings used when the package is an ONNX model'),
  tflite: z
    .strictObject({
      threads: z.number().int().min(1).default(1).describe('Threads for the TFLite interpreter'),
      xnnpack: z.boolean().default(true).describe('Use the XNNPACK CPU delegate'),
      delegate: z
        .strictObject({
          library: z
            .string()
            .min(1)
            .describe('Path of an external delegate shared library, e.g. libedgetpu.so.1'),
          options: z.record(z.string(), z.string()).default({}).describe('Options passed to the delegate'),
        })
        .optional()
        .describe('External delegate for an NPU; replaces XNNPACK'),
    })
    .default({ threads: 1, xnnpack: true })
    .describe('Settings used when the package is a TFLite model'),
  warmupRuns: z.number().int().min(1).default(3).describe('Inferences run on load before the model is ready'),
  registry: ModelRegistrySource.optional().describe(
    'Follow a registered model in the registry (registry: section): new versions of its alias are downloaded, verified, tried in shadow and promoted; package is the version served until one is installed',
  ),
  rollout: RolloutPolicy.prefault({}).describe(
    'How a new version is tried before it replaces the current one',
  ),
});
export type ModelConfig = z.infer<typeof ModelConfig>;

export const Severity = z.enum(['info', 'warning', 'critical']);

/**
 * One pipeline shape for both kinds: a pipeline whose model is an image model reads frames; one
 * whose model is a telemetry model (preprocessing `telemetry`) reads readings and scores windows.
 * Fields marked "telemetry" or "frames" only apply to that kind; new fields stay optional so that
 * a config written for one kind never needs keys of the other.
 */
export const PipelineConfig = z.strictObject({
  sources: z.array(name).min(1).describe('Names of the sources this pipeline reads'),
  model: name.describe(
    'Name of the model (under models:) this pipeline runs; an image model makes it a frame pipeline, a telemetry model a telemetry pipeline',
  ),
  budgetMs: z
    .number()
    .positive()
    .default(100)
    .describe(
      'Frames: latency budget from frame arrival to alert published; frames that cannot make it are dropped',
    ),
  concurrency: z
    .number()
    .int()
    .min(1)
    .max(4)
    .default(2)
    .describe(
      'Frames: frames in progress at once: 2 decodes one frame while the model runs on another (the model runs one at a time); 1 processes strictly one by one',
    ),
  threshold: z
    .number()
    .optional()
    .describe(
      'Overrides the alert threshold from the model manifest: for an image model the defect score (0 to 1); for a telemetry model alert.raise (a RUL in the axis unit, a failure probability, an anomaly score), with alert.clear moved by the same amount',
    ),
  severity: z
    .record(z.string(), Severity)
    .default({})
    .describe(
      'Alert severity per label (telemetry labels: rul, risk, anomaly); labels not listed are "warning". Cleared telemetry alerts are "info"',
    ),
  publishResults: z
    .boolean()
    .default(false)
    .describe('Also publish every result (every scored window) on results/<pipeline>'),
  assets: z
    .array(z.string().min(1))
    .min(1)
    .optional()
    .describe('Telemetry: score only these assets of the sources; every asset when absent'),
  alert: z
    .strictObject({
      raise: z.number().optional().describe('Score at which the alert is raised (overrides threshold too)'),
      clear: z
        .number()
        .optional()
        .describe('Score back past which a raised alert is cleared; must not be beyond raise'),
      consecutive: z
        .number()
        .int()
        .min(1)
        .optional()
        .describe('Scored windows in a row past raise (or clear) before the alert is raised (or cleared)'),
    })
    .optional()
    .describe("Telemetry: overrides of the model manifest's alert hysteresis (postprocessing.alert)"),
  lateSteps: z
    .number()
    .int()
    .min(0)
    .max(100)
    .optional()
    .describe(
      'Telemetry: steps a reading may arrive late (by source time) and still count; a step is scored once a reading this many steps newer arrives. 0 when absent; raise it when one asset is fed by several sources whose clocks or deliveries differ',
    ),
  holdSteps: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe(
      "Telemetry: overrides the model's preprocessing.holdSteps (steps a tag keeps its last value without a new reading); raise it for sources that send a value only when it changes (OPC-UA subscriptions), where silence means unchanged",
    ),
  maxPendingWindows: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .describe(
      'Telemetry: windows of one asset waiting for the model at most; when the model falls behind the oldest is superseded and counted. 4 when absent',
    ),
  drift: DriftConfig.optional().describe(
    "Drift monitoring of this pipeline's inputs and outputs (docs/DRIFT.md); on with the defaults when absent",
  ),
  dataQuality: PipelineDataQuality.optional().describe(
    'How this pipeline treats inputs that broke a data expectation of its sources (docs/DATA-QUALITY.md); policy skip when absent',
  ),
});
export type PipelineConfig = z.infer<typeof PipelineConfig>;

export const MqttConfig = z.strictObject({
  url: z
    .string()
    .regex(/^(mqtts?|wss?|tcp|ssl):\/\//, 'an MQTT URL such as mqtt://host:1883 or mqtts://host:8883')
    .default('mqtt://127.0.0.1:1883')
    .describe('Broker URL; mqtts:// for TLS'),
  clientId: z.string().optional().describe('Defaults to vigil-<device id>'),
  username: z.string().optional().describe('User name, when the broker requires one'),
  password: z
    .string()
    .optional()
    .describe(
      'Password in plain text (vigil config check warns); prefer passwordFile or the VIGIL_MQTT_PASSWORD environment variable',
    ),
  passwordFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      'File holding the password (white space around it trimmed), relative to the config file; used when password is not set, before VIGIL_MQTT_PASSWORD',
    ),
  topicPrefix: z
    .string()
    .regex(/^[^#+]+$/, 'no MQTT wildcards')
    .default('vigil')
    .describe('Topics are <topicPrefix>/<device id>/alerts/<kind>, .../status, .../results/<pipeline>'),
  tls: MqttTls.optional().describe('TLS settings for mqtts:// URLs'),
  keepaliveSeconds: z.number().int().min(0).default(30).describe('MQTT keep-alive interval'),
  reconnect: z
    .strictObject({
      initialDelayMs: z.number().int().min(10).default(1_000).describe('First delay after a lost connection'),
      maxDelayMs: z
        .number()
        .int()
        .min(100)
        .default(5_000)
        .describe(
          'The delay doubles per failed attempt up to this. The alert broker is usually on the gateway or next to it: a short ceiling gets alerts out soon after it restarts (docs/CHAOS.md)',
        ),
    })
    .refine((r) => r.initialDelayMs <= r.maxDelayMs, {
      message: 'initialDelayMs must not be greater than maxDelayMs',
    })
    .default({ initialDelayMs: 1_000, maxDelayMs: 5_000 })
    .describe('Back-off between reconnect attempts to the alert broker'),
  statusIntervalSeconds: z
    .number()
    .positive()
    .default(30)
    .describe('The retained status (with the store backlog) is republished this often'),
});
export type MqttConfig = z.infer<typeof MqttConfig>;

export const StoreConfig = z.strictObject({
  path: z
    .string()
    .min(1)
    .default('vigil-data/vigil.db')
    .describe('SQLite database file, relative to the config file'),
  retentionHours: z
    .number()
    .positive()
    .default(168)
    .describe('Delivered results and alerts, and readings, older than this are deleted'),
  maxRows: z
    .number()
    .int()
    .positive()
    .default(1_000_000)
    .describe('Cap on stored results; the oldest go first'),
  maxReadings: z
    .number()
    .int()
    .positive()
    .default(10_000_000)
    .describe('Cap on stored telemetry readings; the oldest go first'),
  synchronous: z
    .enum(['full', 'normal'])
    .default('full')
    .describe(
      "SQLite's synchronous level in WAL mode. full: every commit is on disk before it is acknowledged (survives a power cut); normal: survives a crash of Vigil but a power cut can lose the last commits. See docs/STORE-AND-FORWARD.md",
    ),
  checkpointIntervalSeconds: z
    .number()
    .positive()
    .default(60)
    .describe('How often the write-ahead log is copied into the database file (a passive checkpoint)'),
  integrityCheck: z
    .enum(['quick', 'off'])
    .default('quick')
    .describe(
      "At start, check the database with SQLite's quick_check; a damaged file is moved aside and a new one started",
    ),
  quotaMiB: z
    .strictObject({
      alerts: z.number().positive().default(64).describe('Disk quota of alerts (MiB)'),
      results: z.number().positive().default(512).describe('Disk quota of results (MiB)'),
      readings: z.number().positive().default(4096).describe('Disk quota of telemetry readings (MiB)'),
    })
    .default({ alerts: 64, results: 512, readings: 4096 })
    .describe(
      'Disk quota per class of data; over it, the oldest rows of that class are evicted, delivered ones first. Evicting an undelivered alert is logged as an error',
    ),
  minFreeDiskMiB: z
    .number()
    .min(0)
    .default(256)
    .describe(
      'When the disk holding the store has less free space than this, the store stops growing: new rows take the place of the oldest readings and results, delivered first; alerts go only by their own quota',
    ),
  quotaCheckSeconds: z
    .number()
    .positive()
    .default(10)
    .describe('How often quotas and free disk space are checked'),
});
export type StoreConfig = z.infer<typeof StoreConfig>;

export const HttpConfig = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve the ops endpoints'),
  host: z
    .string()
    .default('127.0.0.1')
    .describe(
      'Address to listen on; loopback (the default) keeps it private to the gateway. Another address lets the network read /metrics, /api/v1/* and the status page (docs/SECURITY.md)',
    ),
  port: port.default(8470).describe('TCP port'),
  tokenFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      'File holding the ops token (white space around it trimmed), relative to the config file; else the VIGIL_HTTP_TOKEN environment variable. Every request that changes state (POST, PUT, DELETE) must carry it as Authorization: Bearer <token>; without a token they are refused (docs/SECURITY.md)',
    ),
});

export const VigilConfig = z
  .strictObject({
    version: z.literal(1).default(1).describe('Config format version'),
    device: z
      .strictObject({
        id: name.describe('This gateway’s id; part of every MQTT topic'),
        group: name.optional().describe('Device group, for fleet-wide settings'),
      })
      .describe('This gateway'),
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .describe('Least severe level written; JSON lines on stderr'),
      })
      .default({ level: 'info' })
      .describe('Structured logging'),
    http: HttpConfig.default({ enabled: true, host: '127.0.0.1', port: 8470 }).describe(
      'Ops HTTP server: /healthz, /readyz, /metrics, /api/v1/*',
    ),
    mqtt: MqttConfig.prefault({}).describe('The MQTT broker alerts and status are published to'),
    store: StoreConfig.prefault({}).describe('SQLite store of readings, results and alerts'),
    upstream: UpstreamConfig.optional().describe(
      'Forwarding of stored alerts, results and readings to an upstream (cloud or plant) MQTT broker; absent: nothing is forwarded',
    ),
    registry: RegistryConfig.optional().describe(
      'The MLflow-compatible model registry that models with a registry: setting follow (docs/REGISTRY.md)',
    ),
    shutdown: z
      .strictObject({
        timeoutSeconds: z
          .number()
          .positive()
          .default(15)
          .describe('On SIGTERM, the daemon exits within this long, whatever is still in flight'),
      })
      .prefault({})
      .describe('Graceful shutdown'),
    telemetry: TelemetryConfig.default(TELEMETRY_DEFAULTS).describe(
      'Checks and batching applied to the readings of every telemetry source',
    ),
    models: z
      .record(name, ModelConfig.describe('A model package and how to run it'))
      .describe('Models by name'),
    sources: z
      .record(name, SourceConfig.describe('One source; `type` chooses which kind, with its settings below'))
      .describe('Sources by name'),
    pipelines: z
      .record(name, PipelineConfig.describe('Which sources feed which model, with its budget'))
      .describe('Pipelines by name'),
  })
  .describe('Vigil configuration');
export type VigilConfig = z.infer<typeof VigilConfig>;

type Loose = Record<string, unknown>;
const isObject = (v: unknown): v is Loose => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks between sections (a pipeline's sources and model exist; no two listeners share a port).
 * Kept outside the schema and tolerant of malformed input so that these problems are reported
 * together with schema errors, not only once every schema error is fixed.
 */
export function referenceIssues(raw: unknown): Array<{ path: string; message: string }> {
  const issues: Array<{ path: string; message: string }> = [];
  if (!isObject(raw)) return issues;
  const sources = isObject(raw.sources) ? raw.sources : {};
  const models = isObject(raw.models) ? raw.models : {};
  const pipelines = isObject(raw.pipelines) ? raw.pipelines : {};
  const list = (o: Loose) => Object.keys(o).join(', ') || 'none';
  for (const [pname, p] of Object.entries(pipelines)) {
    if (!isObject(p)) continue;
    if (Array.isArray(p.sources)) {
      p.sources.forEach((s, i) => {
        if (typeof s === 'string' && !(s in sources)) {
          issues.push({
            path: `pipelines.${pname}.sources.${i}`,
            message: `no source named '${s}' (defined: ${list(sources)})`,
          });
        }
      });
    }
    // hold keeps a tag's last good value: a frame has nothing to hold, so a frame pipeline
    // (one reading only cameras) cannot use it.
    const dq = isObject(p.dataQuality) ? p.dataQuality : {};
    const readsFrames =
      Array.isArray(p.sources) &&
      p.sources.length > 0 &&
      p.sources.every((s) => {
        const sc = typeof s === 'string' ? sources[s] : undefined;
        return isObject(sc) && typeof sc.type === 'string' && sc.type.startsWith('camera-');
      });
    if (dq.policy === 'hold' && readsFrames)
      issues.push({
        path: `pipelines.${pname}.dataQuality.policy`,
        message:
          'hold keeps the last good value of a telemetry tag; a frame pipeline has no value to hold. Use skip (the frame is not scored) or flag (scored, and the result says so)',
      });
    if (typeof p.model === 'string' && !(p.model in models)) {
      issues.push({
        path: `pipelines.${pname}.model`,
        message: `no model named '${p.model}' (defined: ${list(models)})`,
      });
    }
  }
  for (const [mname, m] of Object.entries(models)) {
    if (isObject(m) && m.registry !== undefined && raw.registry === undefined)
      issues.push({
        path: `models.${mname}.registry`,
        message: 'follows a registered model, but there is no registry: section with the registry URL',
      });
  }
  const ports = new Map<number, string>();
  const claim = (port: unknown, where: string) => {
    if (typeof port !== 'number' || port === 0) return;
    const prev = ports.get(port);
    if (prev) issues.push({ path: where, message: `port ${port} is already used by ${prev}` });
    else ports.set(port, where);
  };
  const http = isObject(raw.http) ? raw.http : {};
  if (http.enabled !== false) claim(http.port ?? 8470, 'http.port');
  for (const [sname, s] of Object.entries(sources)) {
    if (isObject(s) && s.type === 'camera-http') {
      const listen = isObject(s.listen) ? s.listen : {};
      claim(listen.port ?? 8471, `sources.${sname}.listen.port`);
    }
  }
  return issues;
}
