import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualTime, SimClock } from '../../simulator/machines/clock.js';
import { CMAPSS_TAGS, CmapssEngine, DEGRADING_CYCLES, cmapssDir } from '../../simulator/machines/cmapss.js';
import { CMAPSS_ENV, loadCmapss, parseCmapss } from '../../simulator/machines/cmapss-data.js';
import { SimError } from '../../simulator/machines/errors.js';

/** The file's rows of one unit, parsed here independently of the simulator's parser. */
function unitRows(dataset: string, unit: number): number[][] {
  const text = readFileSync(path.join(cmapssDir(), `train_${dataset}.txt`), 'utf8');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/).map(Number))
    .filter((r) => r[0] === unit);
}

function engine(opts: Partial<ConstructorParameters<typeof CmapssEngine>[0]> = {}) {
  const time = new ManualTime(1_000_000);
  // One simulated hour per second and one cycle per simulated hour: one cycle per wall second.
  const clock = new SimClock({ acceleration: 3600, now: time.now });
  const e = new CmapssEngine({ asset: 'engine-1', clock, dataset: 'FD001', units: [1, 2], ...opts });
  /** Moves to the middle of cycle slot `k` (0-based) since the start. */
  const slot = (k: number) => time.set(1_000_000 + k * 1000 + 500);
  return { e, time, clock, slot };
}

describe('C-MAPSS data', () => {
  const saved = process.env[CMAPSS_ENV];
  const dirs: string[] = [];
  afterEach(() => {
    if (saved === undefined) delete process.env[CMAPSS_ENV];
    else process.env[CMAPSS_ENV] = saved;
  });
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('finds the data through VIGIL_CMAPSS_DIR, then the shared folders, and says where it looked', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'vigil-cmapss-'));
    dirs.push(dir);
    process.env[CMAPSS_ENV] = dir;
    expect(cmapssDir()).toBe(dir);
    process.env[CMAPSS_ENV] = path.join(dir, 'missing');
    expect(() => cmapssDir()).toThrow(/VIGIL_CMAPSS_DIR is set to .*missing, which does not exist/);
    delete process.env[CMAPSS_ENV];
    expect(cmapssDir()).toMatch(/shared[/\\]datasets[/\\]cmapss$/);
    let err: unknown;
    try {
      cmapssDir(['/nonexistent/a', '/nonexistent/b']);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SimError);
    expect((err as SimError).code).toBe('SIM_ERR_DATASET_MISSING');
    expect((err as Error).message).toMatch(/\/nonexistent\/a and \/nonexistent\/b.*VIGIL_CMAPSS_DIR/);
  });

  it('refuses a malformed file naming the line', async () => {
    expect(() => parseCmapss('1 1 0 0 100\n', 'bad.txt', 'FD001')).toThrow(/bad.txt line 1: expected 26/);
    const row = (u: number, c: number) => [u, c, ...Array(24).fill(1)].join(' ');
    expect(() => parseCmapss(`${row(1, 1)}\n${row(1, 3)}\n`, 'gap.txt', 'FD001')).toThrow(
      /gap.txt line 2: unit 1 jumps to cycle 3 after cycle 1/,
    );
    const dir = await mkdtemp(path.join(tmpdir(), 'vigil-cmapss-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'train_FD003.txt'), `${row(1, 1)}\n${row(1, 2)}\n`);
    expect(loadCmapss('FD003', dir).units.get(1)!.rows).toHaveLength(2);
    expect(() => loadCmapss('FD001', dir)).toThrow(/cannot read the C-MAPSS file .*train_FD001.txt/);
  });

  it('parses each file once', () => {
    expect(loadCmapss('FD001')).toBe(loadCmapss('FD001'));
    expect(loadCmapss('FD001').units.size).toBe(100);
    expect(loadCmapss('FD003').units.size).toBe(100);
  });
});

describe('CmapssEngine', () => {
  it('replays exactly the dataset rows of FD001 unit 1, in order, counting down to the failure', () => {
    const rows = unitRows('FD001', 1);
    expect(rows.length).toBe(192);
    const { e, slot } = engine();
    expect(e.tags.map((t) => t.name)).toEqual([
      'cycle',
      'setting1',
      'setting2',
      'setting3',
      ...Array.from({ length: 21 }, (_, i) => `s${i + 1}`),
    ]);
    rows.forEach((row, i) => {
      slot(i);
      const snap = e.snapshot();
      expect(snap.asset).toBe('engine-1');
      expect(CMAPSS_TAGS.map((t) => snap.values[t.name]!.value)).toEqual(row.slice(1));
      for (const v of Object.values(snap.values)) expect(v.quality).toBe('good');
      const truth = e.truth();
      expect(truth.unit).toBe(1);
      expect(truth.remainingCycles).toBe(rows.length - (i + 1));
      expect(truth.state).toBe(truth.remainingCycles! <= DEGRADING_CYCLES ? 'degrading' : 'healthy');
      expect(truth.failureAtSimSeconds).toBe(192 * 3600);
      expect(truth.failureMode).toBe('hpc_degradation');
    });
    for (const t of CMAPSS_TAGS)
      for (const row of rows) {
        const v = row[CMAPSS_TAGS.indexOf(t) + 1]!;
        expect(v).toBeGreaterThanOrEqual(t.min);
        expect(v).toBeLessThanOrEqual(t.max);
      }
  });

  it('fails after the last cycle, then a replacement replays the next unit from cycle 1', () => {
    const { e, slot, clock } = engine();
    slot(192);
    expect(e.truth()).toMatchObject({
      state: 'failed',
      unit: 1,
      remainingCycles: 0,
      failureAtSimSeconds: 192 * 3600,
    });
    expect(e.truth().failureAtWallMs).toBe(clock.startWallMs + 192_000);
    expect(e.snapshot().values['cycle']!.value).toBe(192);
    slot(193);
    const unit2 = unitRows('FD001', 2);
    expect(e.truth()).toMatchObject({ unit: 2, remainingCycles: unit2.length - 1, state: 'healthy' });
    const snap = e.snapshot();
    expect(snap.values['cycle']!.value).toBe(1);
    expect(snap.values['s4']!.value).toBe(unit2[0]![8]);
    // After the last unit of the list the fleet starts over with the first.
    slot(193 + unit2.length + 1);
    expect(e.truth()).toMatchObject({ unit: 1, remainingCycles: 191 });
  });

  it('stays failed when no replacement is wanted, and honours the cycle duration', () => {
    const { e, slot } = engine({ replace: false });
    slot(500);
    expect(e.truth()).toMatchObject({ state: 'failed', unit: 1, remainingCycles: 0 });
    const slow = engine({ units: [3], cycleSeconds: 7200, dataset: 'FD003' });
    slow.slot(9); // 9.5 simulated hours: the fifth flight of two hours
    expect(slow.e.snapshot().values['cycle']!.value).toBe(5);
    expect(slow.e.truth()).toMatchObject({ unit: 3, failureMode: 'hpc_or_fan_degradation' });
  });

  it('refuses units the dataset does not have', () => {
    expect(() => engine({ units: [1, 101] })).toThrow(/FD001 has no unit 101/);
  });
});
