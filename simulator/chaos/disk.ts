import { execFile } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * A disk that really runs out of space: a small tmpfs mounted on a folder, and a ballast file
 * that fills it to within a few bytes. Whatever writes there (SQLite, its write-ahead log) gets
 * ENOSPC from the kernel, as on a gateway whose eMMC filled up with logs, not an error made up
 * by the program under test. Releasing the ballast gives the space back.
 *
 * Mounting needs root (CAP_SYS_ADMIN); a clear error says so. Nothing outside the mount point is
 * touched, and unmount() removes it.
 */

const run = promisify(execFile);
const MIB = 1024 * 1024;
const BALLAST = '.chaos-ballast';
/** statfs f_type of a tmpfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;

export class SmallDisk {
  private ballastBytes = 0;

  private constructor(
    readonly dir: string,
    readonly sizeMiB: number,
  ) {}

  /** Mounts a tmpfs of `sizeMiB` on `dir` (created if missing). */
  static async mount(dir: string, sizeMiB: number): Promise<SmallDisk> {
    await mkdir(dir, { recursive: true });
    try {
      await run('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(sizeMiB)}m,mode=0755`, 'tmpfs', dir]);
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new Error(
        `cannot mount a ${sizeMiB} MiB tmpfs on ${dir} (${stderr || (err as Error).message}): ` +
          'the disk-full drill needs root (or CAP_SYS_ADMIN) to make a small filesystem; run it as root, ' +
          'e.g. in the CI container or with sudo',
        { cause: err },
      );
    }
    return new SmallDisk(dir, sizeMiB);
  }

  /** Free bytes on the filesystem for an unprivileged writer (what SQLite can still use). */
  freeBytes(): number {
    const s = statfsSync(this.dir);
    return Number(s.bavail) * Number(s.bsize);
  }

  /** Bytes the ballast file holds now. */
  get ballast(): number {
    return this.ballastBytes;
  }

  /**
   * Writes ballast until at most `leaveBytes` are free (0: the disk is full). Returns the free
   * bytes left. Writes that run into ENOSPC simply stop the filling: that is the goal.
   */
  async fill(leaveBytes = 0): Promise<number> {
    this.assertMounted();
    const fh = await open(path.join(this.dir, BALLAST), 'a');
    try {
      for (;;) {
        const free = this.freeBytes();
        const want = free - leaveBytes;
        if (want <= 0) break;
        const chunk = Buffer.alloc(Math.min(want, MIB), 0xa5);
        try {
          const { bytesWritten } = await fh.write(chunk, 0, chunk.length);
          this.ballastBytes += bytesWritten;
          if (bytesWritten === 0) break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    } finally {
      await fh.close();
    }
    return this.freeBytes();
  }

  /**
   * Throws unless `dir` is still the small tmpfs mount() made: once it is unmounted (an
   * interrupted drill being undone), the folder is on the real disk, and filling that would fill
   * the machine's own disk.
   */
  private assertMounted(): void {
    const s = statfsSync(this.dir);
    const size = Number(s.blocks) * Number(s.bsize);
    if (s.type !== TMPFS_MAGIC || size > (this.sizeMiB + 1) * MIB)
      throw new Error(
        `${this.dir} is no longer the ${this.sizeMiB} MiB tmpfs the drill mounted: not filling it`,
      );
  }

  /** Deletes the ballast: the space is back. */
  async release(): Promise<void> {
    await rm(path.join(this.dir, BALLAST), { force: true });
    this.ballastBytes = 0;
  }

  /** Unmounts (lazily if something still holds a file open there). */
  async unmount(): Promise<void> {
    try {
      await run('umount', [this.dir]);
    } catch {
      await run('umount', ['-l', this.dir]).catch(() => undefined);
    }
  }
}
