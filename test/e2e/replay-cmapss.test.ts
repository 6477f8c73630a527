import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmapssDir } from '../../simulator/machines/cmapss-data.js';
import { CLI, ROOT } from '../helpers/daemon.js';

const run = promisify(execFile);

/**
 * The model card's claim, checked the way a QA engineer would: the validation engines of FD001
 * (never trained on), converted to CSV with the shipped converter, replayed through the shipped
 * example config with `vigil replay`, must give the RMSE the card states for the default package.
 * This exercises the runtime's own windowing and normalisation end to end, not Python's.
 */

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-replay-cmapss-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('vigil replay of C-MAPSS validation engines', () => {
  it("reproduces the model card's RMSE and raises one failure_risk per engine", async () => {
    const csv = path.join(dir, 'fd001-val.csv');
    await run('python3', [
      path.join(ROOT, 'models/engine-rul/cmapss_to_csv.py'),
      path.join(cmapssDir(), 'train_FD001.txt'),
      '--validation-only',
      '--out',
      csv,
    ]);
    const out = path.join(dir, 'rul.jsonl');
    await run(process.execPath, [
      CLI,
      'replay',
      '--config',
      path.join(ROOT, 'deploy/examples/cmapss-replay.yaml'),
      '--input',
      csv,
      '--out',
      out,
    ]);

    const lastCycle = new Map<string, number>();
    for (const line of (await readFile(csv, 'utf8')).trim().split('\n').slice(1)) {
      const [asset, cycle] = line.split(',') as [string, string];
      lastCycle.set(asset, Math.max(lastCycle.get(asset) ?? 0, Number(cycle)));
    }
    const lines = (await readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            asset: string;
            axis: number;
            score: number;
            alerts: Array<{ details: { state: string } }>;
          },
      );
    const errors = lines.map((l) => l.score - Math.min(125, lastCycle.get(l.asset)! - l.axis));
    const rmse = Math.sqrt(errors.reduce((s, e) => s + e * e, 0) / errors.length);

    const metrics = JSON.parse(await readFile(path.join(ROOT, 'models/engine-rul/metrics.json'), 'utf8')) as {
      defaultPackage: string;
      packages: Record<
        string,
        { validation: { bySubset: Record<string, { windows: number; rmseAllWindows: number }> } }
      >;
    };
    const card = metrics.packages[metrics.defaultPackage]!.validation.bySubset.FD001!;
    expect(lines).toHaveLength(card.windows);
    expect(rmse).toBeCloseTo(card.rmseAllWindows, 2);
    const raised = lines.filter((l) => l.alerts.some((a) => a.details.state === 'raised'));
    expect(new Set(raised.map((l) => l.asset)).size).toBe(lastCycle.size);
  }, 60_000);
});
