import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SystemdNotifier } from '../../runtime/ops/sd-notify.js';
import { waitFor } from '../helpers/daemon.js';
import { NotifySocket } from '../install/notify-socket.js';

/**
 * SystemdNotifier against a real unix datagram socket standing in for systemd's NOTIFY_SOCKET
 * (a Python receiver, as the service manager's end), with the real systemd-notify sending.
 */

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-sdnotify-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function notifySocket(): Promise<NotifySocket> {
  const socket = await NotifySocket.start(path.join(await tempDir(), 'notify.sock'));
  cleanup.push(() => socket.stop());
  return socket;
}

function notifier(env: NodeJS.ProcessEnv): SystemdNotifier {
  const n = new SystemdNotifier({ env });
  cleanup.push(() => n.close());
  return n;
}

describe('SystemdNotifier', () => {
  beforeAll(() => {
    if (!existsSync('/usr/bin/systemd-notify') && !existsSync('/bin/systemd-notify'))
      throw new Error('systemd-notify is needed for this test: apt-get install systemd');
  });

  it('sends READY=1 with its status, WATCHDOG=1 at half WATCHDOG_USEC, then STOPPING=1 and nothing more', async () => {
    const socket = await notifySocket();
    const n = notifier({ ...process.env, NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: '300000' });
    expect(n.enabled).toBe(true);
    expect(n.watchdogIntervalMs).toBe(150);

    n.ready('3 models loaded');
    const ready = await waitFor('READY=1', () => socket.with('READY=1')[0]);
    expect(ready.fields).toEqual(['READY=1', 'STATUS=3 models loaded']);
    await waitFor('three watchdog pings', () => (socket.with('WATCHDOG=1').length >= 3 ? true : undefined));

    n.stopping();
    await waitFor('STOPPING=1', () => socket.with('STOPPING=1')[0]);
    await n.close();
    const pings = socket.with('WATCHDOG=1').length;
    await new Promise((r) => setTimeout(r, 500));
    expect(socket.with('WATCHDOG=1').length).toBe(pings);
  });

  it('sends no watchdog ping while the event loop is blocked', async () => {
    const socket = await notifySocket();
    const n = notifier({ ...process.env, NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: '200000' });
    n.ready();
    await waitFor('two watchdog pings', () => (socket.with('WATCHDOG=1').length >= 2 ? true : undefined));

    const blockedFrom = Date.now();
    while (Date.now() - blockedFrom < 1_200) {
      // a stuck event loop: a synchronous busy wait, as a runaway computation would be
    }
    const blockedUntil = Date.now();
    const before = socket.with('WATCHDOG=1').length;
    await waitFor('pings after the loop is free again', () =>
      socket.with('WATCHDOG=1').length > before + 1 ? true : undefined,
    );
    // A ping spawned just before the block may still land early in it; none may start inside it.
    const inside = socket
      .with('WATCHDOG=1')
      .filter((d) => d.at > blockedFrom + 400 && d.at < blockedUntil - 50);
    expect(inside).toEqual([]);
  });

  it('pings no watchdog when WATCHDOG_PID names another process, but still says READY=1', async () => {
    const socket = await notifySocket();
    const n = notifier({
      ...process.env,
      NOTIFY_SOCKET: socket.path,
      WATCHDOG_USEC: '100000',
      WATCHDOG_PID: String(process.pid + 100_000),
    });
    expect(n.watchdogIntervalMs).toBeUndefined();
    n.ready();
    await waitFor('READY=1', () => socket.with('READY=1')[0]);
    await new Promise((r) => setTimeout(r, 400));
    expect(socket.with('WATCHDOG=1')).toEqual([]);
  });

  it('does nothing at all without NOTIFY_SOCKET', async () => {
    const dir = await tempDir();
    // A stand-in for systemd-notify that leaves a trace whenever it is run.
    const marker = path.join(dir, 'ran');
    const fake = path.join(dir, 'fake-notify');
    await writeFile(fake, `#!/bin/sh\necho "$@" >> ${marker}\n`);
    await chmod(fake, 0o755);
    const env: NodeJS.ProcessEnv = { ...process.env, WATCHDOG_USEC: '100000' };
    delete env.NOTIFY_SOCKET;
    const n = new SystemdNotifier({ env, command: fake });
    cleanup.push(() => n.close());
    expect(n.enabled).toBe(false);
    n.ready();
    await new Promise((r) => setTimeout(r, 300));
    n.stopping();
    await n.close();
    expect(existsSync(marker)).toBe(false);

    // The same stand-in does leave its trace when a socket is named, so the check above can fail.
    const m = new SystemdNotifier({
      env: { ...env, NOTIFY_SOCKET: path.join(dir, 'x.sock') },
      command: fake,
    });
    m.ready();
    await m.close();
    expect((await readFile(marker, 'utf8')).trim()).toBe('READY=1');
  });
});
