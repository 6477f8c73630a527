import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT } from '../helpers/daemon.js';

/** Where the drift tests leave their measured figures (git-ignored), for docs/DRIFT.md and the model cards. */
export const ARTIFACTS = path.join(ROOT, 'test-artifacts');

export async function keepFigures(name: string, figures: Record<string, unknown>): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await writeFile(path.join(ARTIFACTS, name), JSON.stringify(figures, null, 2) + '\n');
  console.log(`[drift] ${name}: ${JSON.stringify(figures)}`);
}

/** The largest value / threshold seen per measure, over every evaluation of a phase. */
export class PeakTracker {
  readonly peaks: Record<string, { value: number; threshold: number; ratio: number }> = {};
  evaluations = 0;
  /** Evaluations with a measure past its threshold (one evaluation counts once). */
  pastThreshold = 0;

  add(
    measures: ReadonlyArray<{
      name: string;
      test: string;
      value: number;
      threshold: number;
      drifted: boolean;
    }>,
  ) {
    this.evaluations++;
    if (measures.some((m) => m.drifted)) this.pastThreshold++;
    for (const m of measures) {
      const key = `${m.name}/${m.test}`;
      const ratio = m.value / m.threshold;
      if (!this.peaks[key] || ratio > this.peaks[key].ratio)
        this.peaks[key] = { value: m.value, threshold: round4(m.threshold), ratio: round4(ratio) };
    }
  }
}

export const round4 = (x: number) => Math.round(x * 10000) / 10000;
