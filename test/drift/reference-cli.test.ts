import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelsReferenceCommand } from '../../runtime/cli/models-reference.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { cmapssDir } from '../../simulator/machines/cmapss-data.js';
import { ROOT } from '../helpers/daemon.js';

// `vigil models reference` on copies of the shipped packages, with few samples: it runs Vigil's
// own preprocessing and engine, writes a valid manifest (vigil.json is not in its own sha256
// list, so the package stays verified), and refuses a signed package.

// $VIGIL_CMAPSS_DIR or the shared dataset folders (it throws, naming where it looked, without them).
const CMAPSS = cmapssDir();
let dir: string;
const lines: string[] = [];
const say = (l: string) => void lines.push(l);

async function copy(pkg: string): Promise<string> {
  const dest = path.join(dir, path.basename(pkg));
  await cp(path.join(ROOT, pkg), dest, { recursive: true });
  return dest;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-drift-ref-'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('vigil models reference', () => {
  it('writes the reference of a pump model from simulated training runs', async () => {
    const pkg = await copy('models/machine-failure/packages/pump-failure-gbt');
    const before = JSON.parse(await readFile(path.join(pkg, 'vigil.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(await modelsReferenceCommand(pkg, { runs: '2' }, say)).toBe(0);
    const { manifest } = await loadModelPackage(pkg);
    const ref = manifest.referenceStats!;
    expect(ref.source!.data).toMatch(/^2 simulated pump run-to-failure runs .* seed 1001/);
    expect(ref.features!.map((f) => f.name)).toEqual([
      'temperature',
      'vibration_rms',
      'current',
      'speed',
      'pressure',
    ]);
    expect(ref.features!.every((f) => f.edges.length === 9 && f.count === ref.source!.samples)).toBe(true);
    expect(ref.output!.score!.sample).toHaveLength(200);
    // Everything else in the manifest is as it was.
    expect({ ...manifest, referenceStats: undefined }).toEqual({
      ...(JSON.parse(JSON.stringify(before)) as object),
      referenceStats: undefined,
    });
    expect(ref.inputMean).toEqual((before['referenceStats'] as { inputMean: number[] }).inputMean);
    expect(lines.join('\n')).toMatch(/wrote .*pump-failure-gbt\/vigil.json/);
  });

  it('writes the reference of an image model from simulator camera frames, with class shares', async () => {
    const pkg = await copy('models/defect/packages/defect-int8-onnx');
    expect(await modelsReferenceCommand(pkg, { count: '40', defectRate: '0.5' }, say)).toBe(0);
    const ref = (await loadModelPackage(pkg)).manifest.referenceStats!;
    expect(ref.source).toMatchObject({ samples: 40 });
    expect(ref.source!.data).toMatch(/40 frames of the simulator camera .* seed 404, defect rate 0.5/);
    expect(ref.features!.map((f) => f.name)).toEqual(['brightness', 'contrast', 'sharpness']);
    expect(ref.output!.classes!.labels).toEqual(['ok', 'scratch', 'crack', 'inclusion']);
    expect(ref.output!.classes!.proportions.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
  });

  it('reads C-MAPSS training files for an engine model', async () => {
    const pkg = await copy('models/engine-rul/packages/engine-rul-rf-onnx');
    // Two engines of each subset: the format of NASA's files, few rows.
    const data = path.join(dir, 'cmapss');
    await cp(CMAPSS, data, { recursive: true, filter: (f) => !f.endsWith('.txt') || f.includes('train_') });
    for (const subset of ['FD001', 'FD003']) {
      const file = path.join(data, `train_${subset}.txt`);
      const rows = (await readFile(file, 'utf8')).split('\n').filter((l) => /^\s*[12]\s/.test(l));
      await writeFile(file, rows.join('\n') + '\n');
    }
    expect(await modelsReferenceCommand(pkg, { cmapssDir: data }, say)).toBe(0);
    const ref = (await loadModelPackage(pkg)).manifest.referenceStats!;
    expect(ref.source!.data).toMatch(/C-MAPSS train_FD001.txt and train_FD003.txt/);
    expect(ref.features!.find((f) => f.name === 's1')!.edges).toEqual([]);
    expect(ref.output!.score!.count).toBeGreaterThan(100);
    expect(lines.join('\n')).toMatch(/s1: .*constant: not monitored/);
  });

  it('refuses to rewrite a signed package, and says what to do', async () => {
    const pkg = await copy('models/machine-failure/packages/spindle-failure-gbt');
    await writeFile(path.join(pkg, 'vigil.json.sig'), 'c2lnbmF0dXJl\n');
    const before = await readFile(path.join(pkg, 'vigil.json'), 'utf8');
    expect(await modelsReferenceCommand(pkg, { runs: '1' }, say)).toBe(2);
    expect(lines.at(-1)).toMatch(
      /is signed \(vigil.json.sig\): writing the reference would invalidate the signature/,
    );
    expect(await readFile(path.join(pkg, 'vigil.json'), 'utf8')).toBe(before);
  });
});
