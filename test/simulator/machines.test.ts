import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../../simulator/camera/rng.js';
import { ManualTime, SimClock } from '../../simulator/machines/clock.js';
import { SimError } from '../../simulator/machines/errors.js';
import { exportRuns, runColumns } from '../../simulator/machines/export-runs.js';
import { parisDamage, planRun, type FailurePlan } from '../../simulator/machines/failure.js';
import { FaultyMachine } from '../../simulator/machines/faults.js';
import { RotatingMachine } from '../../simulator/machines/rotating.js';
import { ScriptedMachine } from '../../simulator/machines/scripted.js';

const HOUR = 3600;

function pump(
  opts: { seed?: number; failure?: FailurePlan | null; accel?: number; kind?: 'pump' | 'spindle' } = {},
) {
  const time = new ManualTime(1_700_000_000_000);
  const clock = new SimClock({ acceleration: opts.accel ?? 3600, now: time.now });
  const machine = new RotatingMachine({
    asset: 'pump-1',
    kind: opts.kind ?? 'pump',
    clock,
    seed: opts.seed ?? 11,
    failure:
      opts.failure === undefined
        ? { mode: 'bearing_wear', atHours: 100, degradationHours: 40, meanLifeHours: 300, repairHours: 10 }
        : opts.failure,
  });
  return { time, clock, machine };
}

