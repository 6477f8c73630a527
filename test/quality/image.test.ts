import { createHash } from 'node:crypto';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineConfig, VigilConfig, referenceIssues } from '../../runtime/config/schema.js';
import { loadEngine } from '../../runtime/engines/load.js';
import type { WorkerEngine } from '../../runtime/engines/worker-engine.js';
import { silentLogger } from '../../runtime/log.js';
import { isImageManifest } from '../../runtime/model/manifest.js';
import { Pipeline } from '../../runtime/pipeline/pipeline.js';
import { decodeAndResize } from '../../runtime/pipeline/preprocess.js';
import type { Result } from '../../runtime/pipeline/result.js';
import type { FrameSample } from '../../runtime/pipeline/sample.js';
import { OPTIONS } from '../engines/support.js';
import { ROOT, metricValue } from '../helpers/daemon.js';
import { startQualityRig, type QualityRig } from './support.js';

// Image expectations with the frames themselves (a PNG where JPEG is expected, a frame too
// large, too small, too dark), and what a frame pipeline does with such a frame per policy:
// skip (not scored, dropped as data_quality) or flag (scored, the result says so); hold is
// refused for a frame pipeline. Real pipeline, real defect model, real store and broker.

const CAMERA = 'cam';
const PACKAGE = path.join(ROOT, 'models/defect/packages/defect-fp32-onnx');
let rig: QualityRig;
let engine: WorkerEngine;

beforeAll(async () => {
  rig = await startQualityRig({
    sources: {
      [CAMERA]: {
        type: 'camera-http',
        listen: { port: 0 },
        expectations: {
          image: {
            formats: ['jpeg'],
            maxBytes: 200_000,
            minWidth: 320,
            minHeight: 240,
            maxWidth: 1920,
            brightness: { min: 40, max: 230 },
            staleAfterSeconds: 10,
          },
          alert: { raiseAfter: 2, clearAfterReadings: 3 },
        },
      },
    },
  });
  engine = await loadEngine(PACKAGE, OPTIONS, silentLogger());
});

afterAll(async () => {
  await engine?.close();
  await rig?.close();
});

let n = 0;
async function frame(
  opts: { width?: number; height?: number; grey?: number; format?: 'jpeg' | 'png'; noise?: boolean } = {},
): Promise<FrameSample> {
  const width = opts.width ?? 640;
  const height = opts.height ?? 480;
  const grey = opts.grey ?? 128;
  let img = opts.noise
    ? sharp(Buffer.from(Array.from({ length: width * height * 3 }, (_, i) => (i * 7919) % 256)), {
        raw: { width, height, channels: 3 },
      })
    : sharp({ create: { width, height, channels: 3, background: { r: grey, g: grey, b: grey } } });
  img = opts.format === 'png' ? img.png() : img.jpeg({ quality: 100 });
  const data = await img.toBuffer();
  n++;
  return {
    kind: 'frame',
    id: `frame-${n}`,
    source: CAMERA,
    receivedAt: Date.now(),
    arrivedAt: performance.now(),
    data,
    origin: `f${n}.${opts.format ?? 'jpg'}`,
  };
}

async function violationsOf(sample: FrameSample): Promise<string[]> {
  const m = engine.manifest;
  if (!isImageManifest(m)) throw new Error('not an image model');
  const before = rig.quality.frames.beforeDecode(sample) ?? [];
  const after =
    rig.quality.frames.afterDecode(sample, await decodeAndResize(sample.data, m.preprocessing)) ?? [];
  return [...before, ...after].map((v) => v.message);
}

