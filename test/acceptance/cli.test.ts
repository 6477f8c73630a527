import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/daemon.js';
import { PackageWorkshop, corruptFile } from '../helpers/model-packages.js';
import { SHIPPED, logitsPackage, testJson, variant, vigil } from './support.js';

// `vigil models test PACKAGE` as a user runs it (the compiled CLI, real engines): the shipped
// packages pass their own checks, and packages broken in one way each fail on the check that
// catches that way, with the failing samples named.

const workshop = new PackageWorkshop();
afterAll(() => workshop.cleanup());

describe('the shipped packages pass their acceptance tests', () => {
  it.each(SHIPPED.map((p) => [path.relative(ROOT, p), p]))(
    '%s',
    async (_name, dir) => {
      const { run, report } = await testJson(dir);
      expect(run.code, run.stderr).toBe(0);
      expect(report.passed).toBe(true);
      expect(report.holdout.samples).toBe(40);
      // Each package declares output, behaviour and metric checks, and all of them ran.
      const ids = report.checks.map((c) => c.id);
      expect(ids).toContain('outputs.shape');
      expect(ids.some((id) => id.startsWith('invariance.') || id.startsWith('monotonic.'))).toBe(true);
      expect(ids.some((id) => id.startsWith('minMetrics.'))).toBe(true);
      expect(report.checks.filter((c) => !c.passed)).toEqual([]);
      expect(report.inferences).toBeGreaterThan(report.holdout.samples);
    },
    120_000,
  );

  it('prints a readable report: each check with expected, measured and PASS', async () => {
    const run = await vigil(
      'models',
      'test',
      path.join(ROOT, 'models/machine-failure/packages/pump-failure-gbt'),
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^pump-failure@1\.0\.0 /);
    expect(run.stdout).toMatch(/PASS {2}outputs\.probabilities +outputs are probabilities/);
    expect(run.stdout).toMatch(
      /PASS {2}monotonic\.temperature +the failure probability never falls as temperature rises/,
    );
    expect(run.stdout).toMatch(/expected: >= 0\.8\n +measured: 0\.9\b/);
    expect(run.stdout).toMatch(/\nPASSED: 8 of 8 checks \(\d+ inferences, [\d.]+ s\)\n$/);
  }, 60_000);
});

describe('a package it cannot test is refused with exit code 2', () => {
  it('without an acceptance section', async () => {
    const run = await vigil('models', 'test', path.join(ROOT, 'test/fixtures/rollout/good'));
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('declares no acceptance tests: its vigil.json has no acceptance section');
  });

  it('that is no package', async () => {
    const run = await vigil('models', 'test', await workshop.tempDir());
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/vigil\.json: not found; .* is not a model package/);
  });

  it('whose holdout frame was altered after it was built (its sha256 no longer matches)', async () => {
    const dir = await workshop.copy(SHIPPED[1]);
    await corruptFile(dir, 'acceptance/12-ok.png');
    const run = await vigil('models', 'test', dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/sha256 of 'acceptance\/12-ok\.png' is [0-9a-f]{64}, but vigil\.json says/);
  });

  it('whose holdout names a label the model does not have', async () => {
    const dir = await variant(workshop, 'defect-int8-onnx', async (_m, d) => {
      const csv = path.join(d, 'acceptance/labels.csv');
      const text = await readFile(csv, 'utf8');
      expect(text).toContain('\n12-ok.png,ok\n');
      await writeFile(csv, text.replace('12-ok.png,ok', '12-ok.png,dent'));
    });
    const run = await vigil('models', 'test', dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      "acceptance/labels.csv line 14: label 'dent' is not one of the model's labels",
    );
  });
});

