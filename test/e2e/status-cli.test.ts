import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { DaemonProcess } from '../../bench/soak.js';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { CLI } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { makeResult } from '../store/fixtures.js';

/**
 * `vigil status` as an operator runs it: against the running daemon, then against the store file
 * of a stopped one, with rows waiting for an upstream broker that is not there.
 */

const run = promisify(execFile);

async function vigilStatus(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'status', ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dir: string;
let config: string;
let daemon: DaemonProcess | undefined;
let broker: RunningMosquitto | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-status-cli-'));
  const dbFile = path.join(dir, 'vigil.db');
  // Three results, one with an alert, waiting for the upstream broker.
  const store = Store.open(dbFile, StoreConfig.parse({ path: dbFile }), silentLogger());
  for (let n = 1; n <= 3; n++) {
    const { result, alert } = makeResult(n, { alert: n === 2, producedAt: Date.now() - 600_000 });
    store.saveResult(result, alert);
  }
  store.close();
  // The broker first: a port picked before it started could be the one it is then given.
  broker = await startMosquitto();
  const httpPort = await freePort();
  config = path.join(dir, 'vigil.yaml');
  await writeFile(
    config,
    stringify({
      device: { id: 'status-gw' },
      http: { port: httpPort },
      mqtt: { url: broker.url },
      store: { path: dbFile },
      // Nothing listens there: everything stays in the backlog.
      upstream: {
        url: `mqtt://127.0.0.1:${await freePort()}`,
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      },
      models: {},
      sources: {},
      pipelines: {},
    }),
  );
  daemon = new DaemonProcess(config, `http://127.0.0.1:${httpPort}`);
  if (!(await daemon.waitReady())) throw new Error(`vigil run did not become ready:\n${daemon.logs()}`);
});

afterAll(async () => {
  await daemon?.kill();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('vigil status', () => {
  it('shows the running daemon’s upstream backlog per class, readable and as JSON', async () => {
    const text = await vigilStatus('--config', config);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/device status-gw/);
    expect(text.stdout).toMatch(/upstream: (connecting|disconnected)/);
    expect(text.stdout).toMatch(/^results\s+3\s+1, 10 min/m);
    expect(text.stdout).toMatch(/^alerts\s+1\s/m);
    expect(text.stdout).toMatch(/^readings\s+0\s+-/m);

    const json = await vigilStatus('--config', config, '--json');
    expect(json.code).toBe(0);
    const s = JSON.parse(json.stdout) as {
      upstream: { enabled: boolean; classes: Record<string, { rows: number; ackedSeq: number }> };
      store: { synchronous: string; classes: Record<string, { rows: number }> };
    };
    expect(s.upstream.enabled).toBe(true);
    expect(s.upstream.classes.results).toMatchObject({ rows: 3, ackedSeq: 0 });
    expect(s.store.synchronous).toBe('full');
    expect(s.store.classes.results!.rows).toBe(3);
  });

  it('publishes the backlog and the store usage in the retained MQTT status', async () => {
    const client = await mqtt.connectAsync(broker!.url);
    try {
      const status = await new Promise<Record<string, unknown>>((resolve) => {
        client.on('message', (_topic, payload) =>
          resolve(JSON.parse(payload.toString()) as Record<string, unknown>),
        );
        void client.subscribeAsync('vigil/status-gw/status', { qos: 1 });
      });
      expect(status).toMatchObject({
        state: 'online',
        upstream: { enabled: true, classes: { results: { rows: 3 }, alerts: { rows: 1 } } },
        store: { synchronous: 'full', classes: { results: { rows: 3 } } },
      });
    } finally {
      await client.endAsync();
    }
  });

  it('reads the backlog from the store file once the daemon is stopped', async () => {
    const exit = await daemon!.terminate();
    expect(exit.code).toBe(0);
    const text = await vigilStatus('--config', config);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/not answering .*read from the store file/);
    expect(text.stdout).toMatch(/^results\s+3\s+1, 10 min\s+0\s+never$/m);
  });

  it('says so when no daemon answers and no config is given', async () => {
    const r = await vigilStatus('--url', `http://127.0.0.1:${await freePort()}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no Vigil daemon answers at http:\/\/127\.0\.0\.1:\d+ .*pass --config FILE/);
  });
});
