import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The ARM64 smoke (issue 7): test/install/arm64-smoke.sh builds the ARM64 node_modules the way
 * the offline bundle does (npm ci --cpu=arm64, deploy/bundle/natives-arm64.sh cross-compiling
 * better-sqlite3 and tfjs-tflite-node), then runs test/install/arm64-smoke.mjs with the ARM64
 * node under qemu-aarch64-static on two emulated CPUs (Cortex-A72 without and Cortex-A76 with
 * the int8 dot-product instructions) and once with this machine's node on the x86-64 tree.
 *
 * Tolerances on the defect probabilities, against x86-64 and against the Python reference
 * outputs in test/fixtures/defect-parity. Measured: int8 ONNX identical, fp32 ONNX within 3e-7,
 * int8 TFLite within 3 steps of its 1/256 output scale (0.0117: TFLite's ARM kernels requantize
 * some values differently); the limits leave room for one or two steps more, and labels must be
 * the same on every frame.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CPUS = ['cortex-a72', 'cortex-a76'];
const PACKAGES = ['defect-int8-onnx', 'defect-fp32-onnx', 'defect-int8-tflite'] as const;
const TOLERANCE: Record<(typeof PACKAGES)[number], number> = {
  'defect-int8-onnx': 0.02,
  'defect-fp32-onnx': 1e-4,
  'defect-int8-tflite': 0.02,
};
const MODULES = [
  'better-sqlite3',
  'sharp',
  'onnxruntime-node',
  'tfjs-tflite-node',
  '@serialport/bindings-cpp',
];
const ARTIFACT = path.join(ROOT, 'test-artifacts/arm64-smoke.json');

interface Check {
  ok: boolean;
  error?: string;
  ms: number;
  [key: string]: unknown;
}
interface EngineCheck extends Check {
  backend: string;
  provider: string;
  raw: number[][];
  frames: Array<{ file: string; pixelSum: number; label: string; scores: Record<string, number> }>;
}
interface Run {
  ok: boolean;
  arch: string;
  node: string;
  modules: Record<string, Check>;
  vigil: Record<string, EngineCheck>;
  parity?: Record<string, unknown> & { ok: boolean };
  error?: string;
}
interface Smoke {
  ok: boolean;
  x64: Run;
  arm64: Record<string, Run>;
  timings: Record<string, unknown>;
}

let child: ChildProcess | undefined;
let smoke: Smoke;

function argmax(values: number[]): number {
  return values.indexOf(Math.max(...values));
}

function maxAbsDiff(a: number[][], b: number[][]): number {
  let max = 0;
  a.forEach((row, i) => row.forEach((v, k) => (max = Math.max(max, Math.abs(v - b[i]![k]!)))));
  return max;
}

