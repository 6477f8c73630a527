import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryConfig } from '../../runtime/config/registry.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { MlflowRegistryClient } from '../../runtime/registry/mlflow.js';
import { AliasPoller } from '../../runtime/registry/poller.js';
import { RegistryError, type DownloadProgress, type ModelVersionInfo } from '../../runtime/registry/types.js';
import { generateKeys, registerPackage, startMlflow, type RunningMlflow } from '../helpers/mlflow.js';

/**
 * The registry client against a real MLflow 3.17.2 tracking server (SQLite store, artifact
 * proxy), seeded by models/registry/register.py with the real MLflow Python client: what an ML
 * engineer does, what a gateway sees.
 */

const DEFECT_INT8 = fileURLToPath(new URL('../../models/defect/packages/defect-int8-onnx', import.meta.url));
const DEFECT_FP32 = fileURLToPath(new URL('../../models/defect/packages/defect-fp32-onnx', import.meta.url));
const BIG_BYTES = 24 * 1024 * 1024;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** sha256 of every file under dir, by '/'-separated relative path. */
async function hashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file).split(path.sep).join('/')] = sha256(await readFile(file));
  }
  return out;
}

describe('MlflowRegistryClient against a real MLflow server', () => {
  let mlflow: RunningMlflow;
  let work: string;
  let keys: { privateKey: string; publicKey: string };
  let client: MlflowRegistryClient;
  let v1: string;
  let v2: string;
  let bigVersion: string;
  let big: string;

  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'vigil-registry-mlflow-'));
    // Our own data folder, so that the server can be stopped and started again on the same data.
    await mkdir(path.join(work, 'server'));
    mlflow = await startMlflow({ dir: path.join(work, 'server') });
    client = new MlflowRegistryClient(RegistryConfig.parse({ url: mlflow.url }), { env: {} });

    keys = await generateKeys(path.join(work, 'keys'));
    v1 = await registerPackage(mlflow.url, {
      name: 'defect',
      packageDir: DEFECT_INT8,
      alias: 'champion',
      signKey: keys.privateKey,
      tags: { team: 'quality', 'trained on': 'line 3' },
    });
    v2 = await registerPackage(mlflow.url, { name: 'defect', packageDir: DEFECT_FP32, alias: 'challenger' });

    // Large enough to abort part-way through.
    big = path.join(work, 'big');
    await mkdir(big);
    await writeFile(path.join(big, 'big.bin'), randomBytes(BIG_BYTES));
    await writeFile(path.join(big, 'vigil.json'), JSON.stringify({ note: 'not a real manifest' }));
    // Folders and an empty file: the listing is walked recursively.
    await mkdir(path.join(big, 'assets', 'labels'), { recursive: true });
    await writeFile(path.join(big, 'assets', 'labels', 'classes.txt'), 'ok\nscratch\ndent\n');
    await writeFile(path.join(big, 'assets', 'empty.txt'), '');
    bigVersion = await registerPackage(mlflow.url, { name: 'big-model', packageDir: big, alias: 'champion' });
  });

  afterAll(async () => {
    await mlflow?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('started the server (first start migrates the database)', () => {
    expect(mlflow.startupMs).toBeGreaterThan(0);
    expect(v1).toBe('1');
    expect(v2).toBe('2');
  });

  it('resolves aliases to versions with their tags', async () => {
    const champion = await client.versionByAlias('defect', 'champion');
    expect(champion).toMatchObject({
      name: 'defect',
      version: v1,
      status: 'READY',
      aliases: ['champion'],
      tags: { team: 'quality', 'trained on': 'line 3' },
    });
    expect(champion.source).toMatch(/^mlflow-artifacts:\/.+\/artifacts\/package$/);
    expect(champion.runId).toMatch(/^[0-9a-f]{32}$/);
    expect(champion.lastUpdated).toBeGreaterThan(1_700_000_000_000);

    const challenger = await client.versionByAlias('defect', 'challenger');
    expect(challenger.version).toBe(v2);
    expect(challenger.tags).toEqual({});
    expect(await client.getVersion('defect', v1)).toEqual(champion);
  });

  it('says not_found with MLflow error codes for an unknown model, alias or version', async () => {
    const model = (await client
      .versionByAlias('no-such-model', 'champion')
      .catch((e: unknown) => e)) as RegistryError;
    expect(model).toBeInstanceOf(RegistryError);
    expect(model.kind).toBe('not_found');
    expect(model.status).toBe(404);
    expect(model.errorCode).toBe('RESOURCE_DOES_NOT_EXIST');
    expect(model.message).toBe(
      `registry ${mlflow.url} answered 404 RESOURCE_DOES_NOT_EXIST: Registered Model with name=no-such-model not found (GET registered-models/alias)`,
    );

    const alias = (await client
      .versionByAlias('defect', 'production')
      .catch((e: unknown) => e)) as RegistryError;
    expect(alias.kind).toBe('not_found');
    expect(alias.status).toBe(400);
    expect(alias.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(alias.message).toMatch(/registered model 'defect' has no alias 'production'/);

    const version = (await client.getVersion('defect', '99').catch((e: unknown) => e)) as RegistryError;
    expect(version.kind).toBe('not_found');
    expect(version.retryable).toBe(false);
  });

  it('sets version tags and reads them back', async () => {
    await client.setVersionTag('defect', v2, 'vigil.rollout.gw-17', 'shadow: agreement 0.97 (200 samples)');
    await client.setVersionTag('defect', v2, 'vigil.rollout.gw-17', 'promoted');
    await client.setVersionTag('defect', v2, 'vigil.rollout.gw-18', 'rejected: p95 41 ms > 30 ms');
    const tags = (await client.getVersion('defect', v2)).tags;
    expect(tags).toEqual({
      'vigil.rollout.gw-17': 'promoted',
      'vigil.rollout.gw-18': 'rejected: p95 41 ms > 30 ms',
    });

    const bad = (await client
      .setVersionTag('defect', v2, 'bad key!', 'x')
      .catch((e: unknown) => e)) as RegistryError;
    expect(bad.kind).toBe('invalid');
    expect(bad.errorCode).toBe('INVALID_PARAMETER_VALUE');
  });

  it('downloads a registered package byte for byte, with a signature that verifies', async () => {
    const dest = path.join(work, 'download-defect');
    const progress: DownloadProgress[] = [];
    const version = await client.versionByAlias('defect', 'champion');
    const result = await client.downloadVersion(version, dest, { onProgress: (p) => progress.push(p) });

    // The package's own files (the model, its acceptance holdout in a subfolder), vigil.json and the signature.
    const source = await hashes(DEFECT_INT8);
    expect(result.files.sort()).toEqual([...Object.keys(source), 'vigil.json.sig'].sort());
    expect(result.files).toContain('acceptance/labels.csv');
    expect(result.resumedBytes).toBe(0);
    const got = await hashes(dest);
    expect(got).toMatchObject(source);
    expect(Object.keys(got).sort()).toEqual(result.files.sort());
    let bytes = 0;
    for (const f of result.files) bytes += (await stat(path.join(dest, f))).size;
    expect(result.bytes).toBe(bytes);
    expect(progress.at(-1)).toMatchObject({ doneBytes: result.bytes, totalBytes: result.bytes });

    // register.py signed the exact bytes of vigil.json with the private key.
    const signature = Buffer.from(
      (await readFile(path.join(dest, 'vigil.json.sig'), 'utf8')).trim(),
      'base64',
    );
    const publicKey = createPublicKey(await readFile(keys.publicKey));
    expect(verify(null, await readFile(path.join(dest, 'vigil.json')), publicKey, signature)).toBe(true);
    // The engineer's own folder was not touched.
    expect(existsSync(path.join(DEFECT_INT8, 'vigil.json.sig'))).toBe(false);

    const pkg = await loadModelPackage(dest);
    expect(pkg.manifest.file).toBe('model.onnx');
  });

  it('resumes an interrupted download with Range (the server answers 206)', async () => {
    const dest = path.join(work, 'download-big');
    const version = await client.versionByAlias('big-model', 'champion');
    expect(version.version).toBe(bigVersion);

    const controller = new AbortController();
    const first = await client
      .downloadVersion(version, dest, {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.file === 'big.bin' && p.bytes > 4 * 1024 * 1024) controller.abort();
        },
      })
      .catch((e: unknown) => e);
    expect((first as Error).name).toBe('AbortError');
    const partial = (await stat(path.join(dest, 'big.bin.part'))).size;
    expect(partial).toBeGreaterThan(4 * 1024 * 1024);
    expect(partial).toBeLessThan(BIG_BYTES);

    const second = await client.downloadVersion(version, dest);
    // Only a 206 continues the part; a 200 would have started big.bin again (resumedBytes 0).
    // (The assets/ files, listed before big.bin, were already complete and are kept too.)
    const assets = (await stat(path.join(big, 'assets', 'labels', 'classes.txt'))).size;
    expect(second.resumedBytes).toBe(partial + assets);
    expect(second.files.sort()).toEqual([
      'assets/empty.txt',
      'assets/labels/classes.txt',
      'big.bin',
      'vigil.json',
    ]);
    expect(await hashes(dest)).toEqual(await hashes(big));
    let total = 0;
    for (const f of second.files) total += (await stat(path.join(big, f))).size;
    expect(second.bytes).toBe(total);

    // Everything complete: a third call fetches nothing and counts it all as already there.
    const before = client.stats.responseBytes;
    const third = await client.downloadVersion(version, dest);
    expect(third.resumedBytes).toBe(third.bytes);
    expect(client.stats.responseBytes - before).toBeLessThan(4096);
  });

  it('polls with one small request and hands on a version once; unreachable while stopped, then back', async () => {
    const lines: { level: number; msg: string }[] = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      }),
    );
    const polling = new MlflowRegistryClient(
      RegistryConfig.parse({ url: mlflow.url, requestTimeoutMs: 5_000 }),
      {
        env: {},
      },
    );
    const seen: ModelVersionInfo[] = [];
    const poller = new AliasPoller({
      client: polling,
      name: 'defect',
      alias: 'champion',
      config: RegistryConfig.parse({ url: mlflow.url, backoff: { initialDelayMs: 100, maxDelayMs: 1_000 } }),
      log,
      onVersion: (info) => void seen.push(info),
    });

    await poller.pollNow();
    const requests = polling.stats.requests;
    const bytes = polling.stats.responseBytes;
    await poller.pollNow();
    // "Nothing changed" costs one GET and its small answer.
    expect(polling.stats.requests - requests).toBe(1);
    expect(polling.stats.responseBytes - bytes).toBeLessThan(2048);
    expect(seen.map((s) => s.version)).toEqual([v1]);

    await mlflow.stop();
    for (let i = 0; i < 3; i++) {
      const err = (await poller.pollNow().catch((e: unknown) => e)) as RegistryError;
      expect(err.kind).toBe('unreachable');
      expect(err.message).toMatch(/ECONNREFUSED/);
    }
    expect(poller.state).toBe('failing');
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);

    await mlflow.restart();
    expect((await poller.pollNow())?.version).toBe(v1);
    expect(poller.state).toBe('ok');
    expect(seen).toHaveLength(1);
    expect(lines.at(-1)?.msg).toMatch(/answers again/);

    // The alias moves: handed on once.
    await registerPackage(mlflow.url, { name: 'defect', packageDir: DEFECT_FP32, alias: 'champion' });
    await poller.pollNow();
    await poller.pollNow();
    expect(seen.map((s) => s.version)).toEqual([v1, '3']);
    expect(poller.requests).toBe(8);
    await poller.stop();
  });
});
