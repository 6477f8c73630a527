import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, whether running from runtime/ (vitest) or dist/runtime/ (compiled). */
export function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const parts = here.split(path.sep);
  const i = parts.lastIndexOf('runtime');
  const root = parts.slice(0, i).join(path.sep) || path.sep;
  return path.basename(root) === 'dist' ? path.dirname(root) : root;
}

export const DEFAULT_MODEL_PACKAGE = 'models/defect/packages/defect-int8-onnx';

export interface SimulateSettings {
  dataDir: string;
  modelPackage: string;
  mqttUrl: string;
  httpPort: number;
  httpCameraPort: number;
  withHttpCamera: boolean;
  logLevel: string;
  /** Telemetry sources reading the simulated plant (from plantSources); none without telemetry. */
  telemetrySources?: Record<string, Record<string, unknown>>;
  /** Maintenance and anomaly models and pipelines on that telemetry. */
  telemetryModels?: Record<string, Record<string, unknown>>;
  telemetryPipelines?: Record<string, Record<string, unknown>>;
}

/** The embedded config of `vigil simulate`: the same shape a user writes in YAML. */
export function simulateConfig(s: SimulateSettings): Record<string, unknown> {
  const sources: Record<string, unknown> = {
    'line1-cam': {
      type: 'camera-folder',
      path: path.join(s.dataDir, 'incoming', 'line1-cam'),
      afterRead: 'delete',
      // A data expectation (docs/DATA-QUALITY.md): the simulated cameras send JPEG and PNG only,
      // so this never fires in the demo; anything else would be flagged and not scored.
      expectations: { image: { formats: ['jpeg', 'png'] } },
    },
  };
  if (s.withHttpCamera) {
    sources['line2-cam'] = {
      type: 'camera-http',
      listen: { host: '127.0.0.1', port: s.httpCameraPort },
      path: '/frames',
    };
  }
  return {
    version: 1,
    device: { id: 'sim-gateway' },
    log: { level: s.logLevel },
    http: { enabled: true, host: '127.0.0.1', port: s.httpPort },
    mqtt: { url: s.mqttUrl, topicPrefix: 'vigil' },
    store: { path: path.join(s.dataDir, 'vigil.db') },
    // Store and forward, shown on the embedded broker in place of a plant or cloud broker:
    // vigil/sim-gateway/upstream/<class>.
    upstream: { url: s.mqttUrl, topicPrefix: 'vigil' },
    models: { defect: { package: s.modelPackage }, ...(s.telemetryModels ?? {}) },
    sources: { ...sources, ...(s.telemetrySources ?? {}) },
    pipelines: {
      inspection: {
        sources: Object.keys(sources),
        model: 'defect',
        budgetMs: 100,
        severity: { crack: 'critical', scratch: 'warning', inclusion: 'warning' },
      },
      ...(s.telemetryPipelines ?? {}),
    },
  };
}
