// One-off check (not committed): do the Node runtimes reproduce the Python reference outputs?
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { TFLiteNodeModelRunner } from 'tfjs-tflite-node';
const fx = 'test/fixtures/defect-parity/';
const expected = JSON.parse(readFileSync(fx + 'expected.json', 'utf8'));
const info = JSON.parse(readFileSync(fx + 'frames.json', 'utf8'));
const u8 = readFileSync(fx + 'inputs.u8');
const n = info.inputs.order.length, px = 128 * 128;
for (const pkg of Object.keys(expected)) {
  const dir = `models/defect/packages/${pkg}/`;
  const m = JSON.parse(readFileSync(dir + 'vigil.json', 'utf8'));
  let maxDiff = 0;
  if (m.format === 'onnx') {
    const s = await ort.InferenceSession.create(dir + m.file, { intraOpNumThreads: 1 });
    for (let i = 0; i < n; i++) {
      const x = new Float32Array(px); for (let j = 0; j < px; j++) x[j] = u8[i * px + j] / 255;
      const out = await s.run({ [m.inputs[0].name]: new ort.Tensor('float32', x, [1, 128, 128, 1]) });
      const p = out[m.outputs[0].name].data;
      const e = expected[pkg][info.inputs.order[i]];
      for (let k = 0; k < 4; k++) maxDiff = Math.max(maxDiff, Math.abs(p[k] - e[k]));
    }
  } else {
    const buf = readFileSync(dir + m.file);
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
    const runner = new TFLiteNodeModelRunner(ab, { threads: 1 });
    const qi = m.inputs[0].quantization, qo = m.outputs[0].quantization;
    for (let i = 0; i < n; i++) {
      const input = runner.getInputs()[0].data();
      for (let j = 0; j < px; j++) input[j] = Math.max(-128, Math.min(127, Math.round(u8[i * px + j] / 255 / qi.scale) + qi.zeroPoint));
      runner.infer();
      const d = runner.getOutputs()[0].data();
      const e = expected[pkg][info.inputs.order[i]];
      for (let k = 0; k < 4; k++) maxDiff = Math.max(maxDiff, Math.abs((d[k] - qo.zeroPoint) * qo.scale - e[k]));
    }
  }
  console.log(pkg, 'max abs diff vs python reference', maxDiff);
}
