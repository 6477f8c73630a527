import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { bundleChild } from '../helpers/bundle-child.js';

const ROUNDS = 10;

/**
 * Starts the writer, lets it commit for a while (a different while each round), SIGKILLs it and
 * returns the batches it reported committed. A line not ended by a newline was cut by the kill
 * and is not counted.
 */
async function writeThenKill(
  script: string,
  file: string,
  synchronous: string,
  first: number,
  runMs: number,
): Promise<Map<number, number>> {
  const child: ChildProcess = spawn(process.execPath, [script, file, synchronous, String(first)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    const started = setInterval(() => {
      if (out.includes('open\n')) {
        clearInterval(started);
        setTimeout(resolve, runMs);
      } else if (child.exitCode !== null) {
        clearInterval(started);
        reject(new Error(`writer exited early: ${err}`));
      }
    }, 5);
  });
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  const committed = new Map<number, number>();
  for (const line of out.slice(0, out.lastIndexOf('\n')).split('\n')) {
    const m = /^(\d+) (\d+)$/.exec(line);
    if (m) committed.set(Number(m[1]), Number(m[2]));
  }
  return committed;
}

describe('store under SIGKILL', () => {
  let dir: string;
  let bundle: { file: string; dir: string };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-crash-'));
    bundle = await bundleChild('test/store/crash-writer.ts');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    if (bundle) rmSync(bundle.dir, { recursive: true, force: true });
  });

  it('reopens after every kill with every committed batch whole, and nothing half-written', async () => {
    const file = path.join(dir, 'vigil.db');
    const committed = new Map<number, number>();
    let next = 1;
    let storeId: string | undefined;
    for (let round = 0; round < ROUNDS; round++) {
      const synchronous = round % 2 === 0 ? 'full' : 'normal';
      const runMs = 20 + ((round * 37) % 150);
      const got = await writeThenKill(bundle.file, file, synchronous, next, runMs);
      expect(got.size, `round ${round} committed nothing`).toBeGreaterThan(0);
      for (const [b, n] of got) committed.set(b, n);
      // A batch may have committed after its line was cut: start well past it.
      next = Math.max(...got.keys()) + 1_000;

      const store = Store.open(
        file,
        StoreConfig.parse({ path: file, integrityCheck: 'quick' }),
        silentLogger(),
      );
      try {
        expect(store.recovery).toBeUndefined();
        storeId ??= store.storeId;
        expect(store.storeId).toBe(storeId);
        for (const b of got.keys()) {
          if (b % 7 === 0) expect(store.getResultBySampleId(`sample-${b}`)?.id).toBe(`result-${b}`);
        }
      } finally {
        store.close();
      }
      const raw = new Database(file, { readonly: true });
      try {
        const perBatch = new Map(
          (
            raw.prepare('SELECT tag, count(*) AS n FROM readings GROUP BY tag').all() as {
              tag: string;
              n: number;
            }[]
          ).map((r) => [Number(r.tag.slice(1)), r.n]),
        );
        // Every batch reported committed is there, whole.
        for (const [b, n] of committed) expect(perBatch.get(b), `batch ${b}`).toBe(n);
        // Every batch there is whole (reported or not): a transaction is all or nothing.
        for (const [b, n] of perBatch) expect(n, `batch ${b}`).toBe(1 + (b % 50));
        // Seqs stay in arrival order: batch numbers only grow with the readings' ids.
        const order = raw.prepare('SELECT tag FROM readings ORDER BY id').pluck().all() as string[];
        const batches = order.map((t) => Number(t.slice(1)));
        expect(batches.every((b, i) => i === 0 || b >= batches[i - 1]!)).toBe(true);
      } finally {
        raw.close();
      }
    }
  });
});
