import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtemp, readFile, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The environment a command in the root starts with: nothing of the host's but a PATH and a locale. */
export const ROOT_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
};

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * A throw-away Debian root file system, unpacked from a debootstrap tarball into its own tmpfs
 * (the install copies a few hundred MB several times: in memory that takes seconds, whatever the
 * disk is doing), with /proc, /dev and /sys mounted so that programs run inside it with chroot
 * behave as on a booted system (minus systemd as PID 1). destroy() unmounts everything, the tmpfs
 * last, and removes the then empty mount point: nothing is ever deleted file by file, so a
 * leftover bind mount can never take host files with it.
 */
export class ChrootRoot {
  private readonly mounts: string[] = [];

  private constructor(readonly dir: string) {}

  static async create(tarball: string, sizeMiB = 4096): Promise<ChrootRoot> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-root-'));
    const root = new ChrootRoot(dir);
    // mode=0755: the unprivileged service user must be able to walk "/".
    await root.mount(['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs'], '.');
    await execFileAsync('tar', ['--numeric-owner', '-xzpf', tarball, '-C', dir]);
    return root;
  }

  /** The host path of a path inside the root. */
  path(inside: string): string {
    return path.join(this.dir, inside);
  }

  async mountApiFileSystems(): Promise<void> {
    await this.mount(['-t', 'proc', 'proc'], 'proc');
    await this.mount(['--bind', '/dev'], 'dev');
    await this.mount(['--bind', '/sys'], 'sys');
  }

  private async mount(args: string[], inside: string): Promise<void> {
    const target = inside === '.' ? this.dir : this.path(inside);
    await execFileAsync('mount', [...args, target]);
    this.mounts.push(target);
  }

  /** Runs a command inside the root (as root) and collects its output; never throws on exit codes. */
  run(argv: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
    return runCommand('chroot', [this.dir, ...argv], { env: options.env ?? ROOT_ENV }, options.timeoutMs);
  }

  /** Starts a long-running command inside the root. */
  spawn(argv: string[], options: SpawnOptions = {}): ChildProcess {
    return spawn('chroot', [this.dir, ...argv], { env: ROOT_ENV, ...options });
  }

  /** Mount points at or below the root that the kernel still has. */
  async mountedBelow(): Promise<string[]> {
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    return mounts
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .map((p) => p.replace(/\\040/g, ' '))
      .filter((p) => p === this.dir || p.startsWith(this.dir + '/'));
  }

  async destroy(): Promise<void> {
    for (const target of this.mounts.splice(0).reverse()) {
      try {
        await execFileAsync('umount', [target]);
      } catch {
        // Busy (a process still inside): detach it now, the kernel finishes when it is free.
        await execFileAsync('umount', ['-l', target]).catch(() => undefined);
      }
    }
    const left = await this.mountedBelow();
    if (left.length > 0)
      throw new Error(`still mounted at or below ${this.dir}, so it was left in place: ${left.join(', ')}`);
    await rmdir(this.dir);
  }
}

export function runCommand(
  file: string,
  args: string[],
  options: SpawnOptions = {},
  timeoutMs = 300_000,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${err.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
