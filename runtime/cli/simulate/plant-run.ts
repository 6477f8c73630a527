import { existsSync } from 'node:fs';
import path from 'node:path';
import type { MachineTruth } from '../../../simulator/machines/types.js';
import { Plant } from '../../../simulator/plant/plant.js';
import { SimError } from '../../../simulator/machines/errors.js';
import { loadScenarioFile, parseScenario, shippedScenario } from '../../../simulator/scenario/load.js';
import type { Scenario } from '../../../simulator/scenario/scenario.js';
import type { Daemon } from '../../daemon.js';
import type { TelemetryPipelineStats } from '../../pipeline/telemetry-pipeline.js';
import type { SourceTelemetryStats } from '../../telemetry/ingest.js';
import { repoRoot } from './defaults.js';
import { plantWiring } from './telemetry-sources.js';

/**
 * The telemetry half of `vigil simulate`: the scenario's machines behind their real protocol
 * servers (the simulated plant), the Vigil sources that read them, a periodic line showing what
 * arrives, and the telemetry part of the report.
 */

export interface TelemetryReport {
  scenario: string;
  /** The maintenance and anomaly pipelines: windows scored and skipped, alerts, latency. */
  pipelines: Record<string, TelemetryPipelineStats>;
  storedReadings: number;
  sources: Record<string, SourceTelemetryStats & { state: string; type: string }>;
  machines: Record<string, MachineTruth & { kind: string }>;
}

/** A shipped scenario by name (`default`, `factory-faults`...) or a scenario file. */
export function resolveScenario(nameOrFile: string): string {
  if (existsSync(nameOrFile)) return path.resolve(nameOrFile);
  const shipped = shippedScenario(nameOrFile);
  if (existsSync(shipped)) return shipped;
  throw new Error(
    `no scenario '${nameOrFile}': neither a file nor one of the shipped scenarios in ${path.dirname(shipped)}`,
  );
}

export async function startPlant(opts: {
  scenario: string;
  mqttUrl: string;
  workDir: string;
  say: (line: string) => void;
}): Promise<{
  plant: Plant;
  sources: Record<string, Record<string, unknown>>;
  models: Record<string, Record<string, unknown>>;
  pipelines: Record<string, Record<string, unknown>>;
  scenarioFile: string;
}> {
  const scenarioFile = resolveScenario(opts.scenario);
  const scenario = loadScenarioFile(scenarioFile);
  const start = (sc: Scenario) =>
    Plant.start({
      scenario: sc,
      mqttUrl: opts.mqttUrl,
      workDir: path.join(opts.workDir, 'plant'),
      log: (line) => opts.say(`  plant: ${line}`),
      onSerialUnavailable: (asset, err) =>
        opts.say(
          `  plant: ${asset} runs without its serial line: ${err instanceof Error ? err.message : String(err)}`,
        ),
    });
  let plant: Plant;
  try {
    plant = await start(scenario);
  } catch (err) {
    // Without the C-MAPSS data (it is not part of the repository) the demo still shows the rest.
    if (!(err instanceof SimError && err.code === 'SIM_ERR_DATASET_MISSING')) throw err;
    opts.say(`  plant: the aircraft engines are left out: ${err.message}`);
    plant = await start(withoutEngines(scenario));
  }
  const { sources, assetSource } = plantWiring(plant.endpoints, {
    mqttUrl: opts.mqttUrl,
    pkiFolder: path.join(opts.workDir, 'pki', 'opcua'),
  });
  return { plant, sources, ...maintenancePipelines(plant, assetSource), scenarioFile };
}

/**
 * The shipped maintenance and anomaly models, per machine kind, that `vigil simulate` runs on
 * the plant's telemetry: pipeline name suffix -> package folder (relative to the repository).
 */
const MAINTENANCE_MODELS: Record<string, Record<string, string>> = {
  pump: {
    failure: 'models/machine-failure/packages/pump-failure-gbt',
    anomaly: 'models/anomaly/packages/pump-anomaly-iforest',
  },
  spindle: { failure: 'models/machine-failure/packages/spindle-failure-gbt' },
  'cmapss-engine': { rul: 'models/engine-rul/packages/engine-rul-int8-onnx' },
};

