import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';

/**
 * The systemd notification protocol (sd_notify) for a Type=notify unit: READY=1 once the daemon
 * can do its work, WATCHDOG=1 at half the unit's WatchdogSec= while the event loop turns, and
 * STOPPING=1 when it shuts down. Node.js has no unix datagram sockets, so each message is sent
 * by a short-lived `systemd-notify` child; systemd accepts messages from processes other than
 * the main one only with NotifyAccess=all (deploy/systemd/vigil.service).
 *
 * Outside systemd (NOTIFY_SOCKET unset) every method does nothing.
 */

export interface SystemdNotifierOptions {
  /** Where NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are read; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Told about messages that could not be sent; default: nothing is logged. */
  log?: Logger;
  /** The program that sends one message; default `systemd-notify` on PATH. */
  command?: string;
  /** This process's pid, to compare with WATCHDOG_PID; default process.pid. */
  pid?: number;
}

export class SystemdNotifier {
  /** True when a service manager listens (NOTIFY_SOCKET is set). */
  readonly enabled: boolean;
  /** Milliseconds between WATCHDOG=1 messages, or undefined when the unit has no watchdog. */
  readonly watchdogIntervalMs: number | undefined;
  private readonly socket: string | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private readonly command: string;
  private readonly log: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private isReady = false;
  private closed = false;
  private warnedMissing = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(options: SystemdNotifierOptions = {}) {
    const env = options.env ?? process.env;
    this.env = env;
    this.socket = env.NOTIFY_SOCKET || undefined;
    this.enabled = this.socket !== undefined;
    this.command = options.command ?? 'systemd-notify';
    this.log = options.log;
    this.watchdogIntervalMs = this.enabled ? watchdogInterval(env, options.pid ?? process.pid) : undefined;
  }

  /**
   * Tells systemd the daemon is up, and from now on pings its watchdog. Call it once the daemon
   * has started (models loaded, sources started); a second call only updates the status text.
   */
  ready(status?: string): void {
    if (!this.enabled || this.closed) return;
    this.send(['READY=1', ...(status ? [`STATUS=${status}`] : [])]);
    if (this.isReady) return;
    this.isReady = true;
    if (this.watchdogIntervalMs !== undefined) {
      // Sent from a timer, so a blocked event loop sends nothing and systemd restarts the daemon.
      // READY=1 rides along: systemd drops a message whose sender exited before it was read (it
      // can no longer tell the sender's unit). systemd-notify of systemd 246+ waits until the
      // manager has read it (BARRIER=1); older ones (Ubuntu 20.04) do not, and a lost READY=1
      // would fail the start.
      this.timer = setInterval(() => this.send(['WATCHDOG=1', 'READY=1']), this.watchdogIntervalMs);
      this.timer.unref();
    }
  }

  /** Tells systemd the daemon is shutting down; the watchdog stops with it. */
  stopping(status?: string): void {
    if (!this.enabled || this.closed) return;
    this.stopWatchdog();
    this.send(['STOPPING=1', ...(status ? [`STATUS=${status}`] : [])]);
  }

  /** Stops the watchdog and waits for messages still on their way. Idempotent. */
  async close(): Promise<void> {
    this.stopWatchdog();
    this.closed = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private stopWatchdog(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private send(assignments: string[]): void {
    const sent = new Promise<void>((resolve) => {
      let stderr = '';
      const child = spawn(this.command, assignments, {
        env: { ...this.env, NOTIFY_SOCKET: this.socket },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          if (!this.warnedMissing)
            this.log?.warn(
              { command: this.command },
              `${this.command} not found: systemd is not told that Vigil is ready or alive, and will ` +
                `restart it; install systemd's tools or run the unit with Type=simple and no WatchdogSec`,
            );
          this.warnedMissing = true;
        } else {
          this.log?.warn({ err: err.message }, `could not run ${this.command}: ${err.message}`);
        }
        resolve();
      });
      child.once('close', (code) => {
        if (code !== 0 && code !== null)
          this.log?.warn(
            { code, message: assignments[0], stderr: stderr.trim() },
            `${this.command} ${assignments[0]} failed (exit ${code}): ${stderr.trim()}`,
          );
        resolve();
      });
    });
    this.inFlight.add(sent);
    void sent.then(() => this.inFlight.delete(sent));
  }
}

/**
 * Half the watchdog timeout systemd gave us (sd_watchdog_enabled): none when WATCHDOG_USEC is
 * unset or invalid, or when WATCHDOG_PID names another process (the variable was inherited).
 */
function watchdogInterval(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== pid)
    return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}
