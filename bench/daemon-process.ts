import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `vigil run` as the benchmarks and drills see it: a process started from the built CLI, with an
 * environment of the caller's choosing (libfaketime for the clock drill), reached only through its
 * ops HTTP API, and SIGKILLed or SIGTERMed at will. The store-and-forward soak, the chaos drills
 * and the end-to-end tests that import it from bench/soak.ts all run the daemon through this.
 */

/** The repository root: where package.json is, from bench/ (tests) or dist/bench/ (built). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('bench: package.json not found above ' + import.meta.url);
    dir = up;
  }
  return dir;
}

export const VIGIL_CLI = path.join(repoRoot(), 'dist/runtime/cli/main.js');

/** Mosquitto settings of a broker that never drops a queued QoS 1 message on its own. */
export const UNBOUNDED_QUEUE = ['max_queued_messages 0', 'max_queued_bytes 0'];

/**
 * The `upstream` section of a bench daemon: drains as fast as the link allows, reconnects within
 * a second, and flushes briefly on stop, so that delivery, not the forwarder's pacing, is measured.
 */
export function benchUpstream(url: string, topicPrefix?: string): Record<string, unknown> {
  return {
    url,
    ...(topicPrefix === undefined ? {} : { topicPrefix }),
    batchSize: 200,
    maxRowsPerSecond: 100_000,
    maxInFlight: 8,
    reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 },
    flushOnStopSeconds: 2,
  };
}

/** One kind of warn-or-worse log line: its message with numbers masked, and the first error given with it. */
export interface LogSummaryLine {
  level: 'warn' | 'error' | 'fatal';
  msg: string;
  count: number;
  err?: string;
}

/** The parts of GET /api/v1/status the benchmarks, drills and tests read; optional where the daemon may leave them out. */
export interface DaemonStatus {
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
    id?: string;
    recovery?: { movedTo: string; reason: string; at: string | number };
    classes?: Record<
      string,
      { rows: number; bytes: number; quotaBytes: number; evicted: { delivered: number; undelivered: number } }
    >;
    outbox?: { alerts: number };
    error?: string;
  };
  upstream?: {
    state?: string;
    drainRowsPerSecond?: number;
    classes?: Record<
      string,
      {
        rows: number;
        oldestSeq: number | null;
        oldestAt: number | null;
        ackedSeq: number;
        lastDeliveryAt: number | null;
        ageSeconds?: number;
        deliveredThisRun?: number;
      }
    >;
  };
}

export type DaemonExit = { code: number | null; signal: NodeJS.Signals | null };

/** Output kept per process: beyond the high mark only the tail is kept, so a long life stays bounded. */
const OUTPUT_HIGH_MARK = 4_000_000;
const OUTPUT_TAIL = 2_000_000;

/** One `vigil run` process: started, possibly killed, its log kept. */
export class DaemonProcess {
  readonly proc: ChildProcess;
  readonly spawnedAt = Date.now();
  /** When /readyz first answered 200. */
  readyAt: number | undefined;
  exit: DaemonExit | undefined;
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
      if (this.output.length > OUTPUT_HIGH_MARK) this.output = this.output.slice(-OUTPUT_TAIL);
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

  /** Log lines at error level or worse (pino levels 50, 60). */
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

  /** Polls /readyz until it answers 200; false when the process exited first or time ran out. */
  async waitReady(timeoutMs = 30_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.alive && Date.now() < deadline) {
      try {
        const r = await fetch(`${this.opsUrl}/readyz`, { signal: AbortSignal.timeout(1_000) });
        if (r.status === 200) {
          this.readyAt ??= Date.now();
          return true;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** waitReady that throws, with the log's tail, when the process exits first or time runs out. */
  async requireReady(timeoutMs = 60_000): Promise<void> {
    if (await this.waitReady(timeoutMs)) return;
    throw new Error(
      `vigil run did not become ready (${this.alive ? 'time limit' : `exited ${JSON.stringify(this.exit)}`}):\n` +
        this.output.slice(-6_000),
    );
  }

  status(): Promise<DaemonStatus | undefined> {
    return fetchStatus(this.opsUrl);
  }

  /** GET /metrics as text (Prometheus exposition format). */
  async metrics(): Promise<string> {
    const r = await fetch(`${this.opsUrl}/metrics`, { signal: AbortSignal.timeout(2_000) });
    return r.text();
  }

  async kill(): Promise<void> {
    if (this.alive) this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM; resolves with the exit and how long it took. SIGKILL after `hardMs`. */
  async terminate(hardMs = 60_000): Promise<DaemonExit & { ms: number }> {
    const t0 = Date.now();
    if (this.alive) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), hardMs);
    await this.exited;
    clearTimeout(timer);
    return { ...this.exit!, ms: Date.now() - t0 };
  }
}

/** GET /api/v1/status of a daemon; undefined when it does not answer. */
export async function fetchStatus(opsUrl: string): Promise<DaemonStatus | undefined> {
  try {
    const r = await fetch(`${opsUrl}/api/v1/status`, { signal: AbortSignal.timeout(3_000) });
    return r.ok ? ((await r.json()) as DaemonStatus) : undefined;
  } catch {
    return undefined;
  }
}
