/**
 * Undoing what a drill started when the drill is interrupted (Ctrl-C, `kill`): the brokers, the
 * daemon and the simulator are child processes, and the disk-full drill mounts a tmpfs with a
 * ballast file. A `finally` does not run when a signal ends the process, so whatever holds such a
 * resource registers how to release it here, and bench/chaos.ts and bench/load.ts run every
 * registered cleanup on SIGINT and SIGTERM before they exit.
 */

const cleanups = new Set<() => Promise<unknown>>();
let interruptedBy: NodeJS.Signals | undefined;

/** The signal that interrupted the process, once one did: nothing new may be started then. */
export function interrupted(): NodeJS.Signals | undefined {
  return interruptedBy;
}

/** Registers `cleanup` to run if the process is interrupted; the returned function unregisters it. */
export function onInterrupt(cleanup: () => Promise<unknown>): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Runs every registered cleanup, the latest first (what was started last depends on what came before). */
export async function runInterruptCleanups(): Promise<void> {
  const all = [...cleanups].reverse();
  cleanups.clear();
  for (const c of all) await c().catch(() => undefined);
}

/**
 * On the first SIGINT or SIGTERM: says so, runs the cleanups, and exits with 128 + the signal's
 * number (130, 143), as a shell expects of a process a signal ended. A second signal while the
 * cleanups run exits at once, leaving what they had not undone yet.
 */
export function cleanUpOnSignals(say: (line: string) => void = console.error): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(signal, () => {
      if (interruptedBy) {
        say(`${signal} again: exiting without finishing the cleanup`);
        process.exit(code);
      }
      interruptedBy = signal;
      say(`${signal}: stopping the load and what the drill started (send it again to exit at once)`);
      void runInterruptCleanups().finally(() => process.exit(code));
    });
  }
}
