import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { EngineOptions } from '../engines/engine.js';

/**
 * Doctor's side of probe.ts: runs one probe in a fresh Node process and turns whatever happens
 * to it (an answer, an exception, a crash by signal, a hang) into one outcome.
 */

export type NativeModule =
  'better-sqlite3' | 'sharp' | 'onnxruntime-node' | 'tfjs-tflite-node' | '@serialport/bindings-cpp';

export const NATIVE_MODULES: readonly NativeModule[] = [
  'better-sqlite3',
  'sharp',
  'onnxruntime-node',
  'tfjs-tflite-node',
  '@serialport/bindings-cpp',
];

export type ProbeRequest =
  | { kind: 'native'; module: NativeModule; tfliteModel?: string | undefined }
  | { kind: 'engine'; dir: string; options: EngineOptions };

export type ProbeAnswer =
  { ok: true; data: Record<string, unknown> } | { ok: false; code?: string | undefined; message: string };

export type ProbeOutcome = ProbeAnswer & {
  /** Set when the probe process died by a signal (a crash in native code) or was killed on time-out. */
  crashed?: string | undefined;
  /** The last lines the probe wrote to stderr (native libraries print there, e.g. Dawn's Vulkan loader). */
  stderr: string;
  ms: number;
};

/** probe.js beside this module; from the TypeScript sources (vitest) the compiled one in dist/. */
export function probeScript(base: string = import.meta.url): string {
  if (base.endsWith('.ts')) {
    const at = base.lastIndexOf('/runtime/');
    const compiled = fileURLToPath(new URL(`${base.slice(0, at)}/dist/runtime/doctor/probe.js`));
    if (!existsSync(compiled)) throw new Error(`${compiled} is missing: build first with 'npm run build'`);
    return compiled;
  }
  return fileURLToPath(new URL('./probe.js', base));
}

// Each probe starts a Node process and loads native code; a gateway has few cores.
const MAX_PARALLEL = Math.max(1, Math.min(4, availableParallelism()));
let running = 0;
const waiting: Array<() => void> = [];

async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_PARALLEL) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

export function runProbe(req: ProbeRequest, timeoutMs: number): Promise<ProbeOutcome> {
  return slot(
    () =>
      new Promise<ProbeOutcome>((resolve) => {
        const started = performance.now();
        const ms = () => Math.round(performance.now() - started);
        execFile(
          process.execPath,
          [probeScript(), JSON.stringify(req)],
          { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, killSignal: 'SIGKILL' },
          (err, stdout, stderr) => {
            const last = stdout.trim().split('\n').pop() ?? '';
            if (!err) {
              try {
                resolve({ ...(JSON.parse(last) as ProbeAnswer), stderr: tail(stderr, 20), ms: ms() });
                return;
              } catch {
                resolve({
                  ok: false,
                  message: `the probe printed no answer: ${tail(stdout + stderr)}`,
                  stderr: tail(stderr, 20),
                  ms: ms(),
                });
                return;
              }
            }
            const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
            const said = tail(stderr);
            if (e.killed && e.signal === 'SIGKILL' && ms() >= timeoutMs - 50) {
              resolve({
                ok: false,
                crashed: 'timeout',
                message: `did not finish within ${timeoutMs} ms (hung)${said ? `: ${said}` : ''}`,
                stderr: tail(stderr, 20),
                ms: ms(),
              });
            } else if (e.signal) {
              resolve({
                ok: false,
                crashed: e.signal,
                message: `crashed the process that loaded it (${e.signal})${said ? `: ${said}` : ''}`,
                stderr: tail(stderr, 20),
                ms: ms(),
              });
            } else {
              resolve({
                ok: false,
                message: `the probe process exited with code ${String(e.code)}${said ? `: ${said}` : ''}`,
                stderr: tail(stderr, 20),
                ms: ms(),
              });
            }
          },
        );
      }),
  );
}

/** The last few non-empty lines of a process's output, on one line. */
function tail(text: string, lines = 3): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-lines)
    .join(' | ');
}
