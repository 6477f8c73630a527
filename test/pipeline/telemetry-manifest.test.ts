import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Manifest, isImageManifest, isTelemetryManifest } from '../../runtime/model/manifest.js';
import { checkManifestConsistency, loadModelPackage, peekModelKind } from '../../runtime/model/package.js';
import type { ManifestJson } from '../engines/support.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/telemetry-models');

function fixture(name: string): Manifest {
  return Manifest.parse(JSON.parse(readFileSync(path.join(FIXTURES, name, 'vigil.json'), 'utf8')));
}

/** The issues of a fixture's manifest after an edit, as `path: message` lines. */
function issuesAfter(name: string, edit: (m: ManifestJson) => void): string[] {
  const m = structuredClone(fixture(name)) as ManifestJson;
  edit(m);
  return checkManifestConsistency(Manifest.parse(m)).map((i) => `${i.path}: ${i.message}`);
}

describe('telemetry model packages', () => {
  it('load and verify, and say what kind they are', async () => {
    for (const name of ['mean-rul', 'iforest-anomaly']) {
      const pkg = await loadModelPackage(path.join(FIXTURES, name));
      expect(isTelemetryManifest(pkg.manifest)).toBe(true);
      expect(isImageManifest(pkg.manifest)).toBe(false);
      expect(await peekModelKind(pkg.dir)).toBe('telemetry');
    }
    expect(await peekModelKind(path.resolve(import.meta.dirname, '../fixtures/tiny/fp32'))).toBe('image');
    expect(await peekModelKind(FIXTURES)).toBeUndefined();
  });

  it('need one normalisation entry per tag, distinct tags, and the axis tag outside them', () => {
    expect(
      issuesAfter('mean-rul', (m) => {
        m.preprocessing.normalize.mean = [0, 0];
        m.preprocessing.tags = ['a', 'b', 'a'];
        m.preprocessing.axis.tag = 'b';
      }),
    ).toEqual([
      "preprocessing.tags.2: 'a' is listed twice",
      "preprocessing.axis.tag: 'b' is the axis and cannot also be a feature tag",
      'preprocessing.normalize.mean: needs one entry per tag (3), got 2',
    ]);
  });

  it('need an input shaped as the features say', () => {
    expect(issuesAfter('mean-rul', (m) => (m.preprocessing.window = 5))).toEqual([
      'inputs.0.shape: [1, 4, 3] does not match preprocessing (window of 5 steps, 3 tags): expected NTC [1, 5, 3]',
    ]);
    expect(issuesAfter('iforest-anomaly', (m) => (m.preprocessing.tags = ['a', 'b']))).toEqual([
      'preprocessing.normalize.mean: needs one entry per tag (2), got 3',
      'preprocessing.normalize.std: needs one entry per tag (2), got 3',
      'inputs.0.shape: [1, 18] does not match preprocessing (summary: 6 statistics of 2 tags): expected NC [1, 12]',
    ]);
    expect(issuesAfter('iforest-anomaly', (m) => (m.inputs[0].layout = 'NTC'))).toEqual([
      "inputs.0.layout: 'NTC' does not match features 'summary': expected NC",
    ]);
  });

  it('need the output they read, with the index in range', () => {
    expect(issuesAfter('mean-rul', (m) => (m.postprocessing.output = 'risk'))).toEqual([
      "postprocessing.output: 'risk' is not one of the outputs ('rul')",
    ]);
    expect(issuesAfter('iforest-anomaly', (m) => (m.postprocessing.index = 1))).toEqual([
      "postprocessing.index: 1 is out of range: output 'scores' has 1 value (last dimension of [1, 1])",
    ]);
  });

  it('need clear on the right side of raise, and a probability for failure_probability', () => {
    expect(issuesAfter('mean-rul', (m) => (m.postprocessing.alert.clear = 20))).toEqual([
      'postprocessing.alert.clear: 20 must not be below raise (30): an alert raised at or below 30 clears once the score is back above clear',
    ]);
    expect(
      issuesAfter('mean-rul', (m) => {
        m.postprocessing = {
          type: 'failure_probability',
          output: 'rul',
          horizon: 30,
          unit: 'cycles',
          alert: { direction: 'above', raise: 1.5, clear: 0.5 },
        };
      }),
    ).toEqual(['postprocessing.alert.raise: 1.5 is not a probability (0..1)']);
  });

  it('refuse an image preprocessing with a telemetry postprocessing', () => {
    const image = JSON.parse(
      readFileSync(path.resolve(import.meta.dirname, '../fixtures/tiny/fp32/vigil.json'), 'utf8'),
    ) as ManifestJson;
    image.postprocessing = fixture('mean-rul').postprocessing;
    image.postprocessing.output = 'probs';
    expect(checkManifestConsistency(Manifest.parse(image)).map((i) => i.path)).toEqual([
      'postprocessing.type',
    ]);
  });
});
