import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MetricsScrape } from './prom.js';

/**
 * `vigil run` as the drills see it: a process started from the built CLI with an environment of
 * the drill's choosing (libfaketime for the clock drill), reached only through its ops HTTP API.
 */

/** The repository root: where package.json is, from bench/chaos/ (tests) or dist/bench/chaos/ (built). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('chaos: package.json not found above ' + import.meta.url);
    dir = up;
  }
  return dir;
}

export const VIGIL_CLI = path.join(repoRoot(), 'dist/runtime/cli/main.js');

/** One kind of warn-or-worse log line: its message with numbers masked, and the first error given with it. */
export interface LogSummaryLine {
  level: 'warn' | 'error' | 'fatal';
  msg: string;
  count: number;
  err?: string;
}

/** The parts of GET /api/v1/status the drills read; everything optional, the daemon may change. */
export interface VigilStatus {
  ready?: boolean;
  mqtt?: { connected?: boolean };
  sources?: Array<{ name: string; type: string; state: string }>;
  pipelines?: Record<
    string,
    {
      seen?: number;
      processed?: number;
      dropped?: Record<string, number>;
      budgetExceeded?: number;
      latencyMs?: { count: number; p50: number; p95: number; p99: number; max: number };
    }
  >;
  telemetry?: Record<
    string,
    {
      state?: string;
      readings?: { good: number; uncertain: number; bad: number };
      rejected?: Record<string, number>;
      reconnects?: number;
      lastReadingAt?: number | null;
    }
  >;
  store?: {
    classes?: Record<string, { rows: number; evicted?: { delivered: number; undelivered: number } }>;
    outbox?: { alerts: number };
    error?: string;
  };
  upstream?: {
    state?: string;
    classes?: Record<string, { rows: number; ackedSeq: number; oldestSeq: number | null }>;
  };
}

export class VigilProcess {
  readonly proc: ChildProcess;
  readonly spawnedAt = Date.now();
  readyAt: number | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private output = '';
  private readonly exited: Promise<void>;

  constructor(
    configFile: string,
    readonly opsUrl: string,
    env: Record<string, string> = {},
  ) {
    if (!existsSync(VIGIL_CLI)) throw new Error(`${VIGIL_CLI} not found: run npm run build first`);
    this.proc = spawn(process.execPath, [VIGIL_CLI, 'run', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const keep = (d: Buffer) => {
      this.output += d.toString();
      if (this.output.length > 4_000_000) this.output = this.output.slice(-2_000_000);
    };
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  logs(): string {
    return this.output;
  }

  /** Log lines at error level or worse (pino 50, 60). */
  errorLines(): string[] {
    return this.output.split('\n').filter((l) => /"level":(50|60)\b/.test(l));
  }

  /**
   * The distinct messages logged at warn level or worse, with how often each came (most frequent
   * first, at most `max`): what an operator reading the log during the fault would see.
   */
  logSummary(max = 12): LogSummaryLine[] {
    const counts = new Map<string, LogSummaryLine>();
    for (const line of this.output.split('\n')) {
      const m = /"level":(40|50|60)\b/.exec(line);
      if (!m) continue;
      let msg: string;
      let err: string | undefined;
      try {
        const parsed = JSON.parse(line) as { msg?: unknown; err?: unknown };
        msg = String(parsed.msg ?? '');
        if (parsed.err !== undefined)
          err = typeof parsed.err === 'string' ? parsed.err : JSON.stringify(parsed.err);
      } catch {
        continue;
      }
      // Numbers and ids vary per line; the message's shape is what matters.
      const shape = msg.replace(/[0-9a-f]{8}-[0-9a-f-]{27,}/g, '<id>').replace(/\d+(\.\d+)?/g, 'N');
      const level = m[1] === '40' ? 'warn' : m[1] === '50' ? 'error' : 'fatal';
      const key = `${level} ${shape}`;
      const entry = counts.get(key) ?? {
        level,
        msg: shape,
        count: 0,
        ...(err ? { err: err.slice(0, 300) } : {}),
      };
      entry.count += 1;
      counts.set(key, entry);
    }
    return [...counts.values()].sort((a, b) => b.count - a.count).slice(0, max);
  }

  /** Polls /readyz until 200; throws with the log when the process exits first or time runs out. */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.alive && Date.now() < deadline) {
      try {
        const r = await fetch(`${this.opsUrl}/readyz`, { signal: AbortSignal.timeout(1_000) });
        if (r.status === 200) {
          this.readyAt = Date.now();
          return;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `vigil run did not become ready (${this.alive ? 'time limit' : `exited ${JSON.stringify(this.exit)}`}):\n` +
        this.output.slice(-6_000),
    );
  }

  async status(): Promise<VigilStatus | undefined> {
    return fetchStatus(this.opsUrl);
  }

  metrics(): Promise<MetricsScrape> {
    return MetricsScrape.fetch(this.opsUrl);
  }

  /** SIGTERM, SIGKILL after `hardMs`; resolves with the exit. */
  async terminate(hardMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), hardMs);
    await this.exited;
    clearTimeout(timer);
    return this.exit!;
  }

  async kill(): Promise<void> {
    if (this.alive) this.proc.kill('SIGKILL');
    await this.exited;
  }
}

/** GET /api/v1/status of a daemon; undefined when it does not answer. */
export async function fetchStatus(opsUrl: string): Promise<VigilStatus | undefined> {
  try {
    const r = await fetch(`${opsUrl}/api/v1/status`, { signal: AbortSignal.timeout(3_000) });
    return r.ok ? ((await r.json()) as VigilStatus) : undefined;
  } catch {
    return undefined;
  }
}
