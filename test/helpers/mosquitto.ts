import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

/**
 * Starts a real Mosquitto broker on a loopback port for tests that claim broker behaviour
 * (retained messages, last wills, authentication), which an in-process broker could fake.
 */

const execFileAsync = promisify(execFile);

/** Where the binaries are: Debian's paths unless VIGIL_TEST_MOSQUITTO(_PASSWD) say otherwise. */
export function mosquittoBinaries(): { mosquitto: string; passwd: string } {
  return {
    mosquitto: process.env.VIGIL_TEST_MOSQUITTO ?? '/usr/sbin/mosquitto',
    passwd: process.env.VIGIL_TEST_MOSQUITTO_PASSWD ?? '/usr/bin/mosquitto_passwd',
  };
}

export interface MosquittoOptions {
  /** Listen on this port (e.g. to restart a broker where clients expect it); default a free one. */
  port?: number;
  /** When given, anonymous clients are refused and only these users (name -> password) may connect. */
  users?: Record<string, string>;
  /**
   * Keep sessions, subscriptions and queued messages in this folder (owned by the caller) so
   * that they survive a stop and a start with the same folder; default: nothing persists.
   */
  dataDir?: string;
  /** Serve MQTT over TLS with these PEM files (the URL becomes mqtts://). */
  tls?: { cafile: string; certfile: string; keyfile: string };
  /**
   * More mosquitto.conf lines, appended after the defaults (e.g. `max_queued_messages 0`, so that
   * a test that counts every message is not cut short by the broker's own queue limit).
   */
  extraConfig?: string[];
}

export interface RunningMosquitto {
  port: number;
  url: string;
  /** Everything the broker wrote so far (its log goes to stderr). */
  output(): string;
  stop(): Promise<void>;
}

function requireBinary(file: string, what: string): void {
  if (!existsSync(file)) {
    throw new Error(
      `${what} not found at ${file}: these tests need a real Mosquitto broker. ` +
        `Install it with 'apt-get install mosquitto' (Debian/Ubuntu), or point ` +
        `VIGIL_TEST_MOSQUITTO / VIGIL_TEST_MOSQUITTO_PASSWD at the binaries.`,
    );
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<RunningMosquitto> {
  const bin = mosquittoBinaries();
  requireBinary(bin.mosquitto, 'mosquitto');
  const port = options.port ?? (await freePort());
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-mosquitto-'));
  const lines = [
    `listener ${port} 127.0.0.1`,
    ...(options.dataDir
      ? ['persistence true', `persistence_location ${options.dataDir.replace(/\/?$/, '/')}`]
      : ['persistence false']),
    ...(options.tls
      ? [`cafile ${options.tls.cafile}`, `certfile ${options.tls.certfile}`, `keyfile ${options.tls.keyfile}`]
      : []),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
  ];
  // Started as root, Mosquitto drops to the 'mosquitto' user, which cannot read our private
  // temp folder; keeping root is harmless for a loopback test broker.
  if (process.getuid?.() === 0) lines.push('user root');
  if (options.users) {
    requireBinary(bin.passwd, 'mosquitto_passwd');
    const passwordFile = path.join(dir, 'passwd');
    let first = true;
    for (const [user, password] of Object.entries(options.users)) {
      const args = first ? ['-c', '-b', passwordFile, user, password] : ['-b', passwordFile, user, password];
      await execFileAsync(bin.passwd, args);
      first = false;
    }
    lines.push('allow_anonymous false', `password_file ${passwordFile}`);
  } else {
    lines.push('allow_anonymous true');
  }
  lines.push(...(options.extraConfig ?? []));
  const configFile = path.join(dir, 'mosquitto.conf');
  await writeFile(configFile, lines.join('\n') + '\n');

  const child: ChildProcess = spawn(bin.mosquitto, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  spawnError.catch(() => undefined);

  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(
        `mosquitto exited (code ${exited.code}, signal ${exited.signal}) before listening on ${port}:\n${output}`,
      );
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`mosquitto did not accept connections on 127.0.0.1:${port} within 10 s:\n${output}`);
    }
    await Promise.race([new Promise((r) => setTimeout(r, 50)), spawnError]);
  }

  return {
    port,
    url: `${options.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    output: () => output,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exitPromise;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