describe('ARM64 smoke under qemu user-mode emulation', () => {
  beforeAll(async () => {
    // A cold run fetches the ARM64 node, unpacks a Debian root and cross-compiles two modules
    // (about 4 minutes on two cores); a warm one only runs the checks.
    const { code, stdout, stderr } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
    }>((resolve, reject) => {
      child = spawn('bash', [path.join(ROOT, 'test/install/arm64-smoke.sh'), '--cpus', CPUS.join(',')], {
        cwd: ROOT,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    });
    child = undefined;
    const line = stdout.trim().split('\n').at(-1) ?? '';
    if (!line.startsWith('{')) {
      throw new Error(`test/install/arm64-smoke.sh exited ${code} without a result:\n${stderr.slice(-4000)}`);
    }
    smoke = JSON.parse(line) as Smoke;
    mkdirSync(path.dirname(ARTIFACT), { recursive: true });
    writeFileSync(ARTIFACT, `${JSON.stringify(smoke, null, 2)}\n`);
  }, 20 * 60_000);

  afterAll(() => {
    // The script and its qemu children share a process group; end it if the hook timed out.
    if (child?.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGTERM');
  });

  it('ran the ARM64 node on every emulated CPU and this machine’s node for reference', () => {
    expect(smoke.x64.arch).toBe(process.arch);
    expect(smoke.x64.ok, JSON.stringify(smoke.x64)).toBe(true);
    expect(Object.keys(smoke.arm64)).toEqual(CPUS);
    for (const run of Object.values(smoke.arm64)) {
      expect(run.error).toBeUndefined();
      expect(run.arch).toBe('arm64');
      expect(run.node).toBe(smoke.x64.node);
    }
  });

  it('loads better-sqlite3, sharp, onnxruntime-node, tfjs-tflite-node and the serial binding on ARM64', () => {
    for (const [cpu, run] of Object.entries(smoke.arm64)) {
      for (const name of MODULES) {
        const m = run.modules[name];
        expect(m?.ok, `${cpu} ${name}: ${m?.error}`).toBe(true);
      }
      const ref = smoke.x64.modules;
      expect(run.modules['better-sqlite3']).toMatchObject({
        rows: 3,
        total: 6.75,
        sqlite: ref['better-sqlite3']!.sqlite,
      });
      // The same PNG encode, decode and resize by libvips: the same pixels.
      expect(run.modules.sharp).toMatchObject({
        size: '32x24x1',
        sum: ref.sharp!.sum,
        vips: ref.sharp!.vips,
      });
      expect(run.modules['@serialport/bindings-cpp']!.native).toMatch(
        /prebuilds\/linux-arm64\/.*glibc\.node$/,
      );
      for (const name of ['onnxruntime-node', 'tfjs-tflite-node']) {
        const a = run.modules[name] as Check & { label: string; scores: Record<string, number> };
        const b = ref[name] as Check & { label: string; scores: Record<string, number> };
        expect(a.label, `${cpu} ${name}`).toBe(b.label);
        for (const [label, p] of Object.entries(b.scores))
          expect(Math.abs(a.scores[label]! - p)).toBeLessThanOrEqual(0.02);
      }
    }
  });

  it('runs the defect packages through Vigil’s engines and gives the x86-64 answers', () => {
    for (const [cpu, run] of Object.entries(smoke.arm64)) {
      expect(run.parity?.ok, `${cpu}: ${JSON.stringify(run.parity)}`).toBe(true);
      for (const name of PACKAGES) {
        const a = run.vigil[name]!;
        const b = smoke.x64.vigil[name]!;
        expect(a.ok, `${cpu} ${name}: ${a.error}`).toBe(true);
        expect(a.backend).toBe(b.backend);
        expect(a.raw).toHaveLength(b.raw.length);
        expect(maxAbsDiff(a.raw, b.raw), `${cpu} ${name}`).toBeLessThanOrEqual(TOLERANCE[name]);
        expect(a.raw.map(argmax), `${cpu} ${name}`).toEqual(b.raw.map(argmax));
        // The camera's JPEG frames: decoded by sharp to the same pixels, classified alike.
        expect(a.frames.map((f) => [f.file, f.pixelSum, f.label])).toEqual(
          b.frames.map((f) => [f.file, f.pixelSum, f.label]),
        );
      }
    }
  });

  it('agrees with the Python reference outputs of the parity fixtures', () => {
    const fixtures = path.join(ROOT, 'test/fixtures/defect-parity');
    const expected = JSON.parse(readFileSync(path.join(fixtures, 'expected.json'), 'utf8')) as Record<
      string,
      Record<string, number[]>
    >;
    const order = (
      JSON.parse(readFileSync(path.join(fixtures, 'frames.json'), 'utf8')) as { inputs: { order: string[] } }
    ).inputs.order;
    for (const [cpu, run] of Object.entries(smoke.arm64)) {
      for (const name of PACKAGES) {
        const want = order.map((frame) => expected[name]![frame]!);
        const got = run.vigil[name]!.raw;
        expect(maxAbsDiff(got, want), `${cpu} ${name}`).toBeLessThanOrEqual(TOLERANCE[name]);
        expect(got.map(argmax), `${cpu} ${name}`).toEqual(want.map(argmax));
      }
    }
  });
});
