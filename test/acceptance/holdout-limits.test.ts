import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_HOLDOUT_BYTES, MAX_HOLDOUT_SAMPLES } from '../../runtime/acceptance/holdout.js';
import type { TelemetryHoldoutFile } from '../../runtime/acceptance/holdout.js';
import { PackageWorkshop } from '../helpers/model-packages.js';
import { testJson, variant, vigil } from './support.js';

// A holdout that cannot give a meaningful or timely answer is refused before any inference, as
// `vigil models test` reports it (exit 2, `where: message`): a shuffle over one sample (compared
// with itself), and a holdout past the size limits the rollout relies on (docs/ACCEPTANCE.md).

const workshop = new PackageWorkshop();
afterAll(() => workshop.cleanup());

const HOLDOUT = 'acceptance/holdout.json';

/** The shipped pump failure package with its telemetry holdout rewritten by `edit`. */
function pumpWith(edit: (h: TelemetryHoldoutFile) => void): Promise<string> {
  return variant(workshop, 'pump-failure-gbt', async (_m, dir) => {
    const file = path.join(dir, HOLDOUT);
    const h = JSON.parse(await readFile(file, 'utf8')) as TelemetryHoldoutFile;
    edit(h);
    await writeFile(file, JSON.stringify(h));
  });
}

describe('a shuffle invariance needs at least two holdout samples', () => {
  it('refuses a one-sample holdout, naming the shuffle check', async () => {
    const dir = await pumpWith((h) => {
      h.samples = h.samples.slice(0, 1);
    });
    const run = await vigil('models', 'test', dir);
    expect(run.code, run.stdout).toBe(2);
    expect(run.stderr).toContain(
      "acceptance.checks.invariance.0: invariance.shuffle.speed swaps speed's values between holdout samples, " +
        'and acceptance/holdout.json has 1 sample: it would be compared with itself and always pass; ' +
        'give the holdout at least 2 samples',
    );
  }, 60_000);

  it('runs it on two samples, which swap their values', async () => {
    const dir = await pumpWith((h) => {
      h.samples = h.samples.slice(0, 2);
    });
    const { run, report } = await testJson(dir);
    expect([0, 1], run.stderr).toContain(run.code);
    expect(report.holdout.samples).toBe(2);
    const shuffle = report.checks.find((c) => c.id === 'invariance.shuffle.speed')!;
    expect(shuffle.measured).toMatch(/^\d+% \(\d\/2\); largest move /);
  }, 60_000);
});

describe('a holdout past the size limits is refused before it is read', () => {
  it(`more than ${MAX_HOLDOUT_SAMPLES} samples`, async () => {
    const dir = await pumpWith((h) => {
      const one = h.samples[0]!;
      h.samples = Array.from({ length: MAX_HOLDOUT_SAMPLES + 1 }, (_, i) => ({ ...one, id: `s${i}` }));
    });
    const run = await vigil('models', 'test', dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `acceptance/holdout.json: samples: ${MAX_HOLDOUT_SAMPLES + 1} samples; a holdout has at most ${MAX_HOLDOUT_SAMPLES}`,
    );
  }, 60_000);

  it(`more than ${MAX_HOLDOUT_BYTES / 1024 / 1024} MiB`, async () => {
    const dir = await pumpWith((h) => {
      h.description = 'x'.repeat(MAX_HOLDOUT_BYTES);
    });
    const run = await vigil('models', 'test', dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /acceptance\.holdout\.file: 'acceptance\/holdout\.json' is 16\.\d+ MiB; a holdout is at most 16 MiB \(the rollout waits for its tests\)/,
    );
  }, 60_000);

  it('an image holdout whose frames add up to more than the limit', async () => {
    const dir = await variant(workshop, 'defect-int8-onnx', async (m, d) => {
      // One frame padded past the limit (bytes after a PNG's end are ignored by decoders).
      const frame = path.join(d, 'acceptance/12-ok.png');
      await writeFile(frame, Buffer.concat([await readFile(frame), Buffer.alloc(MAX_HOLDOUT_BYTES)]));
      expect(m.files['acceptance/12-ok.png']).toBeDefined();
    });
    const run = await vigil('models', 'test', dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /acceptance\.holdout\.labels: acceptance\/labels\.csv and its 40 frames are 16\.\d+ MiB; a holdout is at most 16 MiB/,
    );
  }, 60_000);
});