describe('image rules', () => {
  it('a frame in spec breaks nothing', async () => {
    expect(await violationsOf(await frame())).toEqual([]);
  });

  it('format, size in bytes, frame size and brightness, each named in the message', async () => {
    const png = await frame({ format: 'png' });
    expect(await violationsOf(png)).toEqual([`frame ${png.origin}: format png is not one of jpeg`]);
    const big = await frame({ width: 1280, height: 960, noise: true });
    expect(big.data.length).toBeGreaterThan(200_000);
    expect((await violationsOf(big))[0]).toMatch(/^frame f\d+\.jpg: \d+ bytes is over maxBytes 200000$/);
    const small = await frame({ width: 160, height: 120 });
    expect(await violationsOf(small)).toEqual([
      `frame ${small.origin}: width 160 is under minWidth 320; height 120 is under minHeight 240`,
    ]);
    const dark = await frame({ grey: 5 });
    expect(await violationsOf(dark)).toEqual([`frame ${dark.origin}: mean brightness 5 is under 40`]);
    const bright = await frame({ grey: 250 });
    expect(await violationsOf(bright)).toEqual([`frame ${bright.origin}: mean brightness 250 is over 230`]);
  });

  it('counts a frame once however many pipelines check it, and raises an image alert with the frame as origin', async () => {
    const before = metricValue(await rig.metrics.registry.metrics(), 'vigil_expectation_violations_total', {
      source: CAMERA,
      rule: 'image',
      tag: '',
    });
    const dark = await frame({ grey: 0 });
    await violationsOf(dark);
    await violationsOf(dark);
    const after = metricValue(await rig.metrics.registry.metrics(), 'vigil_expectation_violations_total', {
      source: CAMERA,
      rule: 'image',
      tag: '',
    });
    expect(after - before).toBe(1);
    const raised = rig.alerts.filter((a) => a.label === 'image');
    expect(raised.length).toBeGreaterThanOrEqual(1);
    expect(raised[0]).toMatchObject({
      kind: 'data_quality',
      source: CAMERA,
      pipeline: CAMERA,
      dataQuality: { state: 'raised', rule: 'image' },
    });
    // Raised by the second frame out of spec (raiseAfter 2): the oversized one, frame-3.
    expect(raised[0]).toMatchObject({ sampleId: 'frame-3', origin: 'f3.jpg' });
    expect(raised[0]!.dataQuality.traceId).toBe('frame-3');
    expect(raised[0]!.dataQuality.asset).toBeUndefined();
  });

  it('stale: a camera that sends nothing for staleAfterSeconds raises stale; its next frame clears it', async () => {
    rig.quality.tick(Date.now() + 11_000);
    const stale = rig.alerts.filter((a) => a.label === 'stale');
    expect(stale).toHaveLength(1);
    expect(stale[0]!.dataQuality.message).toMatch(
      /^camera cam has sent no frame for \d+ s \(staleAfterSeconds 10\)$/,
    );
    rig.quality.frameSeen(await frame());
    expect(rig.alerts.filter((a) => a.label === 'stale').map((a) => a.dataQuality.state)).toEqual([
      'raised',
      'cleared',
    ]);
  });

  it('a frame counts once towards clearing image, also the frame that ends a silence', async () => {
    const imageStates = () => rig.alerts.filter((a) => a.label === 'image').map((a) => a.dataQuality.state);
    expect(imageStates().at(-1)).toBe('raised');
    rig.quality.tick(Date.now() + 11_000);
    // Each frame as the daemon hands it on: seen (staleness) by the source, then checked by a pipeline.
    const arrives = async () => {
      const f = await frame();
      rig.quality.frameSeen(f);
      expect(await violationsOf(f)).toEqual([]);
    };
    await arrives(); // ends the silence: stale clears, and it is the first good frame for image
    await arrives();
    expect(imageStates().at(-1)).toBe('raised');
    await arrives(); // the third (clearAfterReadings 3)
    expect(imageStates().at(-1)).toBe('cleared');
  });
});

