import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cleanup, delay } from './helpers.js';

const PTY_PAIR_TS = fileURLToPath(new URL('../../../simulator/serial/pty-pair.ts', import.meta.url));

/** Creates a pair, prints socat's pid and the host link, then dies without stop(). */
const DRIVER = `
import { PtyPair } from './pty-pair.mjs';
const pair = await PtyPair.create();
process.stdout.write(JSON.stringify({ pid: pair.socat.pid, hostPath: pair.hostPath }) + '\\n');
setTimeout(() => {
  if (process.argv[2] === 'exit') process.exit(3);
  throw new Error('crash without stop()');
}, 20);
`;

/** Running, as opposed to gone or a zombie nobody reaped yet (a container's pid 1 may not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

let dir: string;
const leftovers: Array<{ pid: number; hostPath: string }> = [];

beforeAll(async () => {
  // The child runs the real pty-pair.ts, without a build: it only needs node: modules.
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-pty-test-'));
  const js = ts.transpileModule(await readFile(PTY_PAIR_TS, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  await writeFile(path.join(dir, 'pty-pair.mjs'), js);
  await writeFile(path.join(dir, 'driver.mjs'), DRIVER);
});

afterEach(async () => {
  // The dead child never removed its pair's folder; and when a test failed, its socat lives on.
  for (const { pid, hostPath } of leftovers.splice(0)) {
    if (running(pid)) process.kill(pid, 'SIGKILL');
    await rm(path.dirname(hostPath), { recursive: true, force: true });
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function dieWithoutStop(
  how: 'exit' | 'throw',
): Promise<{ pid: number; hostPath: string; code: number | null }> {
  const child = spawn(process.execPath, [path.join(dir, 'driver.mjs'), how], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.resume();
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const started = JSON.parse(out.trim()) as { pid: number; hostPath: string };
  leftovers.push(started);
  return { ...started, code };
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 50 && running(pid); i++) await delay(50);
  return !running(pid);
}

describe('PtyPair when its process dies without stop()', () => {
  for (const how of ['exit', 'throw'] as const) {
    it(`takes socat with it (${how === 'exit' ? 'process.exit()' : 'an uncaught error'})`, async () => {
      const { pid, hostPath, code } = await dieWithoutStop(how);
      expect(code).toBe(how === 'exit' ? 3 : 1);
      expect(await gone(pid)).toBe(true);
      // SIGTERM, not SIGKILL: socat removed its links on the way out.
      expect(existsSync(hostPath)).toBe(false);
    });
  }

  it('hooks process exit once, however many pairs there are', async () => {
    const cleanup = new Cleanup();
    try {
      const a = await cleanup.pair();
      const hooks = process.listenerCount('exit');
      await a.unplug();
      await a.replug();
      await cleanup.pair();
      expect(process.listenerCount('exit')).toBe(hooks);
      expect(a.plugged).toBe(true);
    } finally {
      await cleanup.run();
    }
  });
});