/** Samples a machine every `everyHours` from `fromH` to `toH` (exclusive) straight from the model. */
function series(machine: RotatingMachine, fromH: number, toH: number, everyHours: number) {
  const rows: Array<Record<string, number>> = [];
  for (let h = fromH; h < toH - 1e-9; h += everyHours) {
    machine.advanceTo(h * HOUR);
    rows.push(machine.measure());
  }
  return rows;
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

describe('SimClock', () => {
  it('maps wall time to accelerated simulated time and back', () => {
    const time = new ManualTime(10_000);
    const clock = new SimClock({ acceleration: 3600, now: time.now });
    expect(clock.simSeconds()).toBe(0);
    time.advance(2500);
    expect(clock.simSeconds()).toBe(9000);
    expect(clock.wallSeconds()).toBe(2.5);
    expect(clock.wallMsAt(36_000)).toBe(20_000);
    clock.setAcceleration(60);
    expect(clock.simSeconds()).toBe(9000);
    time.advance(1000);
    expect(clock.simSeconds()).toBe(9060);
    expect(clock.wallMsAt(9120)).toBe(14_500);
    clock.start();
    expect(clock.simSeconds()).toBe(0);
    expect(clock.startWallMs).toBe(13_500);
    expect(() => new SimClock({ acceleration: 0 })).toThrow(/positive/);
  });
});

describe('failure planning', () => {
  it('grows Paris-law damage from 0 to 1, slowly first and fast at the end', () => {
    expect(parisDamage(0)).toBe(0);
    expect(parisDamage(1)).toBe(1);
    let prev = 0;
    for (let tau = 0.05; tau <= 1; tau += 0.05) {
      const d = parisDamage(tau);
      expect(d).toBeGreaterThan(prev);
      prev = d;
    }
    expect(parisDamage(0.5)).toBeLessThan(0.15);
    expect(parisDamage(0.9) - parisDamage(0.8)).toBeGreaterThan(3 * (parisDamage(0.2) - parisDamage(0.1)));
  });

  it('draws failure times around the mean life, and keeps a given first failure time', () => {
    const rng = new Rng(5);
    const plan: FailurePlan = { mode: 'random', meanLifeHours: 400, repairHours: 8 };
    const lives = Array.from({ length: 400 }, (_, i) =>
      planRun(plan, ['bearing_wear', 'seal_leak'], rng, i + 1, 0),
    );
    const hours = lives.map((r) => r.failureAtSimSeconds / HOUR);
    expect(mean(hours)).toBeGreaterThan(360);
    expect(mean(hours)).toBeLessThan(440);
    expect(new Set(lives.map((r) => r.mode))).toEqual(new Set(['bearing_wear', 'seal_leak']));
    for (const r of lives) expect(r.onsetSimSeconds).toBeLessThan(r.failureAtSimSeconds);
    const first = planRun({ ...plan, atHours: 12 }, ['seal_leak'], new Rng(1), 0, 0);
    expect(first.failureAtSimSeconds).toBe(12 * HOUR);
  });
});

describe('RotatingMachine', () => {
  it('gives the same values for the same seed and simulated time however often it is read', () => {
    const a = pump({ seed: 3 });
    const b = pump({ seed: 3 });
    const c = pump({ seed: 4 });
    let polled = a.machine.snapshot();
    for (let i = 0; i < 240; i++) {
      a.time.advance(250);
      polled = a.machine.snapshot();
    }
    b.time.advance(60_000);
    c.time.advance(60_000);
    const once = b.machine.snapshot();
    expect(once.simSeconds).toBe(60 * HOUR);
    expect(polled.values).toEqual(once.values);
    expect(polled.simSeconds).toBe(once.simSeconds);
    expect(c.machine.snapshot().values).not.toEqual(once.values);
    expect(a.machine.truth()).toEqual(b.machine.truth());
  });

  it('publishes the five physical tags, the mode and the hour meter, with good quality and plausible values', () => {
    for (const kind of ['pump', 'spindle'] as const) {
      const { machine, time } = pump({ kind, seed: 9 });
      time.advance(5_000);
      const snap = machine.snapshot();
      const fifth = kind === 'pump' ? 'pressure' : 'load';
      expect(Object.keys(snap.values).sort()).toEqual(
        ['current', fifth, 'hours', 'mode', 'speed', 'temperature', 'vibration_rms'].sort(),
      );
      expect(machine.tags.map((t) => t.name)).toEqual(Object.keys(snap.values));
      for (const tag of machine.tags) {
        const v = snap.values[tag.name]!;
        expect(v.quality).toBe('good');
        expect(v.value).toBeGreaterThanOrEqual(tag.min);
        expect(v.value).toBeLessThanOrEqual(tag.max);
      }
      expect(snap.values['temperature']!.value).toBeGreaterThan(15);
      expect(snap.values['temperature']!.value).toBeLessThan(90);
      expect(snap.values['vibration_rms']!.value).toBeLessThan(3);
      expect(snap.values['speed']!.value).toBeGreaterThan(0);
      expect(snap.values['hours']!.value).toBe(5);
    }
  });

  it('counts operating hours on its hour meter whatever the acceleration, stands while stopped, restarts after a repair', () => {
    // The same simulated hours reached at two accelerations read the same hour meter.
    for (const accel of [60, 3600]) {
      const { machine, time } = pump({ accel, seed: 2 });
      time.advance((37.5 * HOUR * 1000) / accel);
      expect(machine.snapshot().values['hours']!.value).toBe(37.5);
    }
    // Failure at 100 h, repair after 10 h: the meter stands at 100, and restarts from 0 with the
    // repaired machine (a new run).
    const { machine } = pump();
    const at = (h: number) => {
      machine.advanceTo(h * HOUR);
      return machine.measure()['hours']!;
    };
    expect(at(0)).toBe(0);
    expect(at(99.5)).toBe(99.5);
    expect(at(100)).toBe(100);
    expect(at(105)).toBe(100);
    expect(at(109.99)).toBe(100);
    expect(at(110)).toBe(0);
    expect(at(130)).toBe(20);
    expect(machine.history()[1]!.startSimSeconds).toBe(110 * HOUR);
    expect(machine.operatingHours).toBe(20);
    // Within a run it never goes back; it goes back to 0 only when a repaired run starts.
    let prev = 20;
    let resets = 0;
    for (let h = 130.7; h < 1500; h += 0.7) {
      const v = at(h);
      if (v < prev) {
        resets++;
        expect(v).toBeLessThan(0.7);
        expect(machine.truth().state).toBe('healthy');
      }
      prev = v;
    }
    expect(resets).toBe(machine.history().length - 2);
    expect(resets).toBeGreaterThan(0);
  });

  it('fails at the planned time, trips, and restarts as new after the repair', () => {
    const { machine, time, clock } = pump();
    const start = clock.startWallMs;
    expect(machine.truth()).toEqual({
      state: 'healthy',
      failureAtSimSeconds: 100 * HOUR,
      failureAtWallMs: start + 100_000,
      failureMode: 'bearing_wear',
    });
    time.set(start + 61_000); // 61 h: degradation started at 60 h
    expect(machine.truth().state).toBe('degrading');
    time.set(start + 99_990);
    expect(machine.truth().state).toBe('degrading');
    expect(machine.snapshot().values['speed']!.value).toBeGreaterThan(500);
    time.set(start + 100_000);
    expect(machine.truth().state).toBe('failed');
    time.set(start + 100_100); // six minutes later the shaft has stopped
    const tripped = machine.snapshot().values;
    expect(tripped['speed']!.value).toBe(0);
    expect(tripped['current']!.value).toBe(0);
    expect(tripped['mode']!.value).toBe(0);
    expect(tripped['pressure']!.value).toBeCloseTo(1, 0);
    expect(machine.truth().failureAtSimSeconds).toBe(100 * HOUR);
    time.set(start + 110_010); // repaired after 10 h
    const after = machine.truth();
    expect(after.state).toBe('healthy');
    expect(after.failureAtSimSeconds!).toBeGreaterThan(110 * HOUR);
    expect(machine.snapshot().values['mode']!.value).toBe(1);
    expect(machine.history().map((r) => r.index)).toEqual([0, 1]);
    expect(machine.history()[1]!.startSimSeconds).toBeCloseTo(110 * HOUR, -2);
  });

  it('stays failed when no repair is planned, and never fails without a plan', () => {
    const stays = pump({ failure: { mode: 'seal_leak', atHours: 5, meanLifeHours: 100, repairHours: null } });
    stays.time.advance(500_000);
    expect(stays.machine.truth().state).toBe('failed');
    expect(stays.machine.snapshot().values['speed']!.value).toBe(0);
    const never = pump({ failure: null });
    never.time.advance(2_000_000);
    expect(never.machine.truth()).toEqual({
      state: 'healthy',
      failureAtSimSeconds: null,
      failureAtWallMs: null,
      failureMode: null,
    });
    expect(never.machine.snapshot().values['speed']!.value).toBeGreaterThan(0);
  });

  it('shows rising vibration and temperature as a bearing wears out', () => {
    for (const seed of [1, 2, 3]) {
      const { machine } = pump({
        seed,
        failure: {
          mode: 'bearing_wear',
          atHours: 300,
          degradationHours: 120,
          meanLifeHours: 300,
          repairHours: null,
        },
      });
      const early = series(machine, 0, 90, 0.25);
      const late = series(machine, 285, 300, 0.25);
      const v = (rows: typeof early, tag: string) => mean(rows.map((r) => r[tag]!));
      expect(v(late, 'vibration_rms')).toBeGreaterThan(2 * v(early, 'vibration_rms'));
      // Compare like with like: temperature per unit of speed, since load changes it too.
      const perSpeed = (rows: typeof early) =>
        mean(rows.map((r) => r['temperature']! / (r['speed']! / 2950)));
      expect(perSpeed(late)).toBeGreaterThan(perSpeed(early) + 5);
    }
  });

  it('shows overheating in temperature and a seal leak in the pressure', () => {
    const hot = pump({
      seed: 4,
      failure: {
        mode: 'overheating',
        atHours: 200,
        degradationHours: 80,
        meanLifeHours: 300,
        repairHours: null,
      },
    }).machine;
    // Like with like: the same loaded operating mode early in life and just before the failure
    // (idling, the pump makes too little heat for lost cooling to show much).
    const early = series(hot, 0, 100, 0.25);
    const late = series(hot, 185, 200, 0.25);
    let compared = 0;
    for (const mode of [2, 3]) {
      const t = (rows: Array<Record<string, number>>) =>
        rows.filter((r) => r['mode'] === mode).map((r) => r['temperature']!);
      if (t(late).length < 4 || t(early).length < 4) continue;
      compared++;
      expect(mean(t(late))).toBeGreaterThan(mean(t(early)) + 8);
    }
    expect(compared).toBeGreaterThan(0);

    const leak = pump({
      seed: 4,
      failure: {
        mode: 'seal_leak',
        atHours: 200,
        degradationHours: 80,
        meanLifeHours: 300,
        repairHours: null,
      },
    }).machine;
    // Head per speed² is constant for a healthy pump (affinity law); the leak takes it away.
    const head = (rows: Array<Record<string, number>>) =>
      mean(rows.map((r) => (r['pressure']! - 1) / (r['speed']! / 2950) ** 2));
    const healthy = head(series(leak, 0, 60, 0.25));
    expect(head(series(leak, 190, 200, 0.25))).toBeLessThan(0.85 * healthy);
  });

  it('changes operating mode on its seeded schedule', () => {
    for (const kind of ['pump', 'spindle'] as const) {
      const { machine } = pump({ kind, failure: null, seed: 21 });
      const modes = series(machine, 0, 200, 0.1).map((r) => r['mode']!);
      expect(new Set(modes)).toEqual(new Set([1, 2, 3]));
      const changes = modes.filter((m, i) => i > 0 && m !== modes[i - 1]).length;
      expect(changes).toBeGreaterThan(10);
      const again = series(pump({ kind, failure: null, seed: 21 }).machine, 0, 200, 0.1).map(
        (r) => r['mode'],
      );
      expect(again).toEqual(modes);
    }
  });

  it('couples speed, current and pressure: a faster pump draws more current and makes more pressure', () => {
    const rows = series(pump({ failure: null, seed: 8 }).machine, 0, 150, 0.5);
    const byMode = (m: number, tag: string) => mean(rows.filter((r) => r['mode'] === m).map((r) => r[tag]!));
    for (const tag of ['speed', 'current', 'pressure', 'vibration_rms']) {
      expect(byMode(3, tag)).toBeGreaterThan(byMode(2, tag));
      expect(byMode(2, tag)).toBeGreaterThan(byMode(1, tag));
    }
  });

  it('caps the catch-up work of one snapshot and catches up over the next ones', () => {
    const time = new ManualTime(0);
    const clock = new SimClock({ acceleration: 3600, now: time.now });
    const m = new RotatingMachine({
      asset: 'p',
      kind: 'pump',
      clock,
      seed: 1,
      failure: null,
      maxStepsPerSnapshot: 100,
    });
    time.advance(1000); // one simulated hour: 360 steps
    expect(m.snapshot().simSeconds).toBe(1000);
    expect(m.snapshot().simSeconds).toBe(2000);
    m.snapshot();
    expect(m.snapshot().simSeconds).toBe(3600);
    expect(m.snapshot().simSeconds).toBe(3600);
  });

  it('refuses a failure mode the machine does not have', () => {
    expect(() =>
      pump({ kind: 'spindle', failure: { mode: 'seal_leak', meanLifeHours: 10, repairHours: null } }),
    ).toThrow(SimError);
    expect(() =>
      pump({ kind: 'spindle', failure: { mode: 'seal_leak', meanLifeHours: 10, repairHours: null } }),
    ).toThrow(/no failure mode 'seal_leak'.*bearing_wear, overheating, imbalance/);
  });
});

describe('FaultyMachine', () => {
  function faulty() {
    const time = new ManualTime(1_000_000);
    const clock = new SimClock({ acceleration: 60, now: time.now });
    const inner = new ScriptedMachine('press-1', [{ name: 'temperature' }, { name: 'pressure' }]);
    inner.set('temperature', 40);
    inner.set('pressure', 5);
    const m = new FaultyMachine(
      inner,
      [
        { kind: 'spike', tag: 'pressure', atSeconds: 10, durationSeconds: 1, factor: 3, offset: 1 },
        { kind: 'stuck', tag: 'temperature', atSeconds: 20, durationSeconds: 10 },
        { kind: 'drift', tag: 'pressure', atSeconds: 40, durationSeconds: 10, offset: 2 },
        { kind: 'dropout', atSeconds: 60, durationSeconds: 5 },
        {
          kind: 'status',
          tag: 'temperature',
          atSeconds: 70,
          durationSeconds: 5,
          status: 'UncertainLastUsableValue',
        },
        { kind: 'status', tag: 'pressure', atSeconds: 80, durationSeconds: 5, status: 'BadSensorFailure' },
      ],
      clock,
    );
    const at = (s: number) => {
      time.set(1_000_000 + s * 1000);
      return m.snapshot().values;
    };
    return { inner, m, at };
  }

  it('applies each fault in its window only', () => {
    const { inner, at } = faulty();
    expect(at(9.9)['pressure']).toEqual({ value: 5, quality: 'good' });
    expect(at(10)['pressure']).toEqual({ value: 16, quality: 'good' });
    expect(at(10.9)['pressure']!.value).toBe(16);
    expect(at(11)['pressure']!.value).toBe(5);

    inner.set('temperature', 41);
    expect(at(19)['temperature']!.value).toBe(41);
    inner.set('temperature', 55);
    expect(at(20)['temperature']).toEqual({ value: 41, quality: 'good' });
    inner.set('temperature', 60);
    expect(at(29.9)['temperature']!.value).toBe(41);
    expect(at(30)['temperature']!.value).toBe(60);

    expect(at(45)['pressure']!.value).toBeCloseTo(6);
    expect(at(49)['pressure']!.value).toBeCloseTo(6.8);
    expect(at(50)['pressure']!.value).toBe(5);

    const dropped = at(62);
    for (const tag of ['temperature', 'pressure']) {
      expect(dropped[tag]!.quality).toBe('bad');
      expect(dropped[tag]!.status).toBe('BadNoCommunication');
      expect(dropped[tag]!.value).toBeNaN();
    }
    expect(at(65)['pressure']).toEqual({ value: 5, quality: 'good' });

    expect(at(71)['temperature']).toEqual({
      value: 60,
      quality: 'uncertain',
      status: 'UncertainLastUsableValue',
    });
    const bad = at(81)['pressure']!;
    expect(bad.quality).toBe('bad');
    expect(bad.status).toBe('BadSensorFailure');
    expect(bad.value).toBeNaN();
    expect(at(85)['pressure']).toEqual({ value: 5, quality: 'good' });
  });

  it('keeps the ground truth of every injected fault', () => {
    const { m } = faulty();
    const truth = m.injected();
    expect(truth).toHaveLength(6);
    expect(truth[0]).toEqual({
      asset: 'press-1',
      tag: 'pressure',
      kind: 'spike',
      from: 1_010_000,
      to: 1_011_000,
      atSeconds: 10,
      untilSeconds: 11,
    });
    expect(truth[3]).toMatchObject({
      tag: '*',
      kind: 'dropout',
      status: 'BadNoCommunication',
      from: 1_060_000,
    });
    expect(truth[5]).toMatchObject({ tag: 'pressure', status: 'BadSensorFailure' });
  });

  it('refuses a fault on a tag the machine lacks', () => {
    const clock = new SimClock({ acceleration: 1 });
    const inner = new ScriptedMachine('x', [{ name: 'a' }]);
    expect(
      () => new FaultyMachine(inner, [{ kind: 'spike', tag: 'b', atSeconds: 0, durationSeconds: 1 }], clock),
    ).toThrow(/tag 'b'/);
  });
});

describe('exportRuns', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('writes run-to-failure trajectories with the expected columns, counting down to the failure', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'vigil-runs-'));
    dirs.push(out);
    const { files, runs } = await exportRuns({
      out,
      specs: [
        { kind: 'pump', failure: { mode: 'random', meanLifeHours: 60 } },
        { kind: 'spindle', failure: { mode: 'bearing_wear', meanLifeHours: 40 } },
      ],
      runs: 2,
      seed: 5,
      sampleHours: 1,
    });
    expect(files.map((f) => path.basename(f))).toEqual(['pump-runs.csv', 'spindle-runs.csv']);
    expect(runs.map((r) => r.run_id)).toEqual([0, 1, 2, 3]);
    for (const kind of ['pump', 'spindle'] as const) {
      const lines = (await readFile(path.join(out, `${kind}-runs.csv`), 'utf8')).trim().split('\n');
      const header = lines[0]!.split(',');
      expect(header).toEqual(runColumns(kind));
      expect(header).toEqual([
        'run_id',
        'seed',
        'time_h',
        'temperature',
        'vibration_rms',
        'current',
        'speed',
        kind === 'pump' ? 'pressure' : 'load',
        'mode',
        'hours',
        'state',
        'failure_mode',
        'hours_to_failure',
      ]);
      const rows = lines.slice(1).map((l) => l.split(','));
      for (const summary of runs.filter((r) => r.kind === kind)) {
        const mine = rows.filter((r) => Number(r[0]) === summary.run_id);
        expect(mine).toHaveLength(Math.ceil(summary.failure_h));
        expect(mine).toHaveLength(summary.rows);
        const ttf = mine.map((r) => Number(r[header.indexOf('hours_to_failure')]));
        expect(ttf[0]).toBeCloseTo(summary.failure_h, 5);
        expect(ttf[ttf.length - 1]!).toBeGreaterThan(0);
        expect(ttf[ttf.length - 1]!).toBeLessThanOrEqual(1);
        for (let i = 1; i < ttf.length; i++) expect(ttf[i]!).toBeLessThan(ttf[i - 1]!);
        expect(mine[mine.length - 1]![header.indexOf('state')]).toBe('degrading');
        expect(mine[0]![header.indexOf('state')]).toBe('healthy');
        for (const r of mine) {
          expect(r[header.indexOf('failure_mode')]).toBe(summary.failure_mode);
          expect(Number(r[1])).toBe(summary.seed);
          for (const i of [3, 4, 5, 6, 7, 8, 9]) expect(Number.isFinite(Number(r[i]))).toBe(true);
          // Run from new and never stopped: the hour meter reads the simulated time.
          expect(Number(r[header.indexOf('hours')])).toBe(Number(r[header.indexOf('time_h')]));
        }
      }
    }
    const meta = JSON.parse(await readFile(path.join(out, 'meta.json'), 'utf8'));
    expect(meta.runs).toHaveLength(4);
    expect(meta.tags.pump.map((t: { name: string }) => t.name)).toContain('pressure');
  });
});