describe('a broken package fails, on the check that catches its fault', () => {
  it('a classifier exported without its softmax outputs logits, not probabilities', async () => {
    const { run, report } = await testJson(await logitsPackage(workshop));
    expect(run.code).toBe(1);
    const probs = report.checks.find((c) => c.id === 'outputs.probabilities')!;
    expect(probs.passed).toBe(false);
    expect(probs.failingCount).toBe(40);
    expect(probs.measured).toMatch(/^0% \(0\/40\); values -[\d.]+\.\.[\d.]+, sums/);
    expect(probs.failing[0]!.detail).toMatch(/^values \[.*\], sum [\d.]+$/);
    // The shape is right: only what the numbers mean is wrong.
    expect(report.checks.find((c) => c.id === 'outputs.shape')!.passed).toBe(true);
  }, 60_000);

  it('holdout labels that do not match the frames put accuracy below its floor', async () => {
    const dir = await variant(workshop, 'defect-int8-onnx', async (_m, d) => {
      const csv = path.join(d, 'acceptance/labels.csv');
      const [header, ...rows] = (await readFile(csv, 'utf8')).trim().split('\n');
      // Each frame gets the next frame's label: most no longer match their picture.
      const labels = rows.map((r) => r.split(',')[1]!);
      const shuffled = rows.map((r, i) => `${r.split(',')[0]},${labels[(i + 1) % labels.length]}`);
      await writeFile(csv, [header, ...shuffled].join('\n') + '\n');
    });
    const { run, report } = await testJson(dir);
    expect(run.code).toBe(1);
    const acc = report.checks.find((c) => c.id === 'minMetrics.accuracy')!;
    expect(acc.passed).toBe(false);
    expect(acc.expected).toBe('>= 0.9');
    expect(Number(acc.measured)).toBeLessThan(0.6);
    expect(acc.failing[0]!.detail).toMatch(/^labelled \w+, predicted \w+ \(defect score [\d.e-]+\)$/);
    // The model itself is fine: its outputs and invariances pass.
    for (const id of ['outputs.probabilities', 'invariance.brightness'])
      expect(report.checks.find((c) => c.id === id)!.passed).toBe(true);
  }, 60_000);

  it('a monotonic relation declared the wrong way round is broken wherever the score moves', async () => {
    const dir = await variant(workshop, 'pump-failure-gbt', (m) => {
      m.acceptance.checks.monotonic[0].direction = 'decreasing';
    });
    const { run, report } = await testJson(dir);
    expect(run.code).toBe(1);
    const mono = report.checks.find((c) => c.id === 'monotonic.temperature')!;
    expect(mono.passed).toBe(false);
    expect(mono.title).toBe('the failure probability never rises as temperature rises by 9.9 in 10 steps');
    // Samples far from a failure stay near 0 whatever the temperature; the others rise.
    expect(mono.failingCount).toBeGreaterThanOrEqual(10);
    expect(mono.failing[0]!.detail).toMatch(
      /^score [\d.e-]+( -> [\d.e-]+){10}: rises by [\d.]+ at \+[\d.]+$/,
    );
  }, 60_000);

  it('shuffling a tag the model reads moves its score', async () => {
    const dir = await variant(workshop, 'engine-rul-fp32-onnx', (m) => {
      m.acceptance.checks.invariance = [{ kind: 'shuffle', tag: 's4', tolerance: 1 }];
    });
    const { run, report } = await testJson(dir);
    expect(run.code).toBe(1);
    const inv = report.checks.find((c) => c.id === 'invariance.shuffle.s4')!;
    expect(inv.passed).toBe(false);
    expect(inv.failing[0]!.detail).toMatch(/^score [\d.]+ -> [\d.]+ with s4 of FD00\d-unit-\d+@\d+$/);
  }, 60_000);

  it('a manifest that reads p(ok) as the failure probability misses the failures', async () => {
    const dir = await variant(workshop, 'pump-failure-gbt', (m) => {
      m.postprocessing.index = 0;
    });
    const { run, report } = await testJson(dir);
    expect(run.code).toBe(1);
    const failed = report.checks.filter((c) => !c.passed).map((c) => c.id);
    expect(failed).toEqual(expect.arrayContaining(['minMetrics.recall', 'minMetrics.auc']));
    expect(report.checks.find((c) => c.id === 'minMetrics.recall')!.failing[0]!.detail).toMatch(
      /^missed: label 1, score [\d.e-]+: alert not raised$/,
    );
    // Both values are still probabilities summing to 1: only the metrics can tell.
    expect(report.checks.find((c) => c.id === 'outputs.probabilities')!.passed).toBe(true);
  }, 60_000);

  it('a RUL above its declared range is named with its value', async () => {
    const dir = await variant(workshop, 'engine-rul-int8-tflite', (m) => {
      m.acceptance.checks.outputs.range = { min: 0, max: 100 };
    });
    const { run, report } = await testJson(dir);
    expect(run.code).toBe(1);
    const range = report.checks.find((c) => c.id === 'outputs.range')!;
    expect(range.passed).toBe(false);
    expect(range.expected).toBe('in [0, 100] on every sample');
    expect(range.failing.every((f) => /^output 1\d\d(\.\d+)?$/.test(f.detail))).toBe(true);
  }, 60_000);

  it('a classifier is not invariant to a brightness change far beyond what it was built for', async () => {
    const dir = await variant(workshop, 'defect-int8-tflite', (m) => {
      m.acceptance.checks.invariance = [{ kind: 'brightness', delta: 0.3, minAgreement: 0.95 }];
    });
    const run = await vigil('models', 'test', dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /FAIL {2}invariance\.brightness +the top class survives brightness ± 0\.3 of full scale/,
    );
    expect(run.stdout).toMatch(/ - \d\d-\w+\.png: [+-]0\.3: \w+ -> \w+/);
    expect(run.stdout).toMatch(/\nFAILED: 1 of \d+ checks failed/);
  }, 60_000);
});

describe('vigil models holdout', () => {
  it.each([
    'models/defect/packages/defect-int8-tflite',
    'models/engine-rul/packages/engine-rul-rf-onnx',
    'models/anomaly/packages/pump-anomaly-iforest',
  ])(
    'rebuilds the holdout of %s byte for byte from the data the model was built from, and passes',
    async (pkg) => {
      const shippedDir = path.join(ROOT, pkg);
      // Checks from the family's acceptance.json, as build.sh passes them.
      const checks = path.join(shippedDir, '../../acceptance.json');
      const dir = await workshop.copy(shippedDir);
      const m = JSON.parse(await readFile(path.join(dir, 'vigil.json'), 'utf8'));
      delete m.acceptance;
      m.files = { [m.file]: m.files[m.file] };
      await writeFile(path.join(dir, 'vigil.json'), JSON.stringify(m, null, 2));
      await rm(path.join(dir, 'acceptance'), { recursive: true });

      const run = await vigil('models', 'holdout', dir, '--checks', checks);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/\nPASSED: /);
      const rebuilt = JSON.parse(await readFile(path.join(dir, 'vigil.json'), 'utf8'));
      const original = JSON.parse(await readFile(path.join(shippedDir, 'vigil.json'), 'utf8'));
      expect(rebuilt.files).toEqual(original.files);
      expect(rebuilt.acceptance).toEqual(original.acceptance);
    },
    120_000,
  );

  it('refuses a signed package, whose signature the new manifest would break', async () => {
    const dir = await workshop.copy(SHIPPED[0]);
    await writeFile(path.join(dir, 'vigil.json.sig'), 'c2lnbmF0dXJl\n');
    const run = await vigil('models', 'holdout', dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'is signed (vigil.json.sig): writing the holdout would invalidate the signature',
    );
  });
});
