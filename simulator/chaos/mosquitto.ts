import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A Mosquitto broker that a chaos drill can kill and start again, as a plant's broker is killed
 * by an out-of-memory killer, a crash or a host reboot. It is a real process on a fixed loopback
 * port with persistence on disk, so that a restarted broker is the same broker to its clients:
 * same address, and the persistent sessions (subscriptions and queued QoS 1 messages) it saved.
 *
 * Persistence is saved every `autosaveSeconds` (Mosquitto's autosave_interval) and at a clean
 * exit; a SIGKILL loses what changed since the last save, as on a real gateway. The simulator is
 * the outside world: this knows nothing of Vigil and acts only through the process.
 */

export interface ChaosBrokerOptions {
  /** Folder for the persistence file; created if missing, owned by the caller. */
  dataDir: string;
  /** Port on 127.0.0.1; default a free one, kept across restarts. */
  port?: number;
  /** Seconds between persistence saves; default 1, so that sessions survive a SIGKILL. */
  autosaveSeconds?: number;
  /** More mosquitto.conf lines (e.g. `max_queued_messages 0`). */
  extraConfig?: string[];
  /** The mosquitto binary; default VIGIL_TEST_MOSQUITTO or /usr/sbin/mosquitto. */
  binary?: string;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS's pick). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('the OS gave no TCP port'))));
    });
  });
}

/** How long a broker sent SIGTERM may take to save and exit before it gets SIGKILL. */
const SIGTERM_GRACE_MS = 5_000;

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export class ChaosBroker {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private log = '';
  /** Lives of the broker process: 1 after start(), +1 per restart(). */
  lives = 0;

  private constructor(
    readonly port: number,
    private readonly configFile: string,
    private readonly configDir: string,
    private readonly binary: string,
  ) {}

  /** Writes the config and starts the broker; resolves once it accepts connections. */
  static async start(options: ChaosBrokerOptions): Promise<ChaosBroker> {
    const binary = options.binary ?? process.env.VIGIL_TEST_MOSQUITTO ?? '/usr/sbin/mosquitto';
    if (!existsSync(binary))
      throw new Error(
        `mosquitto not found at ${binary}: the broker drills need a real Mosquitto broker. ` +
          `Install it with 'apt-get install mosquitto', or set VIGIL_TEST_MOSQUITTO to its path.`,
      );
    const port = options.port ?? (await freeLoopbackPort());
    await mkdir(options.dataDir, { recursive: true });
    const configDir = await mkdtemp(path.join(os.tmpdir(), 'vigil-chaos-broker-'));
    const lines = [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${options.dataDir.replace(/\/?$/, '/')}`,
      `autosave_interval ${options.autosaveSeconds ?? 1}`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      // Started as root, Mosquitto would drop to a user that cannot read our private folders.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      ...(options.extraConfig ?? []),
    ];
    const configFile = path.join(configDir, 'mosquitto.conf');
    await writeFile(configFile, lines.join('\n') + '\n');
    const broker = new ChaosBroker(port, configFile, configDir, binary);
    await broker.launch();
    return broker;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What the broker logged over all its lives. */
  output(): string {
    return this.log;
  }

  /**
   * Kills the broker (SIGKILL by default: no goodbye to its clients, no final save) and waits for
   * it to exit. SIGTERM lets it save its persistence and close its clients' connections; one
   * that has not exited after SIGTERM_GRACE_MS gets SIGKILL, so the wait always ends.
   */
  async kill(signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    const child = this.child!;
    child.kill(signal);
    const timer =
      signal === 'SIGTERM' ? setTimeout(() => child.kill('SIGKILL'), SIGTERM_GRACE_MS) : undefined;
    await this.exited;
    clearTimeout(timer);
  }

  /** Starts the broker again on the same port with the same persistence; resolves once it accepts connections. */
  async restart(): Promise<void> {
    if (this.running) await this.kill();
    await this.launch();
  }

  /** Stops the broker for good and removes its config folder (not the caller's data folder). */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    await rm(this.configDir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const child = spawn(this.binary, ['-c', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.lives += 1;
    const keep = (d: Buffer) => {
      this.log += d.toString();
      if (this.log.length > 200_000) this.log = this.log.slice(-100_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('error', (err) => (this.log += `spawn error: ${err.message}\n`));
    // The old socket may linger for a moment after a kill: retry until this life listens.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (!this.running)
        throw new Error(`mosquitto exited before listening on port ${this.port}:\n${this.log.slice(-2_000)}`);
      if (await accepts(this.port)) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`mosquitto did not listen on 127.0.0.1:${this.port} within 10 s:\n${this.log}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}
