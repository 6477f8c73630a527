import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { CLI, ROOT } from '../helpers/daemon.js';
import { registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';
import { freePort } from '../helpers/ports.js';

/**
 * `vigil doctor` against a real MLflow registry (basic auth, as a plant runs it): the alias
 * lookup through the daemon's own client, a wrong password, an alias that is not set, a registry
 * where nothing listens, and the clock compared with the registry's Date header.
 */

const run = promisify(execFile);
const DEFECT_ONNX = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const AUTH = { username: 'admin', password: 'doctor-test-password-1' };

interface Row {
  group: string;
  name: string;
  status: string;
  detail: string;
  fix?: string;
}

async function doctorJson(config: string, env: NodeJS.ProcessEnv): Promise<{ code: number; checks: Row[] }> {
  let stdout: string;
  let code = 0;
  try {
    ({ stdout } = await run(process.execPath, [CLI, 'doctor', '--json', '--config', config], { env }));
  } catch (err) {
    const e = err as { code: number; stdout: string };
    ({ stdout, code } = e);
  }
  return { code, checks: (JSON.parse(stdout) as { checks: Row[] }).checks };
}

function find(checks: Row[], name: string): Row {
  const r = checks.find((c) => c.name === name);
  if (!r) throw new Error(`no check '${name}' in ${checks.map((c) => c.name).join(', ')}`);
  return r;
}

let dir: string;
let mlflow: RunningMlflow | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-doctor-registry-'));
  mlflow = await startMlflow({ basicAuth: AUTH });
  await registerPackage(mlflow.url, {
    name: 'defect',
    packageDir: DEFECT_ONNX,
    alias: 'champion',
    auth: AUTH,
  });
});

afterAll(async () => {
  await mlflow?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function config(registryUrl: string): Promise<string> {
  const file = path.join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(
    file,
    stringify({
      device: { id: 'doctor-gw' },
      http: { port: await freePort() },
      mqtt: { url: `mqtt://127.0.0.1:${await freePort()}` },
      store: { path: path.join(dir, 'vigil.db') },
      registry: { url: registryUrl, username: AUTH.username, passwordEnv: 'DOCTOR_MLFLOW_PASSWORD' },
      models: {
        followed: { package: DEFECT_ONNX, registry: { name: 'defect', alias: 'champion' } },
        unset: { package: DEFECT_ONNX, registry: { name: 'defect', alias: 'nightly' } },
      },
      sources: {},
      pipelines: {},
    }),
  );
  return file;
}

describe('vigil doctor and the registry', () => {
  it('looks up each followed alias with the configured credentials and compares the clocks', async () => {
    const { checks } = await doctorJson(await config(mlflow!.url), {
      ...process.env,
      DOCTOR_MLFLOW_PASSWORD: AUTH.password,
    });
    expect(find(checks, 'registry').status).toBe('ok');
    expect(find(checks, 'registry').detail).toMatch(/answers \(GET \/health: HTTP 200 in \d+ ms\)/);
    const followed = find(checks, 'registry followed');
    expect(followed.status).toBe('ok');
    expect(followed.detail).toBe("registered model 'defect' alias 'champion' is version 1 (READY)");
    const unset = find(checks, 'registry unset');
    expect(unset.status).toBe('fail');
    expect(unset.detail).toMatch(/alias 'nightly'/);
    expect(unset.fix).toMatch(/set the alias 'nightly' in MLflow/);
    // The registry runs on this machine: the same clock, within the Date header's second.
    const skew = find(checks, 'skew vs registry');
    expect(skew.status).toBe('ok');
    expect(skew.detail).toMatch(/^this clock is within 1 s of registry http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('fails with the registry’s answer on a wrong password, and on a registry where nothing listens', async () => {
    const wrong = await doctorJson(await config(mlflow!.url), {
      ...process.env,
      DOCTOR_MLFLOW_PASSWORD: 'nope',
    });
    expect(wrong.code).toBe(1);
    const followed = find(wrong.checks, 'registry followed');
    expect(followed.status).toBe('fail');
    expect(followed.detail).toMatch(/answered 401/);
    expect(followed.fix).toMatch(/check registry\.username and its password/);
    expect(JSON.stringify(wrong.checks)).not.toContain('doctor-test-password-1');

    const port = await freePort();
    const closed = await doctorJson(await config(`http://127.0.0.1:${port}`), process.env);
    const registry = find(closed.checks, 'registry');
    expect(registry.status).toBe('fail');
    expect(registry.detail).toBe(
      `http://127.0.0.1:${port}: connection refused: nothing listens at 127.0.0.1:${port}`,
    );
    // Unreachable: the alias lookups are not tried one by one.
    expect(closed.checks.some((c) => c.name === 'registry followed')).toBe(false);
  });
});
