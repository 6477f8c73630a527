import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManifestError, VigilError } from '../../runtime/errors.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { TINY_FP32, TINY_INT8, cleanupCopies, copyPackage, editManifest } from './support.js';

async function rejection(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  return err as VigilError;
}

afterEach(cleanupCopies);

describe('loadModelPackage', () => {
  it('loads a valid package', async () => {
    const pkg = await loadModelPackage(TINY_FP32);
    expect(pkg.dir).toBe(TINY_FP32);
    expect(pkg.modelPath).toBe(path.join(TINY_FP32, 'model.onnx'));
    expect(pkg.manifest.name).toBe('tiny-fp32');
    expect(pkg.manifest.preprocessing).toMatchObject({ type: 'image', resize: 'fill' });
    await expect(loadModelPackage(TINY_INT8)).resolves.toBeDefined();
  });

  it('refuses a model file with one byte changed, naming the file and both hashes', async () => {
    const dir = await copyPackage(TINY_FP32);
    const file = path.join(dir, 'model.onnx');
    const bytes = await readFile(file);
    bytes[bytes.length - 1] ^= 0x01;
    await writeFile(file, bytes);
    const manifest = JSON.parse(await readFile(path.join(dir, 'vigil.json'), 'utf8'));
    const err = await rejection(loadModelPackage(dir));
    expect(err.code).toBe('VIGIL_ERR_MODEL_FILE_MISMATCH');
    expect(err.message).toContain("'model.onnx'");
    expect(err.message).toContain(manifest.files['model.onnx']);
    expect(err.message).toMatch(/damaged or was altered/);
    expect(err.detail?.actual).toMatch(/^[0-9a-f]{64}$/);
    expect(err.detail?.actual).not.toBe(manifest.files['model.onnx']);
  });

  it('refuses a listed file that is missing', async () => {
    const dir = await copyPackage(TINY_FP32);
    await rm(path.join(dir, 'model.onnx'));
    const err = await rejection(loadModelPackage(dir));
    expect(err.code).toBe('VIGIL_ERR_MODEL_FILE_MISMATCH');
    expect(err.message).toMatch(/'model.onnx'.*missing/);
  });

  it('refuses files that the manifest does not list, but allows the signature', async () => {
    const dir = await copyPackage(TINY_FP32);
    await writeFile(path.join(dir, 'vigil.json.sig'), 'signature');
    await expect(loadModelPackage(dir)).resolves.toBeDefined();
    await mkdir(path.join(dir, 'extra'));
    await writeFile(path.join(dir, 'extra', 'payload.so'), 'x');
    const err = await rejection(loadModelPackage(dir));
    expect(err.code).toBe('VIGIL_ERR_MODEL_FILE_MISMATCH');
    expect(err.message).toContain("'extra/payload.so'");
  });

  it.each([['../outside.onnx'], ['/etc/passwd'], ['sub/../../x'], ['./model.onnx']])(
    'refuses the path-traversal file entry %s',
    async (entry) => {
      const dir = await copyPackage(TINY_FP32);
      await editManifest(
        dir,
        (m) => {
          m.files[entry] = '0'.repeat(64);
        },
        false,
      );
      const err = await rejection(loadModelPackage(dir));
      expect(err).toBeInstanceOf(ManifestError);
      expect(err.code).toBe('VIGIL_ERR_MANIFEST_INVALID');
      expect(err.message).toContain(`files.${entry}: '${entry}' must be a plain relative path`);
    },
  );

  it('refuses a model file entry that points outside the package', async () => {
    const dir = await copyPackage(TINY_FP32);
    await editManifest(
      dir,
      (m) => {
        m.file = '../model.onnx';
      },
      false,
    );
    const err = await rejection(loadModelPackage(dir));
    expect(err.message).toContain('file: ');
    expect(err.message).toContain('is not listed in files');
  });

  it('lists schema problems as path: message lines', async () => {
    const dir = await copyPackage(TINY_FP32);
    await editManifest(dir, (m) => {
      m.format = 'pytorch';
      m.inputs[0].shape = [1, -8, 8, 3];
      m.colour = 'red';
    });
    const err = (await rejection(loadModelPackage(dir))) as ManifestError;
    expect(err).toBeInstanceOf(ManifestError);
    const paths = err.issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['format', 'inputs.0.shape.1', '(root)']));
    expect(err.message).toMatch(/^format: /m);
    expect(err.message).toMatch(/^\(root\): unknown key 'colour'/m);
  });

  it('says clearly when vigil.json is missing or not JSON', async () => {
    const dir = await copyPackage(TINY_FP32);
    await appendFile(path.join(dir, 'vigil.json'), '}}');
    let err = await rejection(loadModelPackage(dir));
    expect(err.message).toMatch(/not valid JSON/);
    await rm(path.join(dir, 'vigil.json'));
    err = await rejection(loadModelPackage(dir));
    expect(err.code).toBe('VIGIL_ERR_MANIFEST_INVALID');
    expect(err.message).toMatch(/vigil.json: not found; .* is not a model package/);
  });

  it('cross-checks quantization, labels, the postprocessing output and the preprocessing size', async () => {
    const dir = await copyPackage(TINY_INT8);
    await editManifest(dir, (m) => {
      delete m.inputs[0].quantization;
      m.postprocessing.labels = ['ok', 'scratch', 'dent'];
      m.preprocessing.width = 16;
      m.postprocessing.okLabel = 'fine';
    });
    const err = (await rejection(loadModelPackage(dir))) as ManifestError;
    expect(err.issues.map((i) => i.path).sort()).toEqual(
      ['inputs.0.quantization', 'inputs.0.shape', 'postprocessing.labels', 'postprocessing.okLabel'].sort(),
    );
    expect(err.message).toContain("postprocessing.labels: 3 labels, but output 'probs' has 2 scores");
    expect(err.message).toContain('expected NHWC [1, 8, 16, 3]');

    await editManifest(dir, (m) => {
      m.postprocessing.output = 'scores';
    });
    const err2 = (await rejection(loadModelPackage(dir))) as ManifestError;
    expect(err2.message).toContain("postprocessing.output: 'scores' is not one of the outputs ('probs')");
  });
});
