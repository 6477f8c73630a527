import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT } from '../helpers/daemon.js';

const run = promisify(execFile);

/**
 * `vigil replay` as a QA engineer runs it: the compiled CLI, a config with a telemetry model, a
 * recorded CSV, and the JSON lines it writes. The fixture model predicts RUL = the mean of its
 * window, so every output and the cycle of every alert can be worked out by hand.
 */

let dir: string;
const rows = ['asset,cycle,a,b,c'];
for (const unit of [1, 2])
  for (let cycle = 1; cycle <= 40; cycle++) {
    const v = 100 - 2.5 * cycle;
    rows.push(`unit-${unit},${cycle},${v},${v},${v}`);
  }

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-replay-'));
  await writeFile(path.join(dir, 'in.csv'), rows.join('\n') + '\n');
  await writeFile(
    path.join(dir, 'vigil.yaml'),
    [
      'version: 1',
      'device: { id: replay-test }',
      `models: { rul: { package: ${path.join(ROOT, 'test/fixtures/telemetry-models/mean-rul')} } }`,
      "sources: { engines: { type: mqtt-json, url: 'mqtt://127.0.0.1:1', subscriptions: [{ topic: 'x/+', asset: '{1}', allNumericFields: true }] } }",
      'pipelines: { maint: { sources: [engines], model: rul } }',
    ].join('\n'),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Line {
  asset: string;
  axis: number;
  score: number;
  model: { name: string };
  alerts: Array<{ kind: string; details: { state: string; rul: number } }>;
}

async function replay(out: string): Promise<{ lines: Line[]; stdout: string }> {
  const { stdout } = await run(process.execPath, [
    CLI,
    'replay',
    '--config',
    path.join(dir, 'vigil.yaml'),
    '--input',
    path.join(dir, 'in.csv'),
    '--speed',
    'max',
    '--out',
    out,
  ]);
  const text = await readFile(out, 'utf8');
  return {
    lines: text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Line),
    stdout,
  };
}

describe('vigil replay', () => {
  it('scores every full window of every asset, in order, with the outputs the model gives', async () => {
    const { lines, stdout } = await replay(path.join(dir, 'a.jsonl'));
    // 40 cycles, windows of 4: cycles 4..40 for each of the two units.
    expect(lines).toHaveLength(74);
    for (const unit of ['unit-1', 'unit-2']) {
      const mine = lines.filter((l) => l.asset === unit);
      expect(mine.map((l) => l.axis)).toEqual(Array.from({ length: 37 }, (_, i) => i + 4));
      // RUL = mean of the window's values = 100 - 2.5 * (cycle - 1.5).
      for (const l of mine) expect(l.score).toBeCloseTo(100 - 2.5 * (l.axis - 1.5), 4);
      // Below 30 from cycle 30 on; two windows in a row needed: raised once, at cycle 31.
      const raised = mine.filter((l) => l.alerts.some((a) => a.details.state === 'raised'));
      expect(raised.map((l) => l.axis)).toEqual([31]);
      expect(raised[0]!.alerts[0]!.kind).toBe('failure_risk');
    }
    expect(stdout).toMatch(/replayed 80 rows \(320 readings\).*74 results/);
  });

  it('is exactly repeatable', async () => {
    const strip = (ls: Line[]) => ls.map((l) => [l.asset, l.axis, l.score, l.alerts.length]);
    const a = await replay(path.join(dir, 'b.jsonl'));
    const b = await replay(path.join(dir, 'c.jsonl'));
    expect(strip(b.lines)).toEqual(strip(a.lines));
  });

  it('starts an asset afresh when its counter restarts (a replaced engine), clearing its alert', async () => {
    const replaced = [...rows.filter((r) => !r.startsWith('unit-2'))];
    for (let cycle = 1; cycle <= 10; cycle++) {
      const v = 100 - 2.5 * cycle;
      replaced.push(`unit-1,${cycle},${v},${v},${v}`);
    }
    await writeFile(path.join(dir, 'replaced.csv'), replaced.join('\n') + '\n');
    const out = path.join(dir, 'replaced.jsonl');
    await run(process.execPath, [
      CLI,
      'replay',
      '-c',
      path.join(dir, 'vigil.yaml'),
      '-i',
      path.join(dir, 'replaced.csv'),
      '-o',
      out,
    ]);
    const lines = (await readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Line);
    // 37 windows of the first engine, then the new one from its 4th cycle: no window mixes them.
    expect(lines.map((l) => l.axis)).toEqual([
      ...Array.from({ length: 37 }, (_, i) => i + 4),
      ...Array.from({ length: 7 }, (_, i) => i + 4),
    ]);
    const states = lines.flatMap((l) => l.alerts.map((a) => `${l.axis}:${a.details.state}`));
    // Raised at cycle 31 of the old engine; the new engine's healthy windows clear it (two in a row).
    expect(states).toEqual(['31:raised', '5:cleared']);
  });

  it('refuses a CSV without an asset column with exit code 2 and says what the header lacks', async () => {
    await writeFile(path.join(dir, 'bad.csv'), 'unit,cycle,a\n1,1,2\n');
    const err = await run(process.execPath, [
      CLI,
      'replay',
      '-c',
      path.join(dir, 'vigil.yaml'),
      '-i',
      path.join(dir, 'bad.csv'),
      '-o',
      path.join(dir, 'bad.jsonl'),
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(2);
    expect((err as { stderr: string }).stderr).toMatch(
      /needs an 'asset' column and a 'time' or 'cycle' column/,
    );
  });
});
