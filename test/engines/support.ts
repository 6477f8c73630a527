import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { EngineOptions } from '../../runtime/engines/engine.js';

/** Shared helpers of the engine tests: package copies in a temp folder, and a logger whose lines can be read. */

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TINY_FP32 = path.join(ROOT, 'test/fixtures/tiny/fp32');
export const TINY_INT8 = path.join(ROOT, 'test/fixtures/tiny/int8');

export const OPTIONS: EngineOptions = {
  onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
  tflite: { threads: 1, xnnpack: true },
  warmupRuns: 1,
};

const temps: string[] = [];

/** A writable copy of a package folder; removed by cleanupCopies(). */
export async function copyPackage(src: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-pkg-'));
  temps.push(dir);
  const dest = path.join(dir, path.basename(src));
  await cp(src, dest, { recursive: true });
  return dest;
}

export async function cleanupCopies(): Promise<void> {
  await Promise.all(temps.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** vigil.json as the tests edit it: any shape, so that they can also write invalid manifests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
export type ManifestJson = any;

/** Rewrites vigil.json through `edit`, re-hashing the listed files so that only the edit differs. */
export async function editManifest(
  dir: string,
  edit: (m: ManifestJson) => void,
  rehash = true,
): Promise<void> {
  const file = path.join(dir, 'vigil.json');
  const m = JSON.parse(await readFile(file, 'utf8')) as ManifestJson;
  edit(m);
  if (rehash) {
    for (const name of Object.keys(m.files as Record<string, string>)) {
      try {
        m.files[name] = createHash('sha256')
          .update(await readFile(path.join(dir, name)))
          .digest('hex');
      } catch {
        // entries that point nowhere stay as they are (the test wants them)
      }
    }
  }
  await writeFile(file, JSON.stringify(m, null, 2));
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface CapturedLog {
  log: Logger;
  lines: LogLine[];
}

export function captureLog(): CapturedLog {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n'))
        if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** What the tiny models compute for an input of constant value v (see make_tiny.py). */
export function expectedProbs(v: number): [number, number] {
  const l0 = v * (1 + 0.5 - 2) + 0.1;
  const l1 = v * (-1 - 0.5 + 2) - 0.1;
  const e0 = Math.exp(l0);
  const e1 = Math.exp(l1);
  return [e0 / (e0 + e1), e1 / (e0 + e1)];
}

/**
 * Event-loop turns (setImmediate ticks) counted between the first and the last of a batch of
 * inferences that were all started at once. If inference ran on the main thread, the runs queued
 * together would execute back to back and nothing else could run between their results.
 */
export async function ticksBetweenResults(
  runs: Array<() => Promise<unknown>>,
): Promise<{ total: number; between: number }> {
  let ticks = 0;
  let running = true;
  const spin = (): void => {
    ticks++;
    if (running) setImmediate(spin);
  };
  setImmediate(spin);
  let first = -1;
  let last = -1;
  await Promise.all(
    runs.map((run) =>
      run().then(() => {
        if (first < 0) first = ticks;
        last = ticks;
      }),
    ),
  );
  running = false;
  return { total: ticks, between: last - first };
}
