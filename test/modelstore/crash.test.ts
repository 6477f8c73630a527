import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../runtime/log.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { ModelState } from '../../runtime/modelstore/state.js';
import { ModelStore } from '../../runtime/modelstore/store.js';
import { SHIPPED_PACKAGE } from '../helpers/model-packages.js';
import { bundleChild } from '../helpers/bundle-child.js';

const MODEL = 'defect';
/** Large enough that copying, syncing or deleting a version takes a few milliseconds. */
const PAYLOAD_BYTES = 2 * 1024 * 1024;
/**
 * Where a round aims its kill: during the start, or as the loop (`phase ...`) or the store
 * (its debug lines) enters a step. Each is aimed at three times.
 */
const TARGETS = [
  'start',
  'phase stage ',
  '"msg":"install: verifying"',
  '"msg":"install: syncing"',
  '"msg":"install: moving into versions/"',
  'phase activate ',
  'phase rollback ',
  '"msg":"prune: moving to .trash/"',
  '"msg":"prune: deleting .trash/"',
  '"msg":"state: writing"',
];
const ROUNDS = TARGETS.length * 3;

/** A small deterministic generator, so that a failing run can be replayed. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0;
    return x / 2 ** 32;
  };
}

/**
 * Starts the install loop and SIGKILLs it: `delayMs` after it started (target 'start'), or
 * `delayMs` after a line containing `target` appeared for the (skip + 1)th time. Returns the `done
 * <version> <active>` lines it completed; a line cut by the kill is not counted.
 */
async function runThenKill(
  script: string,
  root: string,
  target: string,
  skip: number,
  delayMs: number,
): Promise<[number, number][]> {
  const child = spawn(process.execPath, [script, root, SHIPPED_PACKAGE, String(PAYLOAD_BYTES)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  const kill = (): void => void child.kill('SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  let armed = false;
  if (target === 'start') timer = setTimeout(kill, delayMs);
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (armed || target === 'start') return;
    const entered = out.split('\n').filter((l) => l.includes(target)).length;
    if (entered > skip) {
      armed = true;
      if (delayMs === 0) kill();
      else timer = setTimeout(kill, delayMs);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  // A target the loop never reaches must fail the test, not leave the child running.
  const cap = setTimeout(kill, 15_000);
  const signal = await exited;
  clearTimeout(timer);
  clearTimeout(cap);
  expect(signal, `install loop stopped by itself: ${err}`).toBe('SIGKILL');
  expect(armed || target === 'start', `the install loop never reached ${target}`).toBe(true);
  return out
    .slice(0, out.lastIndexOf('\n'))
    .split('\n')
    .filter((l) => l.startsWith('done '))
    .map((l) => l.split(' ').slice(1).map(Number) as [number, number]);
}

describe('model store under SIGKILL', () => {
  let root: string;
  let bundle: { file: string; dir: string };

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'vigil-modelstore-crash-'));
    bundle = await bundleChild('test/modelstore/install-loop.ts');
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
    if (bundle) rmSync(bundle.dir, { recursive: true, force: true });
  });

  it('reopens after every kill with only whole, verified versions, a sound state and an installed active one', async () => {
    const random = lcg(20_251_126);
    let completed = 0;
    let lastActive = 0;
    const rolledBack = new Set<number>();

    for (let round = 0; round < ROUNDS; round++) {
      const target = TARGETS[round % TARGETS.length]!;
      const skip = Math.floor(random() * 3);
      const delayMs =
        target === 'start' ? Math.floor(random() * 150) : random() < 0.5 ? 0 : Math.floor(random() * 4);
      const lines = await runThenKill(bundle.file, root, target, skip, delayMs);
      completed += lines.length;
      for (const [v, active] of lines) {
        if (active !== v) rolledBack.add(v);
        lastActive = active;
      }

      const store = await ModelStore.open(root, silentLogger());
      const where = `round ${round} (killed ${delayMs} ms into ${target} #${skip + 1})`;
      const m = path.join(root, MODEL);
      if (!existsSync(m)) {
        expect(completed, where).toBe(0);
        continue;
      }
      // state.json parsed: nothing was moved aside, and it reads on its own.
      const entries = await readdir(m);
      expect(
        entries.filter((e) => e !== 'versions' && e !== 'staging' && e !== 'state.json'),
        where,
      ).toEqual([]);
      if (entries.includes('state.json')) {
        ModelState.parse(JSON.parse(await readFile(path.join(m, 'state.json'), 'utf8')));
      }
      // Every listed version is whole and is the version its folder says.
      const installed = store.installed(MODEL);
      const onDisk = existsSync(path.join(m, 'versions')) ? await readdir(path.join(m, 'versions')) : [];
      expect(onDisk.sort(), where).toEqual([...installed].sort());
      for (const v of installed) {
        const pkg = await loadModelPackage(store.packageDir(MODEL, v));
        expect(pkg.manifest.version, `${where}: version ${v}`).toBe(v);
      }
      const active = store.active(MODEL);
      if (completed > 0) {
        expect(active, where).toBeDefined();
        // Activation only moves forward between completed iterations (a rollback goes back
        // to a version below the one refused, never below the one before).
        expect(Number(active), where).toBeGreaterThanOrEqual(lastActive);
      }
      if (active !== undefined) expect(installed, where).toContain(active);
      const back = store.previous(MODEL);
      if (back !== undefined) expect(installed, where).toContain(back);
      for (const v of rolledBack) expect(store.isRejected(MODEL, String(v)), `${where}: ${v}`).toBe(true);
    }
    // Rounds aimed past a first install let versions complete.
    expect(completed).toBeGreaterThan(0);
  });
});
