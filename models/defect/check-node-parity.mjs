// Checks that the Node runtimes Vigil ships (onnxruntime-node, tfjs-tflite-node) reproduce the
// Python reference outputs in test/fixtures/defect-parity/ for every package. Run by build.sh
// after the packages are written: a package the production runtimes read differently fails here.
//   node models/defect/check-node-parity.mjs [repo root]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import * as ort from 'onnxruntime-node';
import { TFLiteNodeModelRunner } from 'tfjs-tflite-node';

const repo = path.resolve(process.argv[2] ?? '.');
const fixtures = path.join(repo, 'test/fixtures/defect-parity');
const expected = JSON.parse(readFileSync(path.join(fixtures, 'expected.json'), 'utf8'));
const info = JSON.parse(readFileSync(path.join(fixtures, 'frames.json'), 'utf8'));
const pixels = readFileSync(path.join(fixtures, info.inputs.file));
const [count, height, width] = info.inputs.shape;
const plane = height * width;
// fp32/int8 ONNX agree to float rounding; TFLite with the built-in kernels is bit-exact.
const TOLERANCE = 1e-4;

async function onnxOutputs(dir, manifest) {
  const session = await ort.InferenceSession.create(path.join(dir, manifest.file), { intraOpNumThreads: 1 });
  const outputs = [];
  for (let i = 0; i < count; i++) {
    const x = new Float32Array(plane);
    for (let j = 0; j < plane; j++) x[j] = pixels[i * plane + j] / 255;
    const result = await session.run({
      [manifest.inputs[0].name]: new ort.Tensor('float32', x, manifest.inputs[0].shape),
    });
    outputs.push(Array.from(result[manifest.outputs[0].name].data));
  }
  return outputs;
}

function tfliteOutputs(dir, manifest) {
  const file = readFileSync(path.join(dir, manifest.file));
  // An exact ArrayBuffer: Buffer#buffer may be a larger shared pool.
  const runner = new TFLiteNodeModelRunner(
    file.buffer.slice(file.byteOffset, file.byteOffset + file.length),
    { threads: 1 },
  );
  const qi = manifest.inputs[0].quantization;
  const qo = manifest.outputs[0].quantization;
  const outputs = [];
  for (let i = 0; i < count; i++) {
    const input = runner.getInputs()[0].data();
    for (let j = 0; j < plane; j++) {
      input[j] = Math.max(
        -128,
        Math.min(127, Math.round(pixels[i * plane + j] / 255 / qi.scale) + qi.zeroPoint),
      );
    }
    runner.infer();
    outputs.push(Array.from(runner.getOutputs()[0].data(), (q) => (q - qo.zeroPoint) * qo.scale));
  }
  return outputs;
}

let failed = false;
for (const pkg of Object.keys(expected)) {
  const dir = path.join(repo, 'models/defect/packages', pkg);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'vigil.json'), 'utf8'));
  const outputs =
    manifest.format === 'onnx' ? await onnxOutputs(dir, manifest) : tfliteOutputs(dir, manifest);
  let maxDiff = 0;
  outputs.forEach((probs, i) => {
    const want = expected[pkg][info.inputs.order[i]];
    probs.forEach((p, k) => (maxDiff = Math.max(maxDiff, Math.abs(p - want[k]))));
  });
  const ok = maxDiff <= TOLERANCE;
  failed ||= !ok;
  process.stdout.write(
    `${ok ? 'parity ok' : 'PARITY FAILED'}: ${pkg} (${manifest.format}) max |node - python| = ${maxDiff.toExponential(2)} over ${count} frames\n`,
  );
}
process.exitCode = failed ? 1 : 0;
