import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import { RegistryError } from '../../runtime/registry/types.js';
import { registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';

/**
 * A real MLflow server running its basic-auth app (mlflow server --app-name basic-auth): an admin
 * publishes, gateways read with their own users, and a read-only user cannot write tags.
 */

/** Every file of a package folder, as relative paths. */
async function packageFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

const DEFECT_INT8 = fileURLToPath(new URL('../../models/defect/packages/defect-int8-onnx', import.meta.url));
const ADMIN = { username: 'admin', password: 'vigil-Admin-passw0rd' };
const READER = { username: 'gateway-7', password: 'gateway-Reader-passw0rd' };

describe('MlflowRegistryClient against a real MLflow server with basic auth', () => {
  let mlflow: RunningMlflow;
  let work: string;
  let version: string;

  function client(user?: { username: string; password: string }): MlflowRegistryClient {
    return new MlflowRegistryClient(RegistryConfig.parse({ url: mlflow.url, username: user?.username }), {
      env: user ? { MLFLOW_TRACKING_PASSWORD: user.password } : {},
    });
  }

  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'vigil-registry-auth-'));
    mlflow = await startMlflow({ basicAuth: ADMIN });
    version = await registerPackage(mlflow.url, {
      name: 'defect',
      packageDir: DEFECT_INT8,
      alias: 'champion',
      auth: ADMIN,
    });
    // A user with the server's default permission (READ), created through MLflow's own API.
    const res = await fetch(`${mlflow.url}/api/2.0/mlflow/users/create`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Basic ${Buffer.from(`${ADMIN.username}:${ADMIN.password}`).toString('base64')}`,
      },
      body: JSON.stringify(READER),
    });
    expect(res.status, await res.text()).toBe(200);
  });

  afterAll(async () => {
    await mlflow?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('reads and downloads with a user and the password from its variable', async () => {
    const reader = client(READER);
    const info = await reader.versionByAlias('defect', 'champion');
    expect(info.version).toBe(version);
    const dest = path.join(work, 'download');
    const result = await reader.downloadVersion(info, dest);
    // The package's files: the model, its manifest and its acceptance holdout (a subfolder).
    expect((await readdir(dest)).sort()).toEqual(['acceptance', 'model.onnx', 'vigil.json']);
    expect(result.files.sort()).toEqual((await packageFiles(DEFECT_INT8)).sort());
    expect(result.files).toContain('acceptance/labels.csv');
  });

  it('answers auth (401) without credentials or with a wrong password, never showing the password', async () => {
    const anonymous = (await client()
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(anonymous).toBeInstanceOf(RegistryError);
    expect(anonymous.kind).toBe('auth');
    expect(anonymous.status).toBe(401);
    expect(anonymous.retryable).toBe(false);
    expect(anonymous.message).toMatch(/answered 401: You are not authenticated/);

    const wrong = (await client({ username: READER.username, password: 'not-the-Password-1' })
      .versionByAlias('defect', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(wrong.kind).toBe('auth');
    expect(wrong.message).toMatch(/check registry.username/);
    expect(wrong.message).not.toContain('not-the-Password-1');
  });

  it('answers auth (403) when a read-only user writes a tag; the admin may', async () => {
    const denied = (await client(READER)
      .setVersionTag('defect', version, 'vigil.rollout.gw-7', 'promoted')
      .catch((e: unknown) => e)) as RegistryError;
    expect(denied.kind).toBe('auth');
    expect(denied.status).toBe(403);
    expect(denied.message).toMatch(/Permission denied.*writing tags needs EDIT/);

    await client(ADMIN).setVersionTag('defect', version, 'vigil.rollout.gw-7', 'promoted');
    expect((await client(READER).getVersion('defect', version)).tags).toEqual({
      'vigil.rollout.gw-7': 'promoted',
    });
  });
});