function maintenancePipelines(
  plant: Plant,
  assetSource: Record<string, string>,
): { models: Record<string, Record<string, unknown>>; pipelines: Record<string, Record<string, unknown>> } {
  const models: Record<string, Record<string, unknown>> = {};
  const pipelines: Record<string, Record<string, unknown>> = {};
  const root = repoRoot();
  for (const [kind, packages] of Object.entries(MAINTENANCE_MODELS)) {
    const assets = plant.machines.filter((m) => m.kind === kind && assetSource[m.asset]).map((m) => m.asset);
    if (assets.length === 0) continue;
    for (const [what, pkg] of Object.entries(packages)) {
      const dir = path.join(root, pkg);
      if (!existsSync(path.join(dir, 'vigil.json'))) continue;
      const name = `${kind === 'cmapss-engine' ? 'engine' : kind}-${what}`;
      models[name] = { package: dir };
      pipelines[name] = {
        sources: [...new Set(assets.map((a) => assetSource[a]!))],
        model: name,
        assets,
        severity: { risk: 'critical', rul: 'critical', anomaly: 'warning' },
      };
    }
  }
  return { models, pipelines };
}

/** The scenario without its C-MAPSS engines (and their faults). */
function withoutEngines(scenario: Scenario): Scenario {
  const machines = Object.fromEntries(
    Object.entries(scenario.spec.machines).filter(([, m]) => m.kind !== 'cmapss-engine'),
  );
  const faults = scenario.spec.faults.filter(
    (f) => !('asset' in f) || f.asset === undefined || f.asset in machines,
  );
  return parseScenario({ ...scenario.spec, machines, faults }, scenario.file);
}

/** One line every `everyMs` with what each telemetry source delivered, and machine state changes. */
export function watchTelemetry(
  daemon: Daemon,
  plant: Plant,
  say: (line: string) => void,
  everyMs = 5_000,
): () => void {
  const last = new Map<string, string>();
  const before = new Map<string, number>();
  const timer = setInterval(() => {
    const status = daemon.status() as {
      telemetry?: Record<string, SourceTelemetryStats & { state: string }>;
    };
    const parts: string[] = [];
    for (const [name, s] of Object.entries(status.telemetry ?? {})) {
      const total = s.readings.good + s.readings.uncertain + s.readings.bad;
      const delta = total - (before.get(name) ?? 0);
      before.set(name, total);
      const rejected = Object.values(s.rejected).reduce((a, b) => a + (b ?? 0), 0);
      parts.push(`${name} ${s.state} +${delta}${rejected ? ` (${rejected} refused)` : ''}`);
    }
    const values = daemon
      .latestReadings()
      .filter((r) => ['temperature', 'vibration_rms', 's11', 'cycle'].includes(r.tag))
      .map((r) => `${r.asset}.${r.tag}=${r.value === null ? r.quality : round(r.value)}`);
    say(`[telemetry] ${parts.join(', ')}${values.length ? `  | ${values.join(' ')}` : ''}`);
    const scored = [...daemon.telemetryPipelines].map(([n, p]) => `${n} ${p.snapshot().windowsScored}`);
    if (scored.length) say(`[models] windows scored: ${scored.join(', ')}`);
    for (const m of plant.machines) {
      const t = m.truth();
      const state = `${t.state}${t.unit !== undefined ? ` unit ${t.unit}` : ''}`;
      if (last.get(m.asset) !== state) {
        if (last.has(m.asset)) {
          const extra = t.remainingCycles !== undefined ? `, ${t.remainingCycles} cycles left` : '';
          say(`[machine] ${m.asset} is now ${state}${t.failureMode ? ` (${t.failureMode})` : ''}${extra}`);
        }
        last.set(m.asset, state);
      }
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

export function telemetryReport(daemon: Daemon, plant: Plant, scenarioFile: string): TelemetryReport {
  const status = daemon.status() as { telemetry?: Record<string, SourceTelemetryStats & { state: string }> };
  const sources: TelemetryReport['sources'] = {};
  for (const [name, s] of Object.entries(status.telemetry ?? {}))
    sources[name] = { ...s, type: daemon.sources.get(name)?.type ?? '?' };
  const pipelines: Record<string, TelemetryPipelineStats> = {};
  for (const [name, p] of daemon.telemetryPipelines) pipelines[name] = p.snapshot();
  return {
    scenario: scenarioFile,
    pipelines,
    storedReadings: daemon.countReadings(),
    sources,
    machines: Object.fromEntries(plant.machines.map((m) => [m.asset, { kind: m.kind, ...m.truth() }])),
  };
}

const round = (x: number) => Math.round(x * 100) / 100;
