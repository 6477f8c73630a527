import type { FrameTruth } from '../../../simulator/camera/types.js';
import type { PipelineStats } from '../../pipeline/pipeline.js';
import type { Result } from '../../pipeline/result.js';
import type { AssetTruthReport } from './asset-truth.js';
import type { TelemetryReport } from './plant-run.js';

export interface TruthCounts {
  framesSent: number;
  defective: number;
  ok: number;
  /** Defective frames that raised an alert. */
  truePositives: number;
  /** Good frames that raised an alert. */
  falsePositives: number;
  /** Defective frames processed without an alert. */
  misses: number;
  trueNegatives: number;
  /** Frames sent but with no stored result (dropped, refused, or still in flight at the end). */
  notProcessed: number;
  /** Alerts whose label named the right defect class. */
  correctClass: number;
  precision: number | null;
  recall: number | null;
}

/** Scores what Vigil stored against what the simulator knows it sent, matched by frame origin. */
export function scoreAgainstTruth(
  truth: Map<string, FrameTruth>,
  results: Map<string, Result>,
  okLabel = 'ok',
): TruthCounts {
  const c: TruthCounts = {
    framesSent: truth.size,
    defective: 0,
    ok: 0,
    truePositives: 0,
    falsePositives: 0,
    misses: 0,
    trueNegatives: 0,
    notProcessed: 0,
    correctClass: 0,
    precision: null,
    recall: null,
  };
  for (const [origin, t] of truth) {
    const defective = t.label !== okLabel;
    if (defective) c.defective++;
    else c.ok++;
    const r = results.get(origin);
    if (!r) {
      c.notProcessed++;
      continue;
    }
    const alerted = r.alertId !== undefined;
    if (defective && alerted) {
      c.truePositives++;
      const defectLabel = Object.entries(r.scores)
        .filter(([l]) => l !== okLabel)
        .sort((a, b) => b[1] - a[1])[0]?.[0];
      if (defectLabel === t.label) c.correctClass++;
    } else if (defective) c.misses++;
    else if (alerted) c.falsePositives++;
    else c.trueNegatives++;
  }
  const alerts = c.truePositives + c.falsePositives;
  c.precision = alerts > 0 ? round4(c.truePositives / alerts) : null;
  const found = c.truePositives + c.misses;
  c.recall = found > 0 ? round4(c.truePositives / found) : null;
  return c;
}

export interface SimulateReport {
  vigil: string;
  startedAt: string;
  durationSeconds: number;
  seed: number;
  device: string;
  model: { name: string; version: string; backend: string; provider: string; package: string };
  cameras: Record<
    string,
    { transport: string; fps: number; framesSent: number; renderSkipped: number; sendErrors: number }
  >;
  pipelines: Record<
    string,
    {
      budgetMs: number;
      samples: { seen: number; processed: number; dropped: number; droppedByReason: Record<string, number> };
      latencyMs: PipelineStats['latencyMs'];
      alertLatencyMs: PipelineStats['alertLatencyMs'];
      stagesMs: PipelineStats['stagesMs'];
      budgetExceeded: number;
      alerts: Record<string, number>;
      truth: TruthCounts;
    }
  >;
  inputErrors: Record<string, number>;
  mqtt: { broker: string; alertsReceivedBySubscriber: number };
  /**
   * Store and forward to the upstream broker (in the demo, the embedded broker stands in for the
   * plant's): rows acknowledged this run and still waiting, per class.
   */
  upstream?: {
    state: string;
    delivered: Record<string, number>;
    backlog: Record<string, number>;
  };
  /** Absent when run with --no-telemetry. */
  telemetry?: TelemetryReport;
  /** Maintenance and anomaly alerts against the machines' truth; absent with --no-telemetry. */
  assets?: AssetTruthReport;
  peakRssMb: number;
}

const round4 = (x: number) => Math.round(x * 10000) / 10000;
