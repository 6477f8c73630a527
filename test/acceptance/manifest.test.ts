import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { derangement } from '../../runtime/acceptance/run.js';
import { auc, binaryCounts, precision, recall, rmse } from '../../runtime/acceptance/scores.js';
import type { Issue } from '../../runtime/errors.js';
import { Manifest } from '../../runtime/model/manifest.js';
import { checkManifestConsistency } from '../../runtime/model/package.js';
import { zodIssues } from '../../runtime/validation.js';
import { ROOT } from '../helpers/daemon.js';
import type { ManifestJson } from '../helpers/model-packages.js';

// The acceptance section of vigil.json: every mistake is reported as `path: message` a person can
// act on, whether zod catches it (format) or the consistency check (a check that does not fit
// the model). And the metrics are computed as docs/ACCEPTANCE.md defines them.

const shipped = (p: string): ManifestJson =>
  JSON.parse(readFileSync(path.join(ROOT, 'models', p, 'vigil.json'), 'utf8')) as ManifestJson;
const RUL = 'engine-rul/packages/engine-rul-fp32-onnx';
const DEFECT = 'defect/packages/defect-int8-onnx';

function issues(m: ManifestJson): Issue[] {
  const r = Manifest.safeParse(m);
  return r.success ? checkManifestConsistency(r.data) : zodIssues(r.error);
}

describe('the acceptance section of vigil.json', () => {
  it('is valid as shipped, for every kind of model', () => {
    for (const p of [
      RUL,
      DEFECT,
      'machine-failure/packages/pump-failure-gbt',
      'anomaly/packages/pump-anomaly-iforest',
    ])
      expect(issues(shipped(p)), p).toEqual([]);
  });

  it('says which family a metric belongs to when it is declared under the other', () => {
    const m = shipped(RUL);
    m.acceptance.checks.minMetrics.rmse = 3;
    m.acceptance.checks.maxMetrics.recall = 0.5;
    expect(issues(m)).toEqual([
      {
        path: 'acceptance.checks.minMetrics.rmse',
        message: 'rmse is an error (lower is better): declare its ceiling under maxMetrics',
      },
      {
        path: 'acceptance.checks.maxMetrics.recall',
        message: 'recall is a score (higher is better): declare its floor under minMetrics',
      },
    ]);
  });

  it('names the kinds of invariance and the holdout formats there are', () => {
    const m = shipped(RUL);
    m.acceptance.checks.invariance.push({ kind: 'blur', sigma: 1 });
    m.acceptance.holdout.format = 'csv';
    expect(issues(m)).toEqual(
      expect.arrayContaining([
        {
          path: 'acceptance.checks.invariance.2.kind',
          message: "kind must be 'brightness' or 'shift' (image models) or 'shuffle' (telemetry models)",
        },
        {
          path: 'acceptance.holdout.format',
          message: "format must be 'images' (a labels.csv) or 'telemetry' (a JSON file)",
        },
      ]),
    );
  });

  it('refuses checks that do not fit the model, and a holdout whose sha256 is not listed', () => {
    const image = shipped(DEFECT);
    image.acceptance.checks.invariance.push({ kind: 'shuffle', tag: 'speed', tolerance: 1 });
    image.acceptance.checks.monotonic = [{ tag: 'speed', direction: 'increasing', by: 1 }];
    image.acceptance.checks.maxMetrics = { rmse: 1 };
    delete image.files['acceptance/labels.csv'];
    expect(issues(image)).toEqual([
      {
        path: 'acceptance.holdout.labels',
        message:
          "'acceptance/labels.csv' is not listed in files, so its sha256 cannot be checked; list it (and every holdout frame) with its sha256",
      },
      {
        path: 'acceptance.checks.invariance.3.kind',
        message: "'shuffle' permutes a tag; this is an image model",
      },
      {
        path: 'acceptance.checks.monotonic.0',
        message: 'monotonic relations raise a tag; this is an image model',
      },
      {
        path: 'acceptance.checks.maxMetrics.rmse',
        message: 'rmse measures a regression; a classification model has none (use minMetrics)',
      },
    ]);

    const telemetry = shipped(RUL);
    telemetry.acceptance.checks.invariance.push({ kind: 'brightness', delta: 0.1 });
    telemetry.acceptance.checks.monotonic[0].tag = 's99';
    expect(issues(telemetry)).toEqual([
      {
        path: 'acceptance.checks.invariance.2.kind',
        message: "'brightness' changes an image; this is a telemetry model (use shuffle)",
      },
      {
        path: 'acceptance.checks.monotonic.0.tag',
        message: expect.stringMatching(
          /^'s99' is not one of the model's tags \(setting1, setting2, .*, s21\)$/,
        ),
      },
    ]);
  });

  it('refuses probabilities on a failure probability output of one value, pointing to range', () => {
    const pump = 'machine-failure/packages/pump-failure-gbt';
    // As shipped: [p(ok), p(fail)], a distribution that sums to 1.
    expect(issues(shipped(pump))).toEqual([]);
    // p(fail) alone: each value is in [0, 1] but one value never sums to 1.
    const m = shipped(pump);
    m.outputs[0].shape = [1, 1];
    m.postprocessing.index = 0;
    expect(m.acceptance.checks.outputs.probabilities).toBe(true);
    expect(issues(m)).toEqual([
      {
        path: 'acceptance.checks.outputs.probabilities',
        message:
          "'probabilities' holds one value (shape [1, 1]), the failure probability alone, and one value never sums to 1; " +
          'declare "range": { "min": 0, "max": 1 } instead',
      },
    ]);
    // What the message asks for is accepted.
    delete m.acceptance.checks.outputs.probabilities;
    m.acceptance.checks.outputs.range = { min: 0, max: 1 };
    expect(issues(m)).toEqual([]);
  });

  it('needs at least one check, and a range whose bounds are in order', () => {
    const m = shipped(DEFECT);
    m.acceptance.checks = {};
    expect(issues(m)).toEqual([
      {
        path: 'acceptance.checks',
        message: 'declare at least one check (outputs, invariance, monotonic, minMetrics or maxMetrics)',
      },
    ]);
    const a = shipped('anomaly/packages/pump-anomaly-iforest');
    a.acceptance.checks.outputs.range = { min: 1, max: 0 };
    expect(issues(a)).toEqual([
      { path: 'acceptance.checks.outputs.range', message: 'min must not be above max' },
    ]);
  });
});

describe('holdout metrics', () => {
  it('computes AUC with ties counting one half, and leaves undefined what has no denominator', () => {
    expect(auc([true, false, true, false], [0.9, 0.1, 0.8, 0.2])).toBe(1);
    expect(auc([true, false], [0.5, 0.5])).toBe(0.5);
    expect(auc([true, true, false, false], [0.1, 0.4, 0.35, 0.8])).toBe(0.25);
    expect(auc([true, true], [0.1, 0.2])).toBeNaN();
    const c = binaryCounts([false, false], [false, false]);
    expect(precision(c)).toBeNaN();
    expect(recall(c)).toBeNaN();
    expect(rmse([1, 3], [0, 0])).toBeCloseTo(Math.sqrt(5));
  });

  it('shuffles a tag between samples with no sample keeping its own values', () => {
    for (const n of [2, 3, 10, 40]) {
      const d = derangement(n, 1);
      expect([...d].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(d.every((j, i) => j !== i)).toBe(true);
    }
    expect(derangement(40, 1)).toEqual(derangement(40, 1));
    expect(derangement(40, 2)).not.toEqual(derangement(40, 1));
  });
});
