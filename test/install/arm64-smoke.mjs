// Loads Vigil's native modules and runs the defect models through Vigil's own engine loader,
// preprocessing and postprocessing, then prints one JSON line. Run once by the ARM64 node under
// qemu-aarch64-static on the ARM64 tree, and once by this machine's node on the x86-64 tree:
// the same inputs must give the same answers (test/install/arm64-smoke.sh runs both).
//   node test/install/arm64-smoke.mjs --app DIR --fixtures DIR [--reference FILE.json]
// DIR holds dist/, node_modules/ and models/; every module is resolved from there, never from
// beside this script, so that the ARM64 run cannot pick up an x86-64 module by accident.
import { Buffer } from 'node:buffer';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

const started = performance.now();
const args = parseArgs(process.argv.slice(2));
const app = path.resolve(args.app ?? '.');
const fixtures = path.resolve(args.fixtures ?? path.join(app, 'test/fixtures/defect-parity'));
const require = createRequire(path.join(app, 'package.json'));
const importApp = (rel) => import(pathToFileURL(path.join(app, rel)).href);

const PACKAGES = ['defect-int8-onnx', 'defect-fp32-onnx', 'defect-int8-tflite'];
const JPEG_FRAMES = 4;

const info = JSON.parse(readFileSync(path.join(fixtures, 'frames.json'), 'utf8'));
const pixels = readFileSync(path.join(fixtures, info.inputs.file));
const [count, height, width] = info.inputs.shape;
const plane = height * width;
const frame = (i) => pixels.subarray(i * plane, (i + 1) * plane);

const result = {
  arch: process.arch,
  platform: process.platform,
  node: process.version,
  modules: {},
  vigil: {},
  timings: {},
};

/** Runs one check; a failure is recorded with its message and the other checks still run. */
async function check(group, name, fn) {
  const t0 = performance.now();
  try {
    group[name] = { ok: true, ...(await fn()) };
  } catch (err) {
    group[name] = {
      ok: false,
      error: String(err?.stack ?? err)
        .split('\n')
        .slice(0, 4)
        .join(' | '),
    };
  }
  group[name].ms = Math.round(performance.now() - t0);
}

await check(result.modules, 'better-sqlite3', async () => {
  const Database = require('better-sqlite3');
  const db = new Database(':memory:');
  db.exec('CREATE TABLE reading (tag TEXT, value REAL)');
  const insert = db.prepare('INSERT INTO reading VALUES (?, ?)');
  db.transaction(() => [1.5, 2.25, 3].forEach((v, i) => insert.run(`t${i}`, v)))();
  const row = db.prepare('SELECT count(*) AS rows, sum(value) AS total FROM reading').get();
  const sqlite = db.prepare('SELECT sqlite_version() AS v').get().v;
  db.close();
  return { rows: row.rows, total: row.total, sqlite };
});

await check(result.modules, 'sharp', async () => {
  const sharp = require('sharp');
  // A deterministic gradient, through a PNG encode, a decode and a resize.
  const w = 64;
  const h = 48;
  const raw = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw[y * w + x] = (x * 4 + y * 2) & 0xff;
  const png = await sharp(raw, { raw: { width: w, height: h, channels: 1 } })
    .png()
    .toBuffer();
  const { data, info: out } = await sharp(png)
    .resize(32, 24, { kernel: 'linear' })
    .greyscale()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    vips: sharp.versions.vips,
    pngBytes: png.length,
    size: `${out.width}x${out.height}x${out.channels}`,
    sum: data.reduce((a, b) => a + b, 0),
  };
});

await check(result.modules, 'onnxruntime-node', async () => {
  const ort = require('onnxruntime-node');
  const dir = path.join(app, 'models/defect/packages/defect-int8-onnx');
  const manifest = JSON.parse(readFileSync(path.join(dir, 'vigil.json'), 'utf8'));
  const session = await ort.InferenceSession.create(path.join(dir, manifest.file), { intraOpNumThreads: 1 });
  const x = Float32Array.from(frame(0), (p) => p / 255);
  const out = await session.run({
    [manifest.inputs[0].name]: new ort.Tensor('float32', x, manifest.inputs[0].shape),
  });
  const probs = Array.from(out[manifest.outputs[0].name].data);
  await session.release();
  return { version: ort.env.versions?.node ?? null, ...labelled(manifest, probs) };
});

await check(result.modules, 'tfjs-tflite-node', async () => {
  const { TFLiteNodeModelRunner } = require('tfjs-tflite-node');
  const dir = path.join(app, 'models/defect/packages/defect-int8-tflite');
  const manifest = JSON.parse(readFileSync(path.join(dir, 'vigil.json'), 'utf8'));
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
  const input = runner.getInputs()[0].data();
  const f = frame(0);
  for (let j = 0; j < plane; j++) {
    input[j] = Math.max(-128, Math.min(127, Math.round(f[j] / 255 / qi.scale) + qi.zeroPoint));
  }
  runner.infer();
  const probs = Array.from(runner.getOutputs()[0].data(), (q) => (q - qo.zeroPoint) * qo.scale);
  return labelled(manifest, probs);
});

