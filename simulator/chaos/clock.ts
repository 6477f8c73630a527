import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * A wall clock that jumps, for one process: libfaketime (Debian package `faketime`) preloaded into
 * the process, reading its offset from a file on every clock call (FAKETIME_NO_CACHE), so that
 * writing "+3600" into the file steps the process's wall clock an hour ahead at once, as an NTP
 * step or an operator's `date -s` does on a gateway. The monotonic clock is left alone
 * (FAKETIME_DONT_FAKE_MONOTONIC), as the kernel leaves it alone on a real step: durations measured
 * with it (latencies, timers) must not jump.
 *
 * The price of re-reading the file: a wall-clock read costs about 5 µs instead of 0.07 µs.
 * libfaketimeMT is the variant for multi-threaded programs (Node has a thread pool and workers).
 */

const run = promisify(execFile);

/** Where Debian and Ubuntu put the library (the multi-threaded variant first). */
export const LIBFAKETIME_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/faketime/libfaketimeMT.so.1',
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
];

export function findLibfaketime(): string | undefined {
  const env = process.env.VIGIL_LIBFAKETIME;
  if (env) return existsSync(env) ? env : undefined;
  return LIBFAKETIME_CANDIDATES.find((p) => existsSync(p));
}

export class WallClockShift {
  private offset = 0;

  private constructor(
    readonly library: string,
    readonly file: string,
  ) {}

  /** Prepares the offset file in `dir` (offset 0). Throws a clear error when libfaketime is missing. */
  static async create(dir: string): Promise<WallClockShift> {
    const library = findLibfaketime();
    if (!library)
      throw new Error(
        'libfaketime not found: the clock-jump drill needs the Debian package faketime ' +
          "('apt-get install faketime'), or VIGIL_LIBFAKETIME set to libfaketimeMT.so.1",
      );
    const shift = new WallClockShift(library, path.join(dir, 'faketime-offset'));
    await shift.set(0);
    return shift;
  }

  /** Environment variables that make a child process read its wall clock through this shift. */
  env(): Record<string, string> {
    return {
      LD_PRELOAD: this.library,
      FAKETIME_TIMESTAMP_FILE: this.file,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    };
  }

  /** The offset now, in seconds. */
  get seconds(): number {
    return this.offset;
  }

  /** Steps the wall clock of every process using env() to real time + `seconds` (now). */
  async set(seconds: number): Promise<void> {
    const s = Math.round(seconds);
    await writeFile(this.file, `${s >= 0 ? '+' : ''}${s}\n`);
    this.offset = s;
  }

  /**
   * Checks that the shift works for this Node binary: a child process must see the wall clock
   * moved by `probeSeconds` and its monotonic clock unmoved. Resolves with what it saw.
   */
  async verify(probeSeconds = 3600): Promise<{ wallShiftS: number; monotonicOk: boolean }> {
    const before = this.offset;
    await this.set(probeSeconds);
    try {
      const script =
        'const p=process.hrtime.bigint();console.log(JSON.stringify({wall:Date.now(),mono:Number(p/1000000n)}))';
      const { stdout } = await run(process.execPath, ['-e', script], {
        env: { ...process.env, ...this.env() },
        timeout: 20_000,
      });
      const seen = JSON.parse(stdout.trim()) as { wall: number; mono: number };
      const wallShiftS = Math.round((seen.wall - Date.now()) / 1000);
      const mono = Number(process.hrtime.bigint() / 1_000_000n);
      const result = { wallShiftS, monotonicOk: Math.abs(mono - seen.mono) < 10_000 };
      if (Math.abs(wallShiftS - probeSeconds) > 5 || !result.monotonicOk)
        throw new Error(
          `libfaketime (${this.library}) does not shift this Node's clock as expected: wall shift ` +
            `${wallShiftS} s for ${probeSeconds} s asked, monotonic clock ${result.monotonicOk ? 'kept' : 'moved'}`,
        );
      return result;
    } finally {
      await this.set(before);
    }
  }
}