describe('frame pipeline policies', () => {
  function pipeline(policy: 'skip' | 'flag') {
    const results: Result[] = [];
    const p = new Pipeline({
      name: `frames-${policy}`,
      config: PipelineConfig.parse({
        sources: [CAMERA],
        model: 'defect',
        budgetMs: 10_000,
        dataQuality: { policy },
      }),
      deviceId: 'gw-dq',
      engine: () => engine,
      sink: rig.store,
      publisher: rig.publisher,
      metrics: rig.metrics,
      inputError: () => undefined,
      log: silentLogger(),
      onResult: (r) => results.push(r),
      dataQuality: rig.quality.frames,
    });
    return { p, results };
  }

  it('skip: an out-of-spec frame is not scored, counted as dropped for data_quality', async () => {
    const { p, results } = pipeline('skip');
    const good = await frame();
    p.offer(good);
    await p.idle();
    p.offer(await frame({ format: 'png' }));
    await p.idle();
    p.offer(await frame({ grey: 3 }));
    await p.idle();
    expect(results.map((r) => r.sampleId)).toEqual([good.id]);
    expect(p.snapshot().dropped).toEqual({ data_quality: 2 });
    expect(
      metricValue(await rig.metrics.registry.metrics(), 'vigil_samples_dropped_total', {
        pipeline: 'frames-skip',
        reason: 'data_quality',
      }),
    ).toBe(2);
    await p.stop();
  });

  it('gives every result the sha256 of its frame, a large frame hashed in slices, once for all pipelines', async () => {
    const a = pipeline('flag');
    const b = pipeline('flag');
    // Noise hardly compresses: a frame over 1 MiB (hashed in more than one slice), over maxBytes,
    // so flagged and still scored.
    const big = await frame({ width: 1920, height: 1080, noise: true });
    expect(big.data.length).toBeGreaterThan(1024 * 1024);
    const small = await frame();
    expect(small.data.length).toBeLessThan(256 * 1024);
    for (const f of [big, small]) {
      a.p.offer(f);
      b.p.offer(f);
    }
    await a.p.idle();
    await b.p.idle();
    const sha = (d: Buffer) => createHash('sha256').update(d).digest('hex');
    for (const { results } of [a, b]) {
      // Lanes run frames side by side: the small one may be stored first.
      expect(Object.fromEntries(results.map((r) => [r.sampleId, r.payloadSha256]))).toEqual({
        [big.id]: sha(big.data),
        [small.id]: sha(small.data),
      });
    }
    expect(rig.store.getResultBySampleId(big.id)?.payloadSha256).toBe(sha(big.data));
    await a.p.stop();
    await b.p.stop();
  });

  it('flag: an out-of-spec frame is scored, and its result says why', async () => {
    const { p, results } = pipeline('flag');
    const dark = await frame({ grey: 3 });
    p.offer(dark);
    await p.idle();
    p.offer(await frame());
    await p.idle();
    expect(results).toHaveLength(2);
    expect(results[0]!.dataQuality).toEqual({
      flagged: true,
      violations: [
        { source: CAMERA, rule: 'image', message: `frame ${dark.origin}: mean brightness 3 is under 40` },
      ],
    });
    expect(results[1]!.dataQuality).toBeUndefined();
    expect(rig.store.getResultBySampleId(dark.id)?.dataQuality).toEqual(results[0]!.dataQuality);
    await p.stop();
  });

  it('hold is refused for a frame pipeline, with a message that says what to use', () => {
    const raw = {
      device: { id: 'gw' },
      models: { defect: { package: 'models/defect' } },
      sources: { [CAMERA]: { type: 'camera-http' } },
      pipelines: { line: { sources: [CAMERA], model: 'defect', dataQuality: { policy: 'hold' } } },
    };
    expect(VigilConfig.safeParse(raw).success).toBe(true);
    expect(referenceIssues(raw)).toEqual([
      {
        path: 'pipelines.line.dataQuality.policy',
        message:
          'hold keeps the last good value of a telemetry tag; a frame pipeline has no value to hold. Use skip (the frame is not scored) or flag (scored, and the result says so)',
      },
    ]);
  });
});
