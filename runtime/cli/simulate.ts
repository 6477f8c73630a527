import { mkdtemp, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import { FolderSink, HttpSink } from '../../simulator/camera/sinks.js';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import type { FrameTruth } from '../../simulator/camera/types.js';
import { startEmbeddedBroker } from '../broker/embedded.js';
import { parseConfig } from '../config/load.js';
import { Daemon } from '../daemon.js';
import { ConfigError, errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { preferredOrFreePort } from '../net.js';
import type { Alert, Result } from '../pipeline/result.js';
import { DEFAULT_MODEL_PACKAGE, repoRoot, simulateConfig } from './simulate/defaults.js';
import { AssetTruthRecorder } from './simulate/asset-truth.js';
import { startPlant, telemetryReport, watchTelemetry } from './simulate/plant-run.js';
import { scoreAgainstTruth, type SimulateReport } from './simulate/report.js';
import { VERSION } from '../version.js';

export interface SimulateOptions {
  duration?: number;
  frames?: number;
  seed: number;
  report?: string;
  fps: number;
  httpFps: number;
  defectRate: number;
  width: number;
  height: number;
  model?: string;
  mqttPort: number;
  httpPort: number;
  dataDir?: string;
  quiet?: boolean;
  logLevel: string;
  /** A shipped scenario name or a scenario file for the telemetry machines. */
  scenario: string;
  /** false with --no-telemetry: cameras only. */
  telemetry: boolean;
}

/**
 * `vigil simulate`: the whole product on one machine with nothing installed: an embedded MQTT
 * broker, simulated cameras that reach the daemon through its real ingest paths (a watched
 * folder and HTTP POST), the daemon itself, and an MQTT subscriber that sees what any user
 * would. The simulator knows the truth of every frame, so the summary scores the alerts.
 */
export async function simulateCommand(opts: SimulateOptions): Promise<void> {
  const started = new Date();
  const root = repoRoot();
  const dataDir = opts.dataDir
    ? path.resolve(opts.dataDir)
    : await mkdtemp(path.join(os.tmpdir(), 'vigil-sim-'));
  await mkdir(dataDir, { recursive: true });
  const log = createLogger({ level: opts.logLevel });
  const say = (line: string) => process.stdout.write(line + '\n');

  const broker = await startEmbeddedBroker({
    host: '127.0.0.1',
    port: opts.mqttPort,
    log: log.child({ component: 'broker' }),
  });
  if (opts.mqttPort !== 0 && broker.port !== opts.mqttPort)
    say(`port ${opts.mqttPort} is taken: the embedded MQTT broker listens on ${broker.port} instead`);
  const http = await preferredOrFreePort('127.0.0.1', opts.httpPort);
  if (http.moved) say(`port ${opts.httpPort} is taken: the ops HTTP server listens on ${http.port} instead`);
  const cameraPort = await preferredOrFreePort('127.0.0.1', 8471);

  const modelPackage = opts.model ? path.resolve(opts.model) : path.join(root, DEFAULT_MODEL_PACKAGE);
  let telemetry: Awaited<ReturnType<typeof startPlant>> | undefined;
  if (opts.telemetry) {
    try {
      telemetry = await startPlant({ scenario: opts.scenario, mqttUrl: broker.url, workDir: dataDir, say });
    } catch (err) {
      await broker.close();
      throw new Error(`the simulated plant could not start: ${errorMessage(err)}`, { cause: err });
    }
  }
  const stopPlant = async () => telemetry?.plant.stop();
  const truthRecorder = telemetry ? new AssetTruthRecorder(telemetry.plant.machines) : undefined;
  let loaded;
  try {
    loaded = parseConfig(
      simulateConfig({
        dataDir,
        modelPackage,
        mqttUrl: broker.url,
        httpPort: http.port,
        httpCameraPort: cameraPort.port,
        withHttpCamera: opts.httpFps > 0,
        logLevel: opts.logLevel,
        telemetrySources: telemetry?.sources,
        telemetryModels: telemetry?.models,
        telemetryPipelines: telemetry?.pipelines,
      }),
      '(embedded simulate config)',
      root,
    );
  } catch (err) {
    await stopPlant();
    await broker.close();
    if (err instanceof ConfigError) for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
    throw err;
  }

  const results = new Map<string, Result>();
  const truth = new Map<string, FrameTruth>();
  const t0 = Date.now();
  const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;

  // An ordinary MQTT subscriber, as a user with mosquitto_sub would be.
  const prefix = `vigil/${loaded.config.device.id}`;
  let subscriber: mqtt.MqttClient;
  try {
    subscriber = await mqtt.connectAsync(broker.url, { clientId: `vigil-simulate-watch-${process.pid}` });
  } catch (err) {
    await stopPlant();
    await broker.close();
    throw new Error(`cannot watch the embedded broker at ${broker.url}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  let alertsReceived = 0;
  subscriber.on('message', (_topic, payload) => {
    alertsReceived++;
    if (opts.quiet) return;
    try {
      const a = JSON.parse(payload.toString()) as Alert;
      if (a.asset !== undefined) {
        const d = a.details;
        const value =
          d?.rul !== undefined
            ? `RUL ${d.rul.toFixed(0)} ${d.unit ?? ''}`
            : d?.probability !== undefined
              ? `p(failure within ${d.horizon ?? '?'} ${d.unit ?? ''}) ${d.probability.toFixed(2)}`
              : `score ${a.score.toFixed(3)}`;
        const top = d?.topTags.map((t) => `${t.tag} z=${t.z.toFixed(1)}`).join(', ');
        say(
          `${stamp()} ALERT ${a.kind} ${d?.state ?? 'raised'} ${a.asset} ${a.severity}: ${value}${top ? `  (most unusual: ${top})` : ''}  model ${a.model.name} ${a.model.version}`,
        );
        return;
      }
      const t = truth.get(a.origin);
      const verdict = !t
        ? ''
        : t.label === 'ok'
          ? '  (false alarm: frame was ok)'
          : t.label === a.label
            ? '  ✓'
            : `  (truth: ${t.label})`;
      say(
        `${stamp()} ALERT ${a.kind}/${a.label.padEnd(9)} ${a.severity.padEnd(8)} score ${a.score.toFixed(3)}  ${a.source}  ${a.origin}  ${a.latencyMs.toFixed(1)} ms${verdict}`,
      );
    } catch {
      say(`${stamp()} ALERT (unparseable payload)`);
    }
  });
  await subscriber.subscribeAsync(`${prefix}/alerts/#`, { qos: 1 });

  let daemon: Daemon;
  try {
    daemon = await Daemon.start(loaded, log, {
      onResult: (r, alert) => {
        if (r.asset === undefined) results.set(r.origin, r);
        else if (alert) truthRecorder?.onAlert(alert);
      },
    });
  } catch (err) {
    await subscriber.endAsync().catch(() => undefined);
    await stopPlant();
    await broker.close();
    throw new Error(`the simulated gateway could not start: ${errorMessage(err)}`, { cause: err });
  }
  const modelHealth = daemon.health().models[0]!;
  if (!modelHealth.ready || !modelHealth.model) {
    await subscriber.endAsync().catch(() => undefined);
    await daemon.stop();
    await stopPlant();
    await broker.close();
    throw new Error(
      `the simulated gateway's model did not load: ${modelHealth.error?.message ?? 'unknown error'}`,
    );
  }
  const model = {
    model: modelHealth.model,
    version: modelHealth.version ?? '?',
    backend: modelHealth.backend ?? '?',
    provider: modelHealth.provider ?? '?',
  };

  const cameras: Array<{ camera: SimCamera; transport: string; fps: number }> = [];
  const cameraError = (message: string, origin: string | undefined) =>
    say(`${stamp()} camera: ${origin ?? ''} ${message}`);
  const folderCam = new SimCamera({
    name: 'line1-cam',
    fps: opts.fps,
    width: opts.width,
    height: opts.height,
    defectRate: opts.defectRate,
    seed: opts.seed,
    format: 'jpeg',
    sink: new FolderSink(path.join(dataDir, 'incoming', 'line1-cam')),
    render: renderFrame,
    maxFrames: opts.frames,
    onError: cameraError,
  });
  cameras.push({ camera: folderCam, transport: 'folder', fps: opts.fps });
  if (opts.httpFps > 0) {
    const httpCam = new SimCamera({
      name: 'line2-cam',
      fps: opts.httpFps,
      width: opts.width,
      height: opts.height,
      defectRate: opts.defectRate,
      seed: opts.seed + 1,
      format: 'png',
      sink: new HttpSink(`http://127.0.0.1:${cameraPort.port}/frames`),
      render: renderFrame,
      maxFrames: opts.frames,
      onError: cameraError,
    });
    cameras.push({ camera: httpCam, transport: 'http', fps: opts.httpFps });
  }

  say(
    `Vigil ${VERSION} simulate: seed ${opts.seed}, model ${model.model} ${model.version} on ${model.backend}/${model.provider}`,
  );
  say(
    `  cameras: ${cameras.map((c) => `${c.camera.name} (${c.transport}, ${c.fps} fps)`).join(', ')}; data in ${dataDir}`,
  );
  if (telemetry) {
    const names = Object.entries(telemetry.sources).map(([n, s]) => `${n} (${String(s.type)})`);
    say(
      `  telemetry: scenario ${path.basename(telemetry.scenarioFile)}: ${telemetry.plant.machines.map((m) => `${m.asset} (${m.kind})`).join(', ')}`,
    );
    say(`    read through ${names.join(', ')}`);
  }
  say(`  MQTT: ${broker.url}  watch with: mosquitto_sub -h 127.0.0.1 -p ${broker.port} -t 'vigil/#' -v`);
  say(`  HTTP: ${daemon.httpUrl}/metrics, /readyz, /api/v1/status`);
  say(
    opts.frames
      ? `  running until each camera has sent ${opts.frames} frames ...`
      : opts.duration
        ? `  running for ${opts.duration} s ...`
        : '  running until Ctrl-C ...',
  );

  for (const c of cameras) c.camera.start();
  const unwatch = telemetry && !opts.quiet ? watchTelemetry(daemon, telemetry.plant, say) : () => undefined;
  truthRecorder?.start();
  await new Promise<void>((resolve) => {
    const timer = opts.duration ? setTimeout(resolve, opts.duration * 1000) : undefined;
    const done = () => {
      if (timer) clearTimeout(timer);
      resolve();
    };
    if (opts.frames) void Promise.all(cameras.map((c) => c.camera.finished)).then(done);
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  const elapsed = (Date.now() - t0) / 1000;
  unwatch();
  truthRecorder?.stop();
  for (const c of cameras) await c.camera.stop();
  for (const c of cameras) for (const [origin, t] of c.camera.truth) truth.set(origin, t);
  // Let the last frames arrive (the folder source needs stableMs to see a file as complete) and
  // finish, for at most a few seconds.
  const delivered = cameras.reduce((n, c) => n + c.camera.stats.delivered, 0);
  const settleBy = Date.now() + 5_000;
  const seen = () => [...daemon.pipelines.values()].reduce((n, p) => n + p.snapshot().seen, 0);
  while (seen() < delivered && Date.now() < settleBy) await new Promise((r) => setTimeout(r, 100));
  for (const p of daemon.pipelines.values()) await p.idle();
  await new Promise((r) => setTimeout(r, 200));

  const report: SimulateReport = {
    vigil: VERSION,
    startedAt: started.toISOString(),
    durationSeconds: Math.round(elapsed * 10) / 10,
    seed: opts.seed,
    device: loaded.config.device.id,
    model: {
      name: model.model,
      version: model.version,
      backend: model.backend,
      provider: model.provider,
      package: modelPackage,
    },
    cameras: Object.fromEntries(
      cameras.map((c) => [
        c.camera.name,
        {
          transport: c.transport,
          fps: c.fps,
          framesSent: c.camera.stats.delivered,
          renderSkipped: c.camera.stats.skipped,
          sendErrors: c.camera.stats.failed,
        },
      ]),
    ),
    pipelines: {},
    inputErrors: await inputErrorCounts(daemon),
    mqtt: { broker: broker.url, alertsReceivedBySubscriber: alertsReceived },
    ...upstreamReport(daemon.status().upstream),
    ...(telemetry
      ? {
          telemetry: telemetryReport(daemon, telemetry.plant, telemetry.scenarioFile),
          assets: truthRecorder!.report(telemetry.plant.built.injectedFaults()),
        }
      : {}),
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  for (const [name, p] of daemon.pipelines) {
    const s = p.snapshot();
    const pc = loaded.config.pipelines[name]!;
    report.pipelines[name] = {
      budgetMs: pc.budgetMs,
      samples: {
        seen: s.seen,
        processed: s.processed,
        dropped: Object.values(s.dropped).reduce((a, b) => a + b, 0),
        droppedByReason: s.dropped,
      },
      latencyMs: s.latencyMs,
      alertLatencyMs: s.alertLatencyMs,
      stagesMs: s.stagesMs,
      budgetExceeded: s.budgetExceeded,
      alerts: s.alerts,
      truth: scoreAgainstTruth(truthFor(pc.sources, truth), results),
    };
  }

  await subscriber.endAsync().catch(() => undefined);
  await daemon.stop();
  await stopPlant();
  await broker.close();
  log.flush();

  printSummary(report, say);
  if (opts.report) {
    await writeFile(opts.report, JSON.stringify(report, null, 2) + '\n');
    say(`report written to ${opts.report}`);
  }
}

/** The truth of the frames sent by the cameras a pipeline reads (origins start with the camera name). */
function truthFor(sources: string[], truth: Map<string, FrameTruth>): Map<string, FrameTruth> {
  return new Map([...truth].filter(([origin]) => sources.some((s) => origin.startsWith(`${s}-`))));
}

async function inputErrorCounts(daemon: Daemon): Promise<Record<string, number>> {
  const metric = await daemon.metrics.inputErrors.get();
  const out: Record<string, number> = {};
  for (const v of metric.values) out[`${v.labels.source}/${v.labels.reason}`] = v.value;
  return out;
}

function printSummary(r: SimulateReport, say: (l: string) => void): void {
  say('');
  say(
    `Summary after ${r.durationSeconds} s (seed ${r.seed}, ${r.model.name} ${r.model.version}, ${r.model.backend}/${r.model.provider}):`,
  );
  for (const [name, p] of Object.entries(r.pipelines)) {
    const l = p.latencyMs;
    const a = p.alertLatencyMs;
    say(
      `  pipeline ${name}: ${p.samples.seen} frames seen, ${p.samples.processed} processed, ${p.samples.dropped} dropped ${JSON.stringify(p.samples.droppedByReason)}`,
    );
    if (l)
      say(
        `    latency to stored   p50 ${l.p50} ms  p95 ${l.p95} ms  p99 ${l.p99} ms  max ${l.max} ms  (budget ${p.budgetMs} ms)`,
      );
    if (a) say(`    latency to alert ack p50 ${a.p50} ms  p95 ${a.p95} ms  p99 ${a.p99} ms  max ${a.max} ms`);
    const t = p.truth;
    say(
      `    alerts ${JSON.stringify(p.alerts)}; vs truth: ${t.truePositives} caught, ${t.misses} missed, ${t.falsePositives} false alarms, ${t.trueNegatives} correct passes, ${t.notProcessed} not processed; precision ${t.precision ?? '-'} recall ${t.recall ?? '-'}`,
    );
  }
  if (r.telemetry) {
    say(`  telemetry: ${r.telemetry.storedReadings} readings stored`);
    for (const [name, s] of Object.entries(r.telemetry.sources)) {
      const refused = Object.entries(s.rejected)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      say(
        `    ${name} (${s.type}, ${s.state}): ${s.readings.good} good, ${s.readings.uncertain} uncertain, ${s.readings.bad} bad; ${s.reconnects} reconnects${refused ? `; refused: ${refused}` : ''}`,
      );
    }
  }
  for (const [name, p] of Object.entries(r.telemetry?.pipelines ?? {})) {
    const skipped = Object.entries(p.windowsSkipped)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    say(
      `  pipeline ${name} (${p.model?.name ?? '?'} ${p.model?.version ?? ''}): ${p.windowsScored} windows scored${skipped ? `, skipped: ${skipped}` : ''}; alerts raised ${JSON.stringify(p.alerts.raised)}, cleared ${JSON.stringify(p.alerts.cleared)}${p.latencyMs ? `; window to stored p50 ${p.latencyMs.p50} ms, p99 ${p.latencyMs.p99} ms` : ''}`,
    );
  }
  if (r.assets) {
    const a = r.assets;
    for (const f of a.failures)
      say(
        `    ${f.asset} failed (${f.mode ?? '?'}) at ${new Date(f.at).toISOString()}: ${f.leadSeconds === null ? 'MISSED, no failure_risk alert before it' : `failure_risk alert ${f.leadSeconds} s before`}`,
      );
    say(
      `  maintenance: ${a.failures.length} failures, ${a.missedFailures} missed, ${a.falseAlarms} false alarms, ${a.openAlerts} alerts still open; anomaly: ${a.anomaly.faultsDetected} of ${a.anomaly.faultsInjected} injected faults detected (delays ${JSON.stringify(a.anomaly.delaysSeconds)} s), ${a.anomaly.alertsWithoutFault} alerts without a fault`,
    );
  }
  say(
    `  MQTT subscriber received ${r.mqtt.alertsReceivedBySubscriber} alerts; input errors ${JSON.stringify(r.inputErrors)}; peak RSS ${r.peakRssMb} MB`,
  );
  if (r.upstream)
    say(
      `  upstream (${r.upstream.state}): delivered ${JSON.stringify(r.upstream.delivered)}, still waiting ${JSON.stringify(r.upstream.backlog)}`,
    );
}

function upstreamReport(status: unknown): Pick<SimulateReport, 'upstream'> {
  const u = status as
    | {
        enabled: boolean;
        state?: string;
        classes?: Record<string, { rows: number; deliveredThisRun: number }>;
      }
    | undefined;
  if (!u?.enabled || !u.classes) return {};
  const classes = Object.entries(u.classes);
  return {
    upstream: {
      state: u.state ?? 'unknown',
      delivered: Object.fromEntries(classes.map(([c, v]) => [c, v.deliveredThisRun])),
      backlog: Object.fromEntries(classes.map(([c, v]) => [c, v.rows])),
    },
  };
}
