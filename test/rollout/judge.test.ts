import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RolloutPolicy } from '../../runtime/config/registry.js';
import { Manifest } from '../../runtime/model/manifest.js';
import { adaptInput, incompatibility, scoreScale } from '../../runtime/rollout/compat.js';
import { ShadowTally, WatchTally } from '../../runtime/rollout/judge.js';
import type { LiveObservation, ShadowObservation } from '../../runtime/rollout/shadow.js';
import { CURRENT, ROOT } from './harness.js';

// The rollout's rules as pure bookkeeping, and what makes two versions interchangeable.

const manifestOf = (dir: string): Manifest =>
  Manifest.parse(JSON.parse(readFileSync(path.join(dir, 'vigil.json'), 'utf8')));
const defect = manifestOf(CURRENT);
const rul = manifestOf(path.join(ROOT, 'test/fixtures/telemetry-models/mean-rul'));
const anomaly = manifestOf(path.join(ROOT, 'test/fixtures/telemetry-models/iforest-anomaly'));

function obs(
  current: { label: string; score?: number; alert?: boolean },
  candidate: { label?: string; score?: number; alert?: boolean; ms?: number; error?: string; nan?: boolean },
  kind: 'image' | 'telemetry' = 'image',
): ShadowObservation {
  const verdict =
    candidate.error || candidate.nan
      ? undefined
      : { label: candidate.label ?? 'ok', score: candidate.score ?? 0, alert: candidate.alert ?? false };
  return {
    pipeline: 'p',
    kind,
    current: {
      version: '1',
      outputs: {},
      inferenceMs: 1,
      label: current.label,
      score: current.score ?? 0,
      alert: current.alert ?? false,
    },
    candidate: {
      version: '2',
      ...(verdict ? { verdict } : {}),
      inferenceMs: candidate.ms ?? 1,
      ...(candidate.error ? { error: candidate.error } : {}),
      nonFinite: candidate.nan ?? false,
    },
    scoreScale: 1,
  };
}

describe('ShadowTally', () => {
  const policy = RolloutPolicy.parse({ shadowSamples: 10, maxErrorRate: 0.1, minAgreement: 0.8 });

  it('promotes after shadowSamples inputs that agree, are fast and error-free', () => {
    const t = new ShadowTally(policy, 50);
    for (let i = 0; i < 9; i++)
      expect(t.add(obs({ label: 'ok' }, { label: 'ok', ms: 10 })).decided).toBe(false);
    expect(t.add(obs({ label: 'ok' }, { label: 'ok', ms: 10 }))).toMatchObject({
      decided: true,
      promote: true,
    });
    expect(t.figures()).toMatchObject({ samples: 10, agreement: 1, p95Ms: 10, errors: 0 });
  });

  it('rejects at once on NaN, and on more errors than the whole shadow may have', () => {
    expect(new ShadowTally(policy, 50).add(obs({ label: 'ok' }, { nan: true }))).toMatchObject({
      decided: true,
      promote: false,
      reason: 'nan_output',
    });
    const t = new ShadowTally(policy, 50);
    // 10 samples at 10 % allow one error; the second decides.
    expect(t.add(obs({ label: 'ok' }, { error: 'boom' })).decided).toBe(false);
    expect(t.add(obs({ label: 'ok' }, { error: 'boom' }))).toMatchObject({ reason: 'errors' });
  });

  it('judges latency by the p95, then agreement, then the score shift', () => {
    const slow = new ShadowTally(policy, 50);
    for (let i = 0; i < 9; i++) slow.add(obs({ label: 'ok' }, { label: 'ok', ms: 10 }));
    // One slow inference in ten is the p95.
    expect(slow.add(obs({ label: 'ok' }, { label: 'ok', ms: 80 }))).toMatchObject({ reason: 'too_slow' });

    const disagrees = new ShadowTally(policy, 50);
    let v;
    for (let i = 0; i < 10; i++) v = disagrees.add(obs({ label: 'ok' }, { label: i < 7 ? 'ok' : 'crack' }));
    expect(v).toMatchObject({ reason: 'disagreement' });
    expect(disagrees.figures().agreement).toBe(0.7);

    const shifted = new ShadowTally(policy, 50);
    for (let i = 0; i < 10; i++)
      v = shifted.add(obs({ label: 'ok', score: 0.1 }, { label: 'ok', score: 0.4 }));
    expect(v).toMatchObject({ reason: 'disagreement' });
    expect(shifted.figures().scoreShift).toBe(0.3);
  });

  it('compares telemetry by the alert decision, not the label', () => {
    const t = new ShadowTally(policy, 50);
    t.add(obs({ label: 'rul', alert: true }, { label: 'rul', alert: false }, 'telemetry'));
    t.add(obs({ label: 'rul', alert: true }, { label: 'rul', alert: true }, 'telemetry'));
    expect(t.figures().agreement).toBe(0.5);
  });

  it('at shadowMaxSeconds decides on at least 10 inputs, else rejects, as too_slow when it mostly skipped', () => {
    const few = new ShadowTally(policy, 50);
    few.add(obs({ label: 'ok' }, { label: 'ok' }));
    expect(few.decide('2', true)).toMatchObject({
      decided: true,
      promote: false,
      reason: 'insufficient_samples',
    });
    for (let i = 0; i < 5; i++) few.skip();
    expect(few.decide('2', true)).toMatchObject({ reason: 'too_slow' });
    const enough = new ShadowTally(RolloutPolicy.parse({ shadowSamples: 100 }), 50);
    for (let i = 0; i < 10; i++) enough.add(obs({ label: 'ok' }, { label: 'ok' }));
    expect(enough.decide('2', true)).toMatchObject({ decided: true, promote: true });
  });
});

