import { type ChildProcess } from 'node:child_process';
import {
  appendFile,
  chmod,
  copyFile,
  lstat,
  readdir,
  readFile,
  readlink,
  stat,
  writeFile,
} from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../runtime/pipeline/result.js';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import { FolderSink, HttpSink } from '../../simulator/camera/sinks.js';
import { ROOT, waitFor } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { ChrootRoot, ROOT_ENV, runCommand, type RunResult } from './chroot.js';
import { NotifySocket } from './notify-socket.js';
import { debianRootTarball, offlineBundle, requireInstallTools } from './prerequisites.js';

/**
 * The offline bundle installed into a fresh Debian bookworm root (debootstrap, minbase + systemd)
 * with deploy/install.sh run inside it by chroot, then the installed daemon started there as the
 * vigil user, as its systemd unit would start it, against the simulator's cameras and a Mosquitto
 * broker outside the root (same network namespace). Not exercised here: systemd as PID 1 (so the
 * unit's sandboxing, watchdog and restarts are checked by systemd-analyze, not by running them).
 *
 * The steps build on each other (install, run, reinstall, upgrade, uninstall) and run in order.
 */

const VERSION = (JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;
const DEVICE = 'install-test-gw';
const NOTIFY_IN_ROOT = '/run/vigil-notify.sock';
/** How the unit starts the daemon, minus what only systemd does (cgroups, namespaces, seccomp). */
const AS_THE_UNIT =
  'cd /var/lib/vigil && umask 0027 && exec setpriv --reuid=vigil --regid=vigil --init-groups ' +
  '--no-new-privs --inh-caps=-all --bounding-set=-all';

let root: ChrootRoot;
let bundle: string;
let broker: RunningMosquitto;
let notify: NotifySocket;
let httpPort: number;
let camPort: number;
let vigilUid: number;
let vigilGid: number;
const timings: Record<string, number> = {};

function configYaml(): string {
  return [
    '# written by the install test',
    'version: 1',
    `device: { id: ${DEVICE} }`,
    'log: { level: info }',
    `http: { host: 127.0.0.1, port: ${httpPort}, tokenFile: /etc/vigil/ops-token }`,
    `mqtt: { url: "${broker.url}" }`,
    'store: { path: /var/lib/vigil/vigil.db }',
    'models: { defect: { package: /opt/vigil/current/app/models/defect/packages/defect-int8-onnx } }',
    'sources:',
    '  cam1: { type: camera-folder, path: /var/lib/vigil/incoming/cam1, stableMs: 100 }',
    `  cam2: { type: camera-http, listen: { host: 127.0.0.1, port: ${camPort} }, maxBodyBytes: 2000000 }`,
    'pipelines:',
    '  inspection: { sources: [cam1, cam2], model: defect, severity: { crack: critical } }',
    '',
  ].join('\n');
}

/** install.sh run inside the root, as an integrator runs it on the gateway. */
async function installInRoot(...args: string[]): Promise<RunResult> {
  await copyFile(path.join(ROOT, 'deploy/install.sh'), root.path('root/install.sh'));
  return root.run(['/bin/bash', '/root/install.sh', ...args]);
}

function output(r: RunResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

async function mode(inside: string): Promise<{ mode: number; uid: number; gid: number }> {
  const s = await stat(root.path(inside));
  return { mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
}

/** Whether a path exists in the root, a dangling symlink included. */
async function present(inside: string): Promise<boolean> {
  return (await lstat(root.path(inside)).catch(() => null)) !== null;
}

async function readdirNames(inside: string): Promise<string[]> {
  return readdir(root.path(inside));
}

async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await f();
  } finally {
    timings[name] = Date.now() - t0;
  }
}

beforeAll(async () => {
  requireInstallTools();
  const tarball = await timed('debian root (debootstrap or cache)', () => debianRootTarball());
  const b = await timed('offline bundle (build.sh or cache)', () => offlineBundle());
  bundle = b.file;
  root = await timed('unpack root', () => ChrootRoot.create(tarball));
  await root.mountApiFileSystems();
  await copyFile(bundle, root.path(`root/vigil-${VERSION}-linux-x64.tar.gz`));
  broker = await startMosquitto();
  httpPort = await freePort();
  camPort = await freePort();
  await writeFile(root.path('root/test-vigil.yaml'), configYaml());
  notify = await NotifySocket.start(root.path(NOTIFY_IN_ROOT));
}, 1_800_000);

afterAll(async () => {
  await notify?.stop();
  await broker?.stop();
  await root?.destroy();
  console.log(`install test timings (ms): ${JSON.stringify(timings)}`);
}, 120_000);

describe('install.sh --bundle in a fresh Debian root', () => {
  it('installs code, user, config, secrets, data folder and the enabled unit', async () => {
    // With the config it ships for installed gateways: it must pass `vigil config check` there.
    const r = await timed('install.sh', () =>
      installInRoot('--bundle', `/root/vigil-${VERSION}-linux-x64.tar.gz`),
    );
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain(`/etc/vigil/vigil.yaml passes 'vigil config check' with ${VERSION}`);

    // The user: a system account without a login, in the groups for serial ports and cameras.
    const passwd = (await readFile(root.path('etc/passwd'), 'utf8')).split('\n');
    const entry = passwd.find((l) => l.startsWith('vigil:'))!.split(':');
    vigilUid = Number(entry[2]);
    vigilGid = Number(entry[3]);
    expect(vigilUid).toBeLessThan(1000);
    expect(entry[5]).toBe('/var/lib/vigil');
    expect(entry[6]).toBe('/usr/sbin/nologin');
    const groups = (await readFile(root.path('etc/group'), 'utf8')).split('\n');
    for (const g of ['dialout', 'video'])
      expect(
        groups
          .find((l) => l.startsWith(`${g}:`))!
          .split(':')[3]!
          .split(','),
      ).toContain('vigil');

    // The code: a version folder, current pointing at it, a launcher on PATH; root's, read-only to vigil.
    expect(await readlink(root.path('opt/vigil/current'))).toBe(VERSION);
    expect(await readlink(root.path('usr/local/bin/vigil'))).toBe('/opt/vigil/current/bin/vigil');
    expect(await mode(`opt/vigil/${VERSION}`)).toMatchObject({ uid: 0, gid: 0, mode: 0o755 });
    const writable = await root.run([
      'find',
      `/opt/vigil/${VERSION}`,
      '!',
      '-type',
      'l',
      '(',
      '-perm',
      '/022',
      '-o',
      '!',
      '-user',
      'root',
      ')',
    ]);
    expect(writable.stdout).toBe('');
    const manifest = await readFile(root.path(`opt/vigil/${VERSION}/MANIFEST`), 'utf8');
    expect(manifest).toContain(
      `VIGIL_VERSION=${VERSION}\nVIGIL_ARCH=x64\nNODE_VERSION=${process.versions.node}\n`,
    );
    const nodeVersion = await root.run([`/opt/vigil/current/node/bin/node`, '--version']);
    expect(nodeVersion.stdout.trim()).toBe(process.version);
    // The root has no Node.js of its own: the bundle brings it.
    expect(existsSync(root.path('usr/bin/node'))).toBe(false);

    // Config and secrets: readable by the vigil group only; data: vigil's own.
    expect(await readFile(root.path('etc/vigil/vigil.yaml'), 'utf8')).toBe(
      await readFile(path.join(ROOT, 'deploy/config/gateway.yaml'), 'utf8'),
    );
    expect(await mode('etc/vigil/vigil.yaml')).toEqual({ mode: 0o640, uid: 0, gid: vigilGid });
    expect(await mode('etc/vigil/secrets.env')).toEqual({ mode: 0o640, uid: 0, gid: vigilGid });
    expect(await mode('etc/vigil/ops-token')).toEqual({ mode: 0o640, uid: 0, gid: vigilGid });
    expect(await readFile(root.path('etc/vigil/ops-token'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    expect(await mode('var/lib/vigil')).toEqual({ mode: 0o750, uid: vigilUid, gid: vigilGid });

    // The unit, enabled for boot (systemctl enable works without systemd running).
    expect(await readFile(root.path('etc/systemd/system/vigil.service'), 'utf8')).toBe(
      await readFile(path.join(ROOT, 'deploy/systemd/vigil.service'), 'utf8'),
    );
    expect(await readlink(root.path('etc/systemd/system/multi-user.target.wants/vigil.service'))).toBe(
      '/etc/systemd/system/vigil.service',
    );
    for (const unit of ['vigil-restart.timer', 'vigil-restart.service'])
      expect(existsSync(root.path(`etc/systemd/system/${unit}`)), unit).toBe(true);
  }, 300_000);

  it('the installed units pass systemd-analyze verify, with every accelerator drop-in, and rate OK on exposure', async () => {
    const units = ['vigil.service', 'vigil-restart.timer', 'vigil-restart.service'].map(
      (u) => `/etc/systemd/system/${u}`,
    );
    const plain = await root.run(['systemd-analyze', 'verify', ...units]);
    // verify exits 0 on unknown keys and bad values, so its output must be empty too.
    expect(plain.code, output(plain)).toBe(0);
    expect(plain.stdout + plain.stderr).toBe('');

    const dropins = root.path('etc/systemd/system/vigil.service.d');
    await root.run(['mkdir', '-p', '/etc/systemd/system/vigil.service.d']);
    for (const f of ['jetson.conf', 'nvidia-gpu.conf', 'coral-pcie.conf', 'coral-usb.conf'])
      await copyFile(path.join(ROOT, 'deploy/systemd/dropins', f), path.join(dropins, f));
    const withDropins = await root.run(['systemd-analyze', 'verify', units[0]!]);
    await root.run(['rm', '-rf', '/etc/systemd/system/vigil.service.d']);
    expect(withDropins.code, output(withDropins)).toBe(0);
    expect(withDropins.stdout + withDropins.stderr).toBe('');

    // systemd's own rating of the sandbox: 0 (locked down) to 10 (exposed); above 3.0 fails.
    const security = await root.run([
      'systemd-analyze',
      'security',
      '--offline=true',
      '--threshold=30',
      '--no-pager',
      units[0]!,
    ]);
    expect(security.code, output(security)).toBe(0);
    expect(security.stdout).toMatch(/Overall exposure level for vigil\.service: [0-2]\.\d OK/);
  }, 300_000);
});

describe('the installed daemon, started as the unit starts it, against the simulator', () => {
  let daemon: ChildProcess;
  let logs = '';
  let sub: MqttClient;
  let exitCode: Promise<number | null>;
  const alerts: Alert[] = [];

  beforeAll(async () => {
    // The integrator's edit: this gateway's broker and cameras (install.sh keeps it from now on).
    await writeFile(root.path('etc/vigil/vigil.yaml'), configYaml());
    sub = await mqtt.connectAsync(broker.url, { clientId: 'install-test-subscriber' });
    sub.on('message', (topic, payload) => {
      if (topic.includes('/alerts/')) alerts.push(JSON.parse(payload.toString()) as Alert);
    });
    await sub.subscribeAsync(`vigil/${DEVICE}/#`, { qos: 1 });

    daemon = root.spawn(
      ['/bin/sh', '-c', `${AS_THE_UNIT} /usr/local/bin/vigil run --config /etc/vigil/vigil.yaml`],
      {
        env: { ...ROOT_ENV, HOME: '/var/lib/vigil', NOTIFY_SOCKET: NOTIFY_IN_ROOT, WATCHDOG_USEC: '2000000' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    daemon.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    exitCode = new Promise((resolve) => daemon.once('exit', (code) => resolve(code)));
    const started = Date.now();
    await waitFor(
      '/readyz of the installed daemon',
      async () => {
        if (daemon.exitCode !== null) throw new Error(`vigil run exited with ${daemon.exitCode}:\n${logs}`);
        const r = await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined);
        return r?.status === 200 ? true : undefined;
      },
      60_000,
    );
    timings['daemon ready'] = Date.now() - started;
  }, 90_000);

  afterAll(async () => {
    await sub?.endAsync();
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGKILL');
      await exitCode;
    }
  });

  it('refuses state-changing requests without the ops token install.sh made', async () => {
    const url = `http://127.0.0.1:${httpPort}/api/v1/models/defect/check`;
    expect((await fetch(url, { method: 'POST' })).status).toBe(401);
    expect((await fetch(url, { method: 'POST', headers: { authorization: 'Bearer wrong' } })).status).toBe(
      403,
    );
    const token = (await readFile(root.path('etc/vigil/ops-token'), 'utf8')).trim();
    // Accepted: past the token, the daemon answers that it follows no registry.
    const ok = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(404);
    expect(await ok.text()).toMatch(/no model registry/);
  });

  it('runs as vigil without privileges, and vigil cannot change the installed code', async () => {
    const status = await readFile(`/proc/${daemon.pid}/status`, 'utf8');
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
    expect(field('Uid').split(/\s+/).map(Number)).toEqual([vigilUid, vigilUid, vigilUid, vigilUid]);
    expect(field('CapEff')).toBe('0000000000000000');
    expect(field('NoNewPrivs')).toBe('1');
    // The process is the bundled node running the installed version, not some other Node.js.
    expect(await readlink(`/proc/${daemon.pid}/exe`)).toBe(root.path(`opt/vigil/${VERSION}/node/bin/node`));

    const asVigil = (cmd: string) => root.run(['/bin/sh', '-c', `${AS_THE_UNIT} /bin/sh -c '${cmd}'`]);
    expect((await asVigil('touch /opt/vigil/current/app/package.json')).code).not.toBe(0);
    expect((await asVigil('touch /etc/vigil/vigil.yaml')).code).not.toBe(0);
    expect((await asVigil('cat /etc/vigil/secrets.env')).code).toBe(0);
    const nobody = await root.run([
      'setpriv',
      '--reuid=nobody',
      '--regid=nogroup',
      '--clear-groups',
      'cat',
      '/etc/vigil/secrets.env',
    ]);
    expect(nobody.code).not.toBe(0);
  }, 300_000);

  it('inspects frames from the simulated cameras (folder and HTTP), stores them and publishes alerts to the broker outside', async () => {
    const folderCam = new SimCamera({
      name: 'cam1',
      fps: 8,
      width: 640,
      height: 480,
      defectRate: 0.5,
      seed: 11,
      format: 'jpeg',
      sink: new FolderSink(root.path('var/lib/vigil/incoming/cam1')),
      render: renderFrame,
      maxFrames: 16,
    });
    const httpCam = new SimCamera({
      name: 'cam2',
      fps: 4,
      width: 640,
      height: 480,
      defectRate: 0.5,
      seed: 12,
      format: 'png',
      sink: new HttpSink(`http://127.0.0.1:${camPort}/frames`),
      render: renderFrame,
      maxFrames: 8,
    });
    folderCam.start();
    httpCam.start();
    await Promise.all([folderCam.finished, httpCam.finished]);
    expect(folderCam.stats.failed + httpCam.stats.failed).toBe(0);

    type Status = {
      version: string;
      device: string;
      pipelines: Record<string, { processed: number; dropped: Record<string, number> }>;
    };
    const status = await waitFor(
      'all 24 frames accounted for',
      async () => {
        const s = (await (await fetch(`http://127.0.0.1:${httpPort}/api/v1/status`)).json()) as Status;
        const p = s.pipelines.inspection!;
        const dropped = Object.values(p.dropped).reduce((a, b) => a + b, 0);
        return p.processed + dropped === 24 ? s : undefined;
      },
      60_000,
    );
    expect(status.version).toBe(VERSION);
    expect(status.device).toBe(DEVICE);
    expect(status.pipelines.inspection!.processed).toBeGreaterThan(0);

    const defective = [...folderCam.truth.values(), ...httpCam.truth.values()].filter(
      (t) => t.label !== 'ok',
    );
    expect(defective.length).toBeGreaterThan(0);
    await waitFor(
      'an alert on the broker outside the root',
      () => (alerts.length > 0 ? true : undefined),
      30_000,
    );
    expect(alerts[0]).toMatchObject({ device: DEVICE, pipeline: 'inspection' });
    expect(alerts[0]!.model).toMatchObject({ backend: 'onnxruntime-node', provider: 'cpu' });

    // Everything it wrote is under /var/lib/vigil, its own, and not readable by others (UMask).
    expect(await mode('var/lib/vigil/vigil.db')).toEqual({ mode: 0o640, uid: vigilUid, gid: vigilGid });
  }, 300_000);

  it('tells systemd READY=1 and pings the watchdog (needs SystemdNotifier wired into vigil run)', async () => {
    await waitFor(
      'READY=1 from the installed daemon on NOTIFY_SOCKET',
      () => (notify.with('READY=1').length > 0 ? true : undefined),
      10_000,
    );
    await waitFor(
      'two WATCHDOG=1 from the installed daemon (WATCHDOG_USEC=2 s)',
      () => (notify.with('WATCHDOG=1').length >= 2 ? true : undefined),
      10_000,
    );
  }, 300_000);

  it('stops cleanly on SIGTERM (exit 0)', async () => {
    daemon.kill('SIGTERM');
    expect(await exitCode, logs.slice(-3000)).toBe(0);
    expect(logs).toContain('vigil stopped');
  }, 300_000);

  it('told systemd STOPPING=1 on SIGTERM (needs SystemdNotifier wired into vigil run)', async () => {
    await waitFor('STOPPING=1', () => (notify.with('STOPPING=1').length > 0 ? true : undefined), 5_000);
  }, 300_000);
});

describe('reinstall, upgrade, rollback, refusals', () => {
  /** The bundle unpacked inside the root, to make other versions and broken copies of it. */
  const DIR = '/root/bundle-dir';

  async function manifestEdit(edit: (m: string) => string): Promise<void> {
    const file = root.path(`${DIR}/MANIFEST`);
    await writeFile(file, edit(await readFile(file, 'utf8')));
    await resum('MANIFEST');
  }

  /** Rewrites one file's line in SHA256SUMS, as a build of that content would have. */
  async function resum(rel: string): Promise<void> {
    const sum = await root.run(['/bin/sh', '-c', `cd ${DIR} && sha256sum ${rel}`]);
    expect(sum.code, output(sum)).toBe(0);
    const sums = root.path(`${DIR}/SHA256SUMS`);
    const lines = (await readFile(sums, 'utf8')).split('\n');
    await writeFile(sums, lines.map((l) => (l.endsWith(`  ${rel}`) ? sum.stdout.trim() : l)).join('\n'));
  }

  const current = () => readlink(root.path('opt/vigil/current'));

  let originalManifest: string;

  beforeAll(async () => {
    await root.run(['mkdir', '-p', DIR]);
    const r = await root.run([
      'tar',
      '-xzf',
      `/root/vigil-${VERSION}-linux-x64.tar.gz`,
      '-C',
      DIR,
      '--strip-components=1',
    ]);
    expect(r.code, output(r)).toBe(0);
    originalManifest = await readFile(root.path(`${DIR}/MANIFEST`), 'utf8');
  }, 120_000);

  it('running install.sh again changes nothing and keeps the config and secrets', async () => {
    await appendFile(root.path('etc/vigil/secrets.env'), 'VIGIL_MQTT_PASSWORD=kept\n');
    // An operator's copy left readable by everyone: kept, but no longer world-readable.
    await chmod(root.path('etc/vigil/vigil.yaml'), 0o644);
    const before = await readFile(root.path('etc/vigil/vigil.yaml'), 'utf8');
    const r = await installInRoot('--bundle', `/root/vigil-${VERSION}-linux-x64.tar.gz`);
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain(`/opt/vigil/${VERSION} is already installed and identical: kept`);
    expect(r.stdout).toContain('/etc/vigil/vigil.yaml exists: kept (only its owner and mode are set');
    expect(await readFile(root.path('etc/vigil/vigil.yaml'), 'utf8')).toBe(before);
    expect(await mode('etc/vigil/vigil.yaml')).toEqual({ mode: 0o640, uid: 0, gid: vigilGid });
    expect(await readFile(root.path('etc/vigil/secrets.env'), 'utf8')).toContain(
      'VIGIL_MQTT_PASSWORD=kept\n',
    );
    expect(await current()).toBe(VERSION);
    expect(existsSync(root.path('opt/vigil/previous'))).toBe(false);
  }, 300_000);

  it('refuses a bundle for another architecture, a newer glibc, a damaged copy or another build of the same version', async () => {
    await manifestEdit((m) => m.replace('VIGIL_ARCH=x64', 'VIGIL_ARCH=arm64'));
    let r = await installInRoot('--bundle', DIR);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('this bundle is for arm64 but this machine is x64');

    await manifestEdit(() => originalManifest.replace(/GLIBC_MIN=.*/, 'GLIBC_MIN=9.99'));
    r = await installInRoot('--bundle', DIR);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/this system has glibc 2\.\d+ but the bundle needs 9\.99/);

    // A byte changed on the way to the gateway: its sum no longer matches.
    const launcher = root.path(`${DIR}/bin/vigil`);
    const original = await readFile(launcher, 'utf8');
    await writeFile(launcher, original + '\n');
    await manifestEdit(() =>
      originalManifest.replace(`VIGIL_VERSION=${VERSION}`, `VIGIL_VERSION=${VERSION}-damaged`),
    );
    r = await installInRoot('--bundle', DIR);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('the bundle is damaged');
    expect(r.stderr).toContain('bin/vigil: FAILED');
    expect(await present(`opt/vigil/${VERSION}-damaged`)).toBe(false);

    // The same change with a matching sum is another build of the installed version: --force only.
    await manifestEdit(() => originalManifest);
    await resum('bin/vigil');
    r = await installInRoot('--bundle', DIR);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'differs from this bundle (another build of the same version): --force replaces it',
    );

    expect(await current()).toBe(VERSION);
    expect((await readdirNames('opt/vigil')).sort()).toEqual(['current', VERSION].sort());
    await writeFile(launcher, original);
    await resum('bin/vigil');
  }, 300_000);

  it('an upgrade moves current and previous, refuses a config the new version rejects, and --rollback returns', async () => {
    const next = `${VERSION}-upgrade-test`;
    await manifestEdit((m) => m.replace(`VIGIL_VERSION=${VERSION}`, `VIGIL_VERSION=${next}`));

    // The new version must accept the existing config before it becomes current.
    const config = await readFile(root.path('etc/vigil/vigil.yaml'), 'utf8');
    await writeFile(root.path('etc/vigil/vigil.yaml'), config + 'no_such_key: 1\n');
    let r = await installInRoot('--bundle', DIR);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('no_such_key');
    expect(r.stderr).toContain(`current was left as it was (${VERSION})`);
    expect(await current()).toBe(VERSION);
    await writeFile(root.path('etc/vigil/vigil.yaml'), config);

    r = await installInRoot('--bundle', DIR);
    expect(r.code, output(r)).toBe(0);
    expect(await current()).toBe(next);
    expect(await readlink(root.path('opt/vigil/previous'))).toBe(VERSION);
    expect(existsSync(root.path(`opt/vigil/${VERSION}/bin/vigil`))).toBe(true);

    r = await installInRoot('--rollback');
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain(`current is now ${VERSION} (was ${next})`);
    expect(await current()).toBe(VERSION);
    expect(await readlink(root.path('opt/vigil/previous'))).toBe(next);
    const launcher = await root.run(['readlink', '-f', '/usr/local/bin/vigil']);
    expect(launcher.stdout.trim()).toBe(`/opt/vigil/${VERSION}/bin/vigil`);
    const v = await root.run(['/usr/local/bin/vigil', '--version']);
    expect(v.stdout.trim()).toBe(VERSION);

    // A third version: only current and previous stay on the disk, the oldest goes.
    const third = `${VERSION}-third-test`;
    await manifestEdit((m) => m.replace(/VIGIL_VERSION=.*/, `VIGIL_VERSION=${third}`));
    r = await installInRoot('--bundle', DIR);
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain(`removed the old version ${next}`);
    expect((await readdirNames('opt/vigil')).sort()).toEqual(['current', 'previous', VERSION, third].sort());
    r = await installInRoot('--rollback');
    expect(r.code, output(r)).toBe(0);
    expect(await current()).toBe(VERSION);
  }, 300_000);
});

describe('uninstall', () => {
  async function uninstallInRoot(...args: string[]): Promise<RunResult> {
    await copyFile(path.join(ROOT, 'deploy/uninstall.sh'), root.path('root/uninstall.sh'));
    return root.run(['/bin/bash', '/root/uninstall.sh', ...args]);
  }

  it('removes code, unit and launcher but keeps config, data and the user; --purge removes those too', async () => {
    let r = await uninstallInRoot();
    expect(r.code, output(r)).toBe(0);
    for (const gone of [
      'opt/vigil',
      'usr/local/bin/vigil',
      'etc/systemd/system/vigil.service',
      'etc/systemd/system/vigil-restart.timer',
      'etc/systemd/system/multi-user.target.wants/vigil.service',
    ])
      expect(await present(gone), gone).toBe(false);
    for (const kept of ['etc/vigil/vigil.yaml', 'etc/vigil/secrets.env', 'var/lib/vigil/vigil.db'])
      expect(existsSync(root.path(kept)), kept).toBe(true);
    expect(await readFile(root.path('etc/passwd'), 'utf8')).toMatch(/^vigil:/m);

    r = await uninstallInRoot('--purge');
    expect(r.code, output(r)).toBe(0);
    for (const gone of ['etc/vigil', 'var/lib/vigil']) expect(existsSync(root.path(gone)), gone).toBe(false);
    expect(await readFile(root.path('etc/passwd'), 'utf8')).not.toMatch(/^vigil:/m);
    expect(await readFile(root.path('etc/group'), 'utf8')).not.toMatch(/^vigil:/m);
  }, 300_000);

  it('install.sh --root installs into an image from outside it, and uninstall.sh --root --purge removes it', async () => {
    const r = await runCommand('bash', [
      path.join(ROOT, 'deploy/install.sh'),
      '--root',
      root.dir,
      '--bundle',
      bundle,
      '--config',
      root.path('root/test-vigil.yaml'),
    ]);
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain(`/etc/vigil/vigil.yaml passes 'vigil config check' with ${VERSION}`);
    expect(await readlink(root.path('opt/vigil/current'))).toBe(VERSION);
    expect(await readFile(root.path('etc/passwd'), 'utf8')).toMatch(
      /^vigil:x:\d+:\d+:[^:]*:\/var\/lib\/vigil:\/usr\/sbin\/nologin$/m,
    );
    expect(await readlink(root.path('etc/systemd/system/multi-user.target.wants/vigil.service'))).toBe(
      '/etc/systemd/system/vigil.service',
    );
    expect((await mode('var/lib/vigil')).mode).toBe(0o750);

    const u = await runCommand('bash', [
      path.join(ROOT, 'deploy/uninstall.sh'),
      '--root',
      root.dir,
      '--purge',
    ]);
    expect(u.code, output(u)).toBe(0);
    for (const gone of ['opt/vigil', 'etc/vigil', 'var/lib/vigil', 'etc/systemd/system/vigil.service'])
      expect(existsSync(root.path(gone)), gone).toBe(false);
    expect(await readFile(root.path('etc/passwd'), 'utf8')).not.toMatch(/^vigil:/m);
  }, 300_000);
});
