import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The check deploy/bundle/natives-arm64.sh makes before an ARM64 bundle ships (--verify-only):
 * on trees of real, tiny aarch64 and x86-64 shared objects laid out as the runtime's native
 * packages lay theirs out. The full build and load under emulation is arm64-smoke.test.ts.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(ROOT, 'deploy/bundle/natives-arm64.sh');
const run = promisify(execFile);

// Where the runtime loads its native code from on linux-arm64 (one file per place).
const LOADED = [
  'better-sqlite3/build/Release/better_sqlite3.node',
  'tfjs-tflite-node/build/Release/node_tflite_binding.node',
  'tfjs-tflite-node/cc_deps/linux_arm64/libtensorflowlite_c.so',
  'onnxruntime-node/bin/napi-v6/linux/arm64/onnxruntime_binding.node',
  'onnxruntime-node/bin/napi-v6/linux/arm64/libonnxruntime.so.1',
  '@img/sharp-linux-arm64/lib/sharp-linux-arm64-0.35.5.node',
  '@img/sharp-libvips-linux-arm64/lib/libvips-cpp.so.8.18.7',
  '@serialport/bindings-cpp/prebuilds/linux-arm64/@serialport+bindings-cpp.armv8.glibc.node',
];
// Other platforms' files the packages carry, which no loader opens on linux-arm64.
const OTHER_PLATFORMS = [
  'onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
  'onnxruntime-node/bin/napi-v6/win32/x64/onnxruntime_binding.node',
  'tfjs-tflite-node/cc_deps/linux_amd64/libtensorflowlite_c.so',
  '@serialport/bindings-cpp/prebuilds/linux-x64/@serialport+bindings-cpp.glibc.node',
];

let dir: string;
let aarch64So: string;
let x64So: string;
let trees = 0;

function tree(files: Record<string, string>): string {
  const staging = path.join(dir, `tree-${++trees}`);
  mkdirSync(path.join(staging, 'node_modules'), { recursive: true });
  writeFileSync(path.join(staging, 'package-lock.json'), '{}\n');
  for (const [rel, from] of Object.entries(files)) {
    const file = path.join(staging, 'node_modules', rel);
    mkdirSync(path.dirname(file), { recursive: true });
    copyFileSync(from, file);
  }
  return staging;
}

function goodTree(overrides: Record<string, string | undefined> = {}): string {
  const files: Record<string, string> = {};
  for (const rel of LOADED) files[rel] = aarch64So;
  for (const rel of OTHER_PLATFORMS) files[rel] = x64So;
  for (const [rel, from] of Object.entries(overrides)) {
    if (from === undefined) delete files[rel];
    else files[rel] = from;
  }
  return tree(files);
}

async function verify(staging: string, ...flags: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await run('bash', [SCRIPT, '--verify-only', ...flags, staging]);
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? String(err) };
  }
}

describe('natives-arm64.sh --verify-only', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'vigil-natives-verify-'));
    writeFileSync(path.join(dir, 'lib.c'), '#include <unistd.h>\nint vigil_pid(void) { return getpid(); }\n');
    aarch64So = path.join(dir, 'aarch64.so');
    x64So = path.join(dir, 'x64.so');
    // Real shared objects from both compilers; the ARM64 smoke needs the cross compiler anyway.
    await run('aarch64-linux-gnu-gcc', ['-shared', '-fPIC', '-o', aarch64So, path.join(dir, 'lib.c')]).catch(
      (err: Error) => {
        throw new Error(
          `aarch64-linux-gnu-gcc failed (apt-get install g++-aarch64-linux-gnu): ${err.message}`,
        );
      },
    );
    await run('gcc', ['-shared', '-fPIC', '-o', x64So, path.join(dir, 'lib.c')]);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes a tree whose loaded files are aarch64, other platforms’ files where no loader looks', async () => {
    const { code, stderr } = await verify(goodTree());
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('ok: 12 native files checked');
    expect(stderr).toMatch(/needs on the gateway: glibc >= 2\.\d+/);
  });

  it('names an x86-64 file in a place the runtime loads on ARM64', async () => {
    const rel = 'onnxruntime-node/bin/napi-v6/linux/arm64/onnxruntime_binding.node';
    const { code, stderr } = await verify(goodTree({ [rel]: x64So }));
    expect(code).toBe(1);
    expect(stderr).toContain(`NOT AARCH64 node_modules/${rel}`);
    expect(stderr).toContain('is not usable');
  });

  it('names an x86-64 module left in a build folder, which loaders try first', async () => {
    const rel = '@serialport/bindings-cpp/build/Release/bindings.node';
    const { code, stderr } = await verify(goodTree({ [rel]: x64So }));
    expect(code).toBe(1);
    expect(stderr).toContain(`NOT AARCH64 node_modules/${rel} (ELF machine 62)`);
  });

  it('names a loaded file that is missing', async () => {
    const { code, stderr } = await verify(
      goodTree({ '@img/sharp-linux-arm64/lib/sharp-linux-arm64-0.35.5.node': undefined }),
    );
    expect(code).toBe(1);
    expect(stderr).toContain('MISSING node_modules/@img/sharp-linux-arm64/lib/sharp-linux-arm64-*.node');
  });

  it('--prune removes the other platforms’ binaries and keeps the ARM64 ones', async () => {
    const staging = goodTree();
    const { code, stderr } = await verify(staging, '--prune');
    expect(code, stderr).toBe(0);
    for (const rel of OTHER_PLATFORMS)
      expect(existsSync(path.join(staging, 'node_modules', rel)), rel).toBe(false);
    for (const rel of LOADED) expect(existsSync(path.join(staging, 'node_modules', rel)), rel).toBe(true);
    expect(stderr).toContain('ok: 8 native files checked');
  });
});
