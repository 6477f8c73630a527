import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pino } from 'pino';
import type { EngineOptions } from '../engines/engine.js';
import { errorMessage } from '../errors.js';
import type { NativeModule, ProbeAnswer, ProbeRequest } from './probe-client.js';

/**
 * The child process of `vigil doctor`: loads one native module, or one model on one engine, and
 * prints one JSON line with what it found. It runs apart from doctor because a broken native
 * module (a wrong glibc, a missing libvips, a delegate that is not one) may kill its process
 * with a signal instead of throwing; doctor then reports the crash instead of dying with it.
 */

const require = createRequire(import.meta.url);

/** The version in a package's package.json, found next to its entry point. */
function packageVersion(name: string): string | undefined {
  let dir = path.dirname(require.resolve(name));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === name) return pkg.version;
    } catch {
      // not here: one folder up
    }
    dir = path.dirname(dir);
  }
  return undefined;
}

async function probeNative(
  module: NativeModule,
  tfliteModel: string | undefined,
): Promise<Record<string, unknown>> {
  const version = packageVersion(module);
  switch (module) {
    case 'better-sqlite3': {
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(':memory:');
      try {
        db.exec('CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (41)');
        const row = db.prepare('SELECT x + 1 AS y, sqlite_version() AS v FROM t').get() as {
          y: number;
          v: string;
        };
        if (row.y !== 42) throw new Error(`a query gave ${row.y} instead of 42`);
        return { version, sqlite: row.v };
      } finally {
        db.close();
      }
    }
    case 'sharp': {
      const sharp = (await import('sharp')).default;
      // Decoding a real JPEG exercises libvips and its codecs, not only the binding.
      const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
        .jpeg()
        .toBuffer();
      const { info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
      if (info.width !== 8) throw new Error(`an 8x8 JPEG decoded as ${info.width}x${info.height}`);
      return { version, libvips: sharp.versions.vips };
    }
    case 'onnxruntime-node': {
      const ort = (await import('onnxruntime-node')).default;
      return { version, backends: ort.listSupportedBackends() };
    }
    case 'tfjs-tflite-node': {
      const { TFLiteNodeModelRunner } = require('tfjs-tflite-node') as {
        TFLiteNodeModelRunner: new (m: ArrayBuffer, o: { threads: number }) => { infer(): boolean };
      };
      if (!tfliteModel) return { version, inference: false };
      const file = readFileSync(tfliteModel);
      const runner = new TFLiteNodeModelRunner(
        file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer,
        { threads: 1 },
      );
      if (!runner.infer()) throw new Error(`inference on ${tfliteModel} returned false`);
      return { version, inference: true, model: tfliteModel };
    }
    case '@serialport/bindings-cpp': {
      const { autoDetect } = require('@serialport/bindings-cpp') as typeof import('@serialport/bindings-cpp');
      // The binding is loaded by now. Listing asks udevadm on Linux, which containers often
      // lack; the daemon opens ports by path and never lists them, so that is no failure.
      try {
        const ports = await autoDetect().list();
        return { version, ports: ports.map((p) => ({ path: p.path, manufacturer: p.manufacturer })) };
      } catch (err) {
        return { version, ports: [], listError: errorMessage(err) };
      }
    }
  }
}

async function probeEngine(dir: string, options: EngineOptions): Promise<Record<string, unknown>> {
  const { loadEngine } = await import('../engines/load.js');
  const warnings: string[] = [];
  // The engines say what they could not do (a fallback, an ignored setting) as warn lines.
  const log = pino(
    { level: 'warn' },
    {
      write: (line: string) => {
        const msg = (JSON.parse(line) as { msg?: string }).msg;
        if (msg) warnings.push(msg);
      },
    },
  );
  const engine = await loadEngine(dir, options, log);
  try {
    return {
      backend: engine.backend,
      provider: engine.provider,
      loadMs: Math.round(engine.loadMs),
      warmupMs: Math.round(engine.warmupMs),
      warnings,
    };
  } finally {
    await engine.close();
  }
}

async function main(): Promise<void> {
  let answer: ProbeAnswer;
  try {
    const req = JSON.parse(process.argv[2] ?? '') as ProbeRequest;
    const data =
      req.kind === 'native'
        ? await probeNative(req.module, req.tfliteModel)
        : await probeEngine(req.dir, req.options);
    answer = { ok: true, data };
  } catch (err) {
    answer = { ok: false, code: (err as { code?: string }).code, message: errorMessage(err) };
  }
  process.stdout.write(`\n${JSON.stringify(answer)}\n`, () => process.exit(0));
}

void main();
