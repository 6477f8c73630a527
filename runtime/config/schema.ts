import { z } from 'zod';
import { CameraFolderSource, CameraHttpSource } from './sources/camera.js';
import { MqttJsonSource, MqttTls, SparkplugSource } from './sources/mqtt.js';
import { ModbusRtuSource, SerialLineSource } from './sources/serial.js';
import { OpcUaSource } from './sources/opcua.js';
import { TELEMETRY_DEFAULTS, TelemetryConfig } from './sources/telemetry.js';

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
});
export type ModelConfig = z.infer<typeof ModelConfig>;

export const Severity = z.enum(['info', 'warning', 'critical']);

export const PipelineConfig = z.strictObject({
  sources: z.array(name).min(1).describe('Names of the sources this pipeline reads'),
  model: name.describe('Name of the model (under models:) this pipeline runs'),
  budgetMs: z
    .number()
    .positive()
    .default(100)
    .describe('Latency budget from frame arrival to alert published; frames that cannot make it are dropped'),
  concurrency: z
    .number()
    .int()
    .min(1)
    .max(4)
    .default(2)
    .describe(
      'Frames in progress at once: 2 decodes one frame while the model runs on another (the model runs one at a time); 1 processes strictly one by one',
    ),
  threshold: z
    .number()
    .min(0)
    .max(1)
    .optional()
    .describe('Overrides the alert threshold from the model manifest'),
  severity: z
    .record(z.string(), Severity)
    .default({})
    .describe('Alert severity per label; labels not listed are "warning"'),
  publishResults: z.boolean().default(false).describe('Also publish every result on results/<pipeline>'),
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
  password: z.string().optional().describe('Or set VIGIL_MQTT_PASSWORD'),
  topicPrefix: z
    .string()
    .regex(/^[^#+]+$/, 'no MQTT wildcards')
    .default('vigil')
    .describe('Topics are <topicPrefix>/<device id>/alerts/<kind>, .../status, .../results/<pipeline>'),
  tls: MqttTls.optional().describe('TLS settings for mqtts:// URLs'),
  keepaliveSeconds: z.number().int().min(0).default(30).describe('MQTT keep-alive interval'),
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
});
export type StoreConfig = z.infer<typeof StoreConfig>;

export const HttpConfig = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve the ops endpoints'),
  host: z
    .string()
    .default('127.0.0.1')
    .describe('Address to listen on; loopback keeps it private to the gateway'),
  port: port.default(8470).describe('TCP port'),
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
    mqtt: MqttConfig.default({
      url: 'mqtt://127.0.0.1:1883',
      topicPrefix: 'vigil',
      keepaliveSeconds: 30,
    }).describe('The MQTT broker alerts and status are published to'),
    store: StoreConfig.default({
      path: 'vigil-data/vigil.db',
      retentionHours: 168,
      maxRows: 1_000_000,
      maxReadings: 10_000_000,
    }).describe('SQLite store of readings, results and alerts'),
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
    if (typeof p.model === 'string' && !(p.model in models)) {
      issues.push({
        path: `pipelines.${pname}.model`,
        message: `no model named '${p.model}' (defined: ${list(models)})`,
      });
    }
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