describe('WatchTally', () => {
  const policy = RolloutPolicy.parse({ watchSamples: 20, maxErrorRate: 0.1, maxBudgetViolationRate: 0.1 });
  const live = (o: Partial<LiveObservation>): LiveObservation => ({
    pipeline: 'p',
    version: '2',
    outcome: 'ok',
    overBudget: false,
    ...o,
  });

  it('ignores inputs the old version served and settles after watchSamples', () => {
    const w = new WatchTally(policy, '2');
    expect(w.add(live({ version: '1', outcome: 'error' })).decided).toBe(false);
    for (let i = 0; i < 19; i++) expect(w.add(live({})).decided).toBe(false);
    expect(w.add(live({}))).toMatchObject({ decided: true, promote: true });
    expect(w.figures()).toMatchObject({ samples: 20, errors: 0 });
  });

  it('rolls back at once on NaN, and once errors or budget violations exceed what the watch allows', () => {
    expect(new WatchTally(policy, '2').add(live({ outcome: 'nan' }))).toMatchObject({ reason: 'regression' });
    const errors = new WatchTally(policy, '2');
    errors.add(live({ outcome: 'error' }));
    errors.add(live({ outcome: 'unavailable', version: undefined }));
    expect(errors.add(live({ outcome: 'error' }))).toMatchObject({ reason: 'regression' });
    const slow = new WatchTally(policy, '2');
    slow.add(live({ overBudget: true }));
    slow.add(live({ outcome: 'dropped', overBudget: true }));
    expect(slow.add(live({ overBudget: true }))).toMatchObject({ reason: 'regression' });
    expect(slow.figures().budgetViolations).toBe(3);
  });
});

describe('compatibility of versions', () => {
  it('accepts the same model with new statistics and refuses other kinds, shapes and labels', () => {
    expect(incompatibility(defect, { ...defect, version: '2' })).toBeUndefined();
    expect(incompatibility(defect, rul)).toMatch(/telemetry model/);
    const wider = structuredClone(defect);
    wider.inputs[0]!.shape = [1, 256, 256, 1];
    expect(incompatibility(defect, wider)).toMatch(/shape \[1, 256, 256, 1\]/);
    const relabelled = structuredClone(defect);
    if (relabelled.postprocessing.type === 'classification')
      relabelled.postprocessing.labels = ['ok', 'crack', 'scratch', 'dent'];
    expect(incompatibility(defect, relabelled)).toMatch(/labels/);
    const reordered = structuredClone(defect);
    if (reordered.postprocessing.type === 'classification')
      reordered.postprocessing.labels = ['ok', 'crack', 'scratch', 'inclusion'];
    expect(incompatibility(defect, reordered)).toBeUndefined();
    const otherTags = structuredClone(rul);
    if (otherTags.preprocessing.type === 'telemetry') otherTags.preprocessing.tags = ['a', 'b', 'd'];
    expect(incompatibility(rul, otherTags)).toMatch(/tags/);
    expect(incompatibility(rul, anomaly)).toBeDefined();
  });

  it('re-normalises an image tensor per channel for the other version', () => {
    const rgb = structuredClone(defect);
    rgb.preprocessing.normalize = { mean: [0, 10, 20], std: [1, 2, 4] };
    const other = structuredClone(rgb);
    other.preprocessing.normalize = { mean: [5, 5, 5], std: [5, 5, 5] };
    // Two NHWC pixels of raw values (10, 20, 40) and (0, 10, 20).
    const raw = [10, 20, 40, 0, 10, 20];
    const asFrom = Float32Array.from(raw, (x, i) => (x - [0, 10, 20][i % 3]!) / [1, 2, 4][i % 3]!);
    const adapted = adaptInput(rgb, other, asFrom);
    expect(Array.from(adapted, (v) => Math.round(v * 1e5) / 1e5)).toEqual(raw.map((x) => (x - 5) / 5));
    expect(adaptInput(rgb, structuredClone(rgb), asFrom)).toBe(asFrom);
  });

  it('moves summary features the way their statistics move', () => {
    const m = structuredClone(rul);
    if (m.preprocessing.type !== 'telemetry') throw new Error('a telemetry manifest');
    m.preprocessing.features = 'summary';
    m.preprocessing.normalize = { mean: [0, 0, 0], std: [1, 1, 1] };
    const n = structuredClone(m);
    n.preprocessing.normalize = { mean: [10, 10, 10], std: [2, 2, 2] };
    // Per tag: mean, std, min, max, last, slope.
    const tag = [80, 4, 70, 90, 85, 1.5];
    const adapted = adaptInput(m, n, Float32Array.from([...tag, ...tag, ...tag]));
    expect(Array.from(adapted.subarray(0, 6))).toEqual([35, 2, 30, 40, 37.5, 0.75]);
    expect(scoreScale(rul)).toBe(100);
    expect(scoreScale(defect)).toBe(1);
  });
});