await check(result.modules, '@serialport/bindings-cpp', async () => {
  const dir = path.dirname(require.resolve('@serialport/bindings-cpp/package.json'));
  const nativeFile = createRequire(path.join(dir, 'package.json'))('node-gyp-build').path(dir);
  const { autoDetect } = require('@serialport/bindings-cpp');
  const binding = autoDetect();
  // list() reads /sys and udev; no port is expected under emulation, the call must just work.
  const ports = await binding.list();
  return { native: path.relative(app, nativeFile), ports: ports.length };
});

// Vigil's own path: package verification and engine loading (worker thread), sharp decode and
// resize of the camera's JPEG frames, normalisation, inference, classification.
const { loadEngine } = await importApp('dist/runtime/engines/load.js');
const { decodeAndResize, normalize } = await importApp('dist/runtime/pipeline/preprocess.js');
const { classify } = await importApp('dist/runtime/pipeline/postprocess.js');
const { createLogger } = await importApp('dist/runtime/log.js');
const log = createLogger({ level: 'warn' });
const options = {
  onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
  tflite: { threads: 1, xnnpack: true },
  warmupRuns: 1,
};
const jpegs = readdirSync(path.join(fixtures, 'frames'))
  .filter((f) => f.endsWith('.jpg'))
  .sort()
  .slice(0, JPEG_FRAMES);

for (const name of PACKAGES) {
  await check(result.vigil, name, async () => {
    const engine = await loadEngine(path.join(app, 'models/defect/packages', name), options, log);
    try {
      const { manifest } = engine;
      const pre = manifest.preprocessing;
      const input = manifest.inputs[0];
      const t0 = performance.now();
      // The reference frames as raw pixels: comparable with the Python outputs in expected.json.
      const raw = [];
      for (let i = 0; i < count; i++) {
        const img = {
          pixels: frame(i),
          width,
          height,
          channels: 1,
          sourceWidth: width,
          sourceHeight: height,
        };
        const out = await engine.run({
          [input.name]: { dtype: 'float32', shape: input.shape, data: normalize(img, pre, input.layout) },
        });
        raw.push(Array.from(out[manifest.outputs[0].name].data));
      }
      const inferMs = (performance.now() - t0) / count;
      const frames = [];
      for (const file of jpegs) {
        const img = await decodeAndResize(readFileSync(path.join(fixtures, 'frames', file)), pre);
        const out = await engine.run({
          [input.name]: { dtype: 'float32', shape: input.shape, data: normalize(img, pre, input.layout) },
        });
        const c = classify(out, manifest.postprocessing);
        frames.push({
          file,
          pixelSum: img.pixels.reduce((a, b) => a + b, 0),
          label: c.label,
          scores: c.scores,
        });
      }
      return {
        backend: engine.backend,
        provider: engine.provider,
        loadMs: Math.round(engine.loadMs),
        inferMsMean: Math.round(inferMs * 10) / 10,
        raw,
        frames,
      };
    } finally {
      await engine.close();
    }
  });
}

if (args.reference) result.parity = parity(JSON.parse(readFileSync(args.reference, 'utf8')), result);
result.ok =
  [...Object.values(result.modules), ...Object.values(result.vigil)].every((c) => c.ok) &&
  (result.parity?.ok ?? true);
result.timings.totalMs = Math.round(performance.now() - started);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exitCode = result.ok ? 0 : 1;

function labelled(manifest, probs) {
  const labels = manifest.postprocessing.labels;
  let best = 0;
  probs.forEach((p, i) => (best = p > probs[best] ? i : best));
  return { label: labels[best], scores: Object.fromEntries(labels.map((l, i) => [l, probs[i]])) };
}

/**
 * Largest score difference and label agreement against another run's results (x86-64), per
 * package. int8 kernels differ between CPU families by at most a few quantization steps.
 */
function parity(ref, run) {
  const TOLERANCE = { 'defect-fp32-onnx': 1e-4, 'defect-int8-onnx': 0.02, 'defect-int8-tflite': 0.02 };
  const out = { ok: true };
  for (const name of PACKAGES) {
    const a = ref.vigil?.[name];
    const b = run.vigil?.[name];
    if (!a?.ok || !b?.ok) {
      out[name] = { ok: false, why: 'a run failed' };
      out.ok = false;
      continue;
    }
    let maxAbsDiff = 0;
    a.raw.forEach((probs, i) =>
      probs.forEach((p, k) => (maxAbsDiff = Math.max(maxAbsDiff, Math.abs(p - b.raw[i][k])))),
    );
    const labelsAgree = a.frames.every((f, i) => f.label === b.frames[i]?.label);
    const pixelsAgree = a.frames.every((f, i) => f.pixelSum === b.frames[i]?.pixelSum);
    const ok = maxAbsDiff <= TOLERANCE[name] && labelsAgree;
    out[name] = { ok, maxAbsDiff, tolerance: TOLERANCE[name], labelsAgree, pixelsAgree };
    out.ok &&= ok;
  }
  return out;
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      process.stderr.write(`arm64-smoke: bad arguments near '${argv[i]}'\n`);
      process.exit(2);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}
