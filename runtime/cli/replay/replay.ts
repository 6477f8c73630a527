import { createWriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { loadConfigFile, resolvePath } from '../../config/load.js';
import { ConfigError, VigilError } from '../../errors.js';
import type { EngineOptions } from '../../engines/engine.js';
import { createLogger } from '../../log.js';
import { isTelemetryManifest } from '../../model/manifest.js';
import { ModelHost } from '../../model/host.js';
import { Metrics } from '../../ops/metrics.js';
import type { Alert, Result } from '../../pipeline/result.js';
import { TelemetryPipeline } from '../../pipeline/telemetry-pipeline.js';
import { ReadingGate, type TagLimitMap } from '../../telemetry/gate.js';
import { readReplayCsv } from './csv.js';

export interface ReplayOptions {
  config: string;
  input: string;
  /** 'max', or a factor of real time (cycles: one per second at 1). */
  speed: string;
  out: string;
  logLevel: string;
}

export interface ReplaySummary {
  rows: number;
  readings: number;
  refused: Record<string, number>;
  results: number;
  alerts: Record<string, number>;
  seconds: number;
  rowsPerSecond: number;
}

/**
 * `vigil replay`: recorded telemetry through the configured telemetry pipelines exactly as live
 * readings flow (the same checks, windows, models and alert hysteresis), one JSON line per model
 * result. Nothing is published on MQTT and nothing is stored: the output file is the record. At
 * `--speed max` each row waits only until the pipelines have taken the previous one, so no
 * window is superseded and a replay is exactly repeatable.
 */
export async function replayCommand(opts: ReplayOptions): Promise<ReplaySummary> {
  const speed = opts.speed === 'max' ? Infinity : Number(opts.speed);
  if (!(speed > 0))
    throw new VigilError(
      'VIGIL_ERR_CONFIG_INVALID',
      `--speed must be 'max' or a positive number, got '${opts.speed}'`,
    );
  let loaded;
  try {
    loaded = await loadConfigFile(opts.config);
  } catch (err) {
    if (err instanceof ConfigError) for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
    throw err;
  }
  const { config } = loaded;
  const log = createLogger({ level: opts.logLevel });
  const metrics = new Metrics({ processMetrics: false });
  const out = createWriteStream(opts.out);
  const summary: ReplaySummary = {
    rows: 0,
    readings: 0,
    refused: {},
    results: 0,
    alerts: {},
    seconds: 0,
    rowsPerSecond: 0,
  };

  const hosts = new Map<string, ModelHost>();
  const pipelines: Array<{ name: string; source: string; pipeline: TelemetryPipeline; gate: ReadingGate }> =
    [];
  try {
    for (const [name, pc] of Object.entries(config.pipelines)) {
      const mc = config.models[pc.model]!;
      let host = hosts.get(pc.model);
      if (!host) {
        const options: EngineOptions = { onnx: mc.onnx, tflite: mc.tflite, warmupRuns: mc.warmupRuns };
        host = new ModelHost(
          pc.model,
          resolvePath(loaded, mc.package),
          options,
          metrics,
          log.child({ model: pc.model }),
        );
        await host.load();
        hosts.set(pc.model, host);
      }
      const engine = host.current();
      if (!engine)
        throw new VigilError(
          'VIGIL_ERR_MODEL_LOAD',
          `model ${pc.model} of pipeline ${name} did not load: ${host.health().error?.message ?? 'unknown error'}`,
        );
      if (!isTelemetryManifest(engine.manifest)) continue; // frame pipelines have nothing to replay
      const source = pc.sources[0]!;
      const sc = config.sources[source] as { limits?: TagLimitMap } | undefined;
      // Recorded data is old by nature: the clock window of live ingest does not apply.
      const gate = new ReadingGate(sc?.limits ?? {}, {
        maxClockSkewSeconds: Infinity,
        maxAgeSeconds: Infinity,
      });
      const pipeline = new TelemetryPipeline({
        name,
        config: pc,
        deviceId: config.device.id,
        engine: () => host.current(),
        sink: { saveResult: () => undefined },
        publisher: { publishAlert: async () => ({ ackMs: 0 }), publishResult: () => undefined },
        metrics,
        log: log.child({ pipeline: name }),
        onResult: (result, alert) => write(name, result, alert),
      });
      pipelines.push({ name, source, pipeline, gate });
    }
    if (pipelines.length === 0)
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `${opts.config}: no pipeline runs a telemetry model, so there is nothing to replay`,
      );

    const started = performance.now();
    let firstAxis: number | undefined;
    let msPerAxisUnit = 1;
    const rows = readReplayCsv(opts.input, pipelines[0]!.source, (layout) => {
      // Time files follow their own clock; cycle files run one cycle per second; both scaled by speed.
      msPerAxisUnit = layout.axis === 'time' ? 1 : 1000;
    });
    for await (const row of rows) {
      summary.rows += 1;
      if (Number.isFinite(speed)) {
        firstAxis ??= row.axis;
        const dueMs = ((row.axis - firstAxis) * msPerAxisUnit) / speed;
        const wait = started + dueMs - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      for (const p of pipelines) {
        const now = Date.now();
        const accepted = [];
        for (const r of row.readings) {
          const reading = { ...r, source: p.source };
          const refusal = p.gate.check(reading, now);
          if (refusal) summary.refused[refusal.reason] = (summary.refused[refusal.reason] ?? 0) + 1;
          else accepted.push(reading);
        }
        summary.readings += accepted.length;
        p.pipeline.offer(accepted);
        await p.pipeline.idle();
      }
    }
    for (const p of pipelines) {
      p.pipeline.flush();
      await p.pipeline.idle();
    }
    summary.seconds = Math.round((performance.now() - started) / 10) / 100;
    summary.rowsPerSecond = Math.round(summary.rows / Math.max(summary.seconds, 1e-3));
  } finally {
    for (const p of pipelines) await p.pipeline.stop().catch(() => undefined);
    for (const h of hosts.values()) await h.close().catch(() => undefined);
    await new Promise<void>((resolve) => out.end(resolve));
    log.flush();
  }
  return summary;

  function write(pipeline: string, result: Result, alert: Alert | undefined): void {
    summary.results += 1;
    if (alert) {
      const key = `${alert.kind}:${alert.details?.state ?? 'raised'}`;
      summary.alerts[key] = (summary.alerts[key] ?? 0) + 1;
    }
    const d = result.details;
    out.write(
      JSON.stringify({
        pipeline,
        asset: result.asset ?? result.origin,
        axis: d?.axisEnd,
        time: d?.endTime !== undefined ? new Date(d.endTime).toISOString() : undefined,
        model: { name: result.model.name, version: result.model.version },
        label: result.label,
        score: result.score,
        outputs: result.scores,
        details: d,
        alerts: alert ? [alert] : [],
      }) + '\n',
    );
  }
}

export function printReplaySummary(s: ReplaySummary, out: string, say: (l: string) => void): void {
  say(
    `replayed ${s.rows} rows (${s.readings} readings) in ${s.seconds} s, ${s.rowsPerSecond} rows/s; ` +
      `${s.results} results, alerts ${JSON.stringify(s.alerts)}; refused ${JSON.stringify(s.refused)}; written to ${out}`,
  );
}
