import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'dist/runtime/cli/main.js');

export interface RunningDaemon {
  proc: ChildProcess;
  /** Base URL of the ops HTTP server. */
  url: string;
  /** Everything the daemon logged so far (JSON lines on stderr). */
  logs(): string;
  /** SIGTERM, then wait for the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `vigil run --config FILE` as its own process (the compiled CLI, as a user runs it) and
 * waits until its /readyz answers (ready or not: `waitReady` says which is wanted).
 */
export async function startDaemon(
  configFile: string,
  httpPort: number,
  options: { waitReady?: boolean; timeoutMs?: number } = {},
): Promise<RunningDaemon> {
  const proc = spawn(process.execPath, [CLI, 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const wantReady = options.waitReady ?? true;
  for (;;) {
    if (proc.exitCode !== null)
      throw new Error(`vigil run exited with ${proc.exitCode} before it was ready:\n${output}`);
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.status === 200 || (!wantReady && r.status === 503)) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`vigil run did not become ready within the time limit:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proc,
    url,
    logs: () => output,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill('SIGTERM');
      }),
  };
}

/** Polls until `check` returns a value other than undefined, or fails with `what`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Reads one sample of a Prometheus metric with the given labels from /metrics text. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const part of (m[3] ?? '').match(/(\w+)="([^"]*)"/g) ?? []) {
      const [k, v] = part.split('=') as [string, string];
      have[k] = v.slice(1, -1);
    }
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return 0;
}
