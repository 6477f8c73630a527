import { spawn, type ChildProcess } from 'node:child_process';
import { lstat, mkdtemp, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** socat processes still running, killed when this process exits without having stopped them. */
const liveSocat = new Set<number>();
let exitHookInstalled = false;

function trackSocat(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined) return; // failed to spawn; its 'error' event says why
  liveSocat.add(pid);
  child.once('exit', () => liveSocat.delete(pid));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test run or simulator that dies (process.exit, an uncaught error) without stop() would
  // otherwise leave socat and its ptys behind for good. 'exit' handlers must be synchronous;
  // SIGTERM lets socat remove its links on the way out.
  process.on('exit', () => {
    for (const p of liveSocat) {
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    liveSocat.clear();
  });
}

/**
 * A null-modem cable between two pseudo-terminals, made by socat: whatever is written to one end
 * comes out of the other. Vigil opens `hostPath` as it would open /dev/ttyUSB0; a simulated
 * device opens `devicePath`. Both are symlinks to /dev/pts/N that socat creates and removes,
 * so that unplug() makes the host's device path disappear exactly as pulling a USB-serial
 * adapter does, and replug() brings it back under the same name.
 */
export class PtyPair {
  private socat: ChildProcess | undefined;
  private stderrTail = '';

  private constructor(
    readonly hostPath: string,
    readonly devicePath: string,
    private readonly dir: string,
  ) {}

  /** A new pair in a fresh temporary folder, plugged in. Fails clearly when socat is missing. */
  static async create(): Promise<PtyPair> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-pty-'));
    const pair = new PtyPair(path.join(dir, 'host'), path.join(dir, 'device'), dir);
    try {
      await pair.replug();
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return pair;
  }

  get plugged(): boolean {
    return this.socat !== undefined;
  }

  /** Starts socat (again) with the same link names and waits until both ends exist. */
  async replug(): Promise<void> {
    if (this.socat) return;
    this.stderrTail = '';
    const child = spawn(
      'socat',
      ['-d', '-d', `pty,raw,echo=0,link=${this.hostPath}`, `pty,raw,echo=0,link=${this.devicePath}`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.socat = child;
    trackSocat(child);
    let ready = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`socat did not create the pty pair in 5 s: ${this.stderrTail}`)),
        5000,
      );
      const fail = (err: Error) => {
        clearTimeout(timer);
        child.stderr?.removeListener('data', onData);
        if (this.socat === child) this.socat = undefined;
        child.kill('SIGKILL');
        reject(err);
      };
      const onData = (d: Buffer) => {
        this.stderrTail = (this.stderrTail + d.toString()).slice(-2000);
        // socat logs this once both ptys and their links exist (-d -d).
        if (this.stderrTail.includes('starting data transfer loop')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stderr?.on('data', onData);
      child.once('error', (err: NodeJS.ErrnoException) =>
        fail(
          err.code === 'ENOENT'
            ? new Error(
                'socat is not installed; the serial simulator needs it (Debian/Ubuntu: apt-get install socat)',
              )
            : err,
        ),
      );
      child.once('exit', (code, signal) => {
        if (!ready)
          fail(
            new Error(`socat exited (${signal ?? code}) before the pty pair was ready: ${this.stderrTail}`),
          );
      });
    });
    ready = true;
    child.removeAllListeners('error');
    child.on('error', () => undefined);
    child.stderr?.removeAllListeners('data');
    child.stderr?.resume();
  }

  /** Pulls the cable: socat goes, both ptys hang up and both links disappear. */
  async unplug(): Promise<void> {
    const child = this.socat;
    if (!child) return;
    this.socat = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
    // socat removes its links on a clean exit; after a SIGKILL they would dangle.
    for (const link of [this.hostPath, this.devicePath]) {
      if (
        await lstat(link).then(
          () => true,
          () => false,
        )
      )
        await unlink(link).catch(() => undefined);
    }
  }

  /** Unplugs and removes the temporary folder. */
  async stop(): Promise<void> {
    await this.unplug();
    await rm(this.dir, { recursive: true, force: true });
  }
}
