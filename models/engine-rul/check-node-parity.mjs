// Checks that the Node runtimes Vigil ships (onnxruntime-node, tfjs-tflite-node) run every operator
// the converters emitted and reproduce the Python reference outputs in
// test/fixtures/engine-rul-parity/ for every engine RUL package. Run by build.sh after the packages
// are written, before the runtime's telemetry pipeline is involved at all.
//   node models/engine-rul/check-node-parity.mjs [repo root]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import * as ort from 'onnxruntime-node';
import { TFLiteNodeModelRunner } from 'tfjs-tflite-node';

const repo = path.resolve(process.argv[2] ?? '.');
const fixtures = path.join(repo, 'test/fixtures/engine-rul-parity');
const info = JSON.parse(readFileSync(path.join(fixtures, 'cases.json'), 'utf8'));
const expected = JSON.parse(readFileSync(path.join(fixtures, 'expected.json'), 'utf8'));

function floats(file) {
  const bytes = readFileSync(path.join(fixtures, file));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
const inputs = { window: floats('window.f32'), summary: floats('summary.f32') };

// In cycles of RUL. Float models: rounding only. int8 models: the same integer kernels should give
// the same codes, but onnxruntime-node 1.30 and tfjs-tflite-node (with XNNPACK, which it cannot turn
// off) are other builds than the Python references, so a requantization may land a step away.
// Float models (fp32 CNN, random forest): 1e-4 relative.
function tolerance(pkg, manifest, want) {
  const out = manifest.outputs[0];
  if (out.quantization) return 2 * out.quantization.scale + 1e-6;
  if (pkg.includes('int8')) return 0.5;
  return 1e-4 * Math.max(1, Math.abs(want));
}

async function onnxOutputs(dir, manifest, data, size) {
  const session = await ort.InferenceSession.create(path.join(dir, manifest.file), { intraOpNumThreads: 1 });
  const outputs = [];
  for (let i = 0; i < info.cases.length; i++) {
    const x = data.slice(i * size, (i + 1) * size);
    const result = await session.run({
      [manifest.inputs[0].name]: new ort.Tensor('float32', x, manifest.inputs[0].shape),
    });
    outputs.push(result[manifest.outputs[0].name].data[0]);
  }
  await session.release();
  return outputs;
}

function tfliteOutputs(dir, manifest, data, size) {
  const file = readFileSync(path.join(dir, manifest.file));
  // An exact ArrayBuffer: Buffer#buffer may be a larger shared pool.
  const runner = new TFLiteNodeModelRunner(
    file.buffer.slice(file.byteOffset, file.byteOffset + file.length),
    {
      threads: 1,
    },
  );
  const qi = manifest.inputs[0].quantization;
  const qo = manifest.outputs[0].quantization;
  const outputs = [];
  for (let i = 0; i < info.cases.length; i++) {
    const input = runner.getInputs()[0].data();
    for (let j = 0; j < size; j++) {
      const v = data[i * size + j] / qi.scale;
      const r = v < 0 ? -Math.round(-v) : Math.round(v);
      input[j] = Math.max(-128, Math.min(127, r + qi.zeroPoint));
    }
    runner.infer();
    outputs.push((runner.getOutputs()[0].data()[0] - qo.zeroPoint) * qo.scale);
  }
  return outputs;
}

let failed = false;
for (const pkg of Object.keys(expected)) {
  const dir = path.join(repo, 'models/engine-rul/packages', pkg);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'vigil.json'), 'utf8'));
  const data = inputs[manifest.preprocessing.features];
  const size = manifest.inputs[0].shape.reduce((a, b) => a * b, 1);
  const outputs =
    manifest.format === 'onnx'
      ? await onnxOutputs(dir, manifest, data, size)
      : tfliteOutputs(dir, manifest, data, size);
  let maxDiff = 0;
  let ok = true;
  info.cases.forEach((c, i) => {
    const want = expected[pkg][c.id];
    const limit = tolerance(pkg, manifest, want);
    const d = Math.abs(outputs[i] - want);
    maxDiff = Math.max(maxDiff, d);
    if (d > limit) {
      ok = false;
      process.stdout.write(`  ${pkg} ${c.id}: node ${outputs[i]} python ${want} (limit ${limit})\n`);
    }
  });
  failed ||= !ok;
  process.stdout.write(
    `${ok ? 'parity ok' : 'PARITY FAILED'}: ${pkg} (${manifest.format}, ${manifest.preprocessing.features}) ` +
      `max |node - python| = ${maxDiff.toExponential(2)} cycles over ${info.cases.length} windows\n`,
  );
}
process.exitCode = failed ? 1 : 0;
