import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VigilError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/log.js';
import { loadModelPackage } from '../../runtime/model/package.js';
import { ModelState } from '../../runtime/modelstore/state.js';
import { ModelStore } from '../../runtime/modelstore/store.js';
import { refusalReason, verifyPackage } from '../../runtime/modelstore/verify.js';
import {
  PackageWorkshop,
  copyPackage,
  corruptFile,
  makeVersion,
  SHIPPED_PACKAGE,
} from '../helpers/model-packages.js';
import { LEVEL, captureLogger } from '../store/helpers.js';

const shop = new PackageWorkshop();
const OFF = { policy: 'off', publicKeys: [] } as const;
const verify = (dir: string): Promise<unknown> => verifyPackage(dir, OFF);

let root: string;
beforeEach(async () => {
  root = path.join(await shop.tempDir('vigil-modelstore-'), 'models');
});
afterEach(() => shop.cleanup());

async function refusal(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  return err as VigilError;
}

/** Stages version `v` of the shipped package where the store resumes downloads, as a download would. */
async function stage(store: ModelStore, model: string, v: string): Promise<string> {
  const dir = store.stagingDir(model, v);
  await copyPackage(SHIPPED_PACKAGE, dir);
  await makeVersion(dir, v, 4096);
  return dir;
}

async function installVersions(store: ModelStore, model: string, versions: string[]): Promise<void> {
  for (const v of versions) await store.install(model, v, await stage(store, model, v), verify);
}

describe('ModelStore', () => {
  it('installs a verified staging folder by moving it into versions/', async () => {
    const store = await ModelStore.open(root, silentLogger());
    const staging = await stage(store, 'defect', '1');
    expect(staging).toBe(path.join(root, 'defect', 'staging', '1'));
    const seen: string[] = [];
    const res = await store.install('defect', '1', staging, async (dir) => {
      seen.push(dir);
      await verify(dir);
    });
    expect(seen).toEqual([staging]);
    expect(res).toEqual({ dir: path.join(root, 'defect', 'versions', '1'), alreadyInstalled: false });
    expect(store.packageDir('defect', '1')).toBe(res.dir);
    expect(existsSync(staging)).toBe(false);
    expect(store.installed('defect')).toEqual(['1']);
    expect((await loadModelPackage(res.dir)).manifest.version).toBe('1');
    // Nothing is active until a version is activated.
    expect(store.active('defect')).toBeUndefined();

    // Installing it again changes nothing and does not verify again.
    const again = await stage(store, 'defect', '1');
    const res2 = await store.install('defect', '1', again, () => Promise.reject(new Error('not called')));
    expect(res2).toEqual({ dir: res.dir, alreadyInstalled: true });
    expect(existsSync(again)).toBe(false);
  });

  it('copies a package from outside the store before verifying it, and leaves the original', async () => {
    const store = await ModelStore.open(root, silentLogger());
    const outside = await shop.copy();
    await makeVersion(outside, '5', 1024);
    let verified = '';
    const res = await store.install('defect', '5', outside, async (dir) => {
      verified = dir;
      await verify(dir);
    });
    expect(path.dirname(verified)).toBe(path.join(root, 'defect', 'staging'));
    expect(path.basename(verified)).toMatch(/^\.import-5-/);
    expect(existsSync(path.join(outside, 'vigil.json'))).toBe(true);
    expect((await loadModelPackage(res.dir)).manifest.version).toBe('5');
    expect(await readdir(path.join(root, 'defect', 'staging'))).toEqual([]);
  });

  it('passes a refusal on unchanged and installs nothing', async () => {
    const store = await ModelStore.open(root, silentLogger());
    const staging = await stage(store, 'defect', '2');
    await corruptFile(staging);
    const err = await refusal(store.install('defect', '2', staging, verify));
    expect(err.code).toBe('VIGIL_ERR_MODEL_FILE_MISMATCH');
    expect(refusalReason(err)).toBe('sha256_mismatch');
    expect(store.installed('defect')).toEqual([]);
    expect(existsSync(store.packageDir('defect', '2'))).toBe(false);
    // The staging folder stays for the caller to decide (resume, or discard).
    expect(existsSync(staging)).toBe(true);
    await store.discardStaging('defect', '2');
    expect(existsSync(staging)).toBe(false);

    // A refused copy from outside leaves no copy behind.
    const outside = await shop.copy();
    await corruptFile(outside);
    await refusal(store.install('defect', '3', outside, verify));
    expect(await readdir(path.join(root, 'defect', 'staging'))).toEqual([]);

    const missing = await refusal(store.install('defect', '4', store.stagingDir('defect', '4'), verify));
    expect(missing.code).toBe('VIGIL_ERR_STORE');
    expect(missing.message).toMatch(/is not a folder \(the download did not finish/);
  });

  it('activates versions, remembers the ones before for rollback, and skips refused ones', async () => {
    const store = await ModelStore.open(root, silentLogger());
    await installVersions(store, 'defect', ['1', '2', '3']);
    const err = await refusal(store.activate('defect', '9'));
    expect(err.code).toBe('VIGIL_ERR_STORE');
    expect(err.message).toContain('version 9 of model defect is not installed');
    expect(err.message).toContain('(installed: 1, 2, 3)');

    await store.activate('defect', '1');
    expect(store.previous('defect')).toBeUndefined();
    await store.activate('defect', '2');
    await store.activate('defect', '3');
    expect(store.active('defect')).toBe('3');
    expect(store.previous('defect')).toBe('2');

    // 3 regresses: refused, and the rollback goes back to 2; 3 is then never a rollback target.
    await store.markRejected('defect', '3', 'regression', 'error rate 4 % after promotion');
    await store.activate('defect', store.previous('defect')!);
    expect(store.active('defect')).toBe('2');
    expect(store.previous('defect')).toBe('1');
    expect(store.isRejected('defect', '3')).toBe(true);
    expect(store.rejection('defect', '3')).toMatchObject({
      reason: 'regression',
      message: 'error rate 4 % after promotion',
    });
    expect(store.snapshot('defect')).toMatchObject({
      active: '2',
      rollbackTo: '1',
      history: ['3', '1'],
      installed: ['1', '2', '3'],
    });

    // A refusal is withdrawn by hand, or by activating the version deliberately.
    await store.markRejected('defect', '7', 'sha256_mismatch');
    await store.clearRejected('defect', '7');
    expect(store.isRejected('defect', '7')).toBe(false);
    await store.activate('defect', '3');
    expect(store.isRejected('defect', '3')).toBe(false);
    expect(store.previous('defect')).toBe('2');
  });

  it('keeps active, history, refusals and installed versions across a reopen', async () => {
    const { log, lines } = captureLogger();
    const store = await ModelStore.open(root, log);
    await installVersions(store, 'defect', ['1', '2', '10']);
    await installVersions(store, 'rul', ['1']);
    await store.activate('defect', '1');
    await store.activate('defect', '10');
    await store.activate('rul', '1');
    await store.markRejected('defect', '11', 'signature_invalid', 'not signed by a trusted key');
    await store.markRejected('defect', '2', 'too_slow');

    const reopened = await ModelStore.open(root, silentLogger());
    expect(reopened.modelNames()).toEqual(['defect', 'rul']);
    expect(reopened.snapshot('defect')).toEqual(store.snapshot('defect'));
    expect(reopened.installed('defect')).toEqual(['1', '2', '10']);
    expect(reopened.active('defect')).toBe('10');
    expect(reopened.previous('defect')).toBe('1');
    expect(reopened.isRejected('defect', '11')).toBe(true);
    expect(reopened.rejection('defect', '11')?.reason).toBe('signature_invalid');
    expect(reopened.active('rul')).toBe('1');
    expect(reopened.active('unknown')).toBeUndefined();
    expect(reopened.installed('unknown')).toEqual([]);

    const state = ModelState.parse(
      JSON.parse(await readFile(path.join(root, 'defect', 'state.json'), 'utf8')),
    );
    expect(state).toMatchObject({ schema: 'vigil.modelstore.v1', active: '10', previous: ['1'] });
    expect(lines.filter((l) => l.level === LEVEL.warn).map((l) => l.msg)).toEqual([
      'model version refused',
      'model version refused',
    ]);
  });

  it('prunes down to keep versions, never the active or rollback version, refused ones first', async () => {
    const store = await ModelStore.open(root, silentLogger());
    await installVersions(store, 'defect', ['1', '2', '3', '4', '5', '6']);
    for (const v of ['1', '2', '3', '4']) await store.activate('defect', v);
    await store.markRejected('defect', '6', 'disagreement');
    // Active 4, rollback 3; 5 newest not refused; 6 refused; 1 and 2 older history.
    expect(await store.prune('defect', 3, { protect: ['1'] })).toEqual(['2', '6']);
    expect(store.installed('defect')).toEqual(['1', '3', '4', '5']);
    expect(await readdir(path.join(root, 'defect', 'versions'))).toEqual(
      expect.arrayContaining(['1', '3', '4', '5']),
    );
    expect(existsSync(path.join(root, 'defect', '.trash'))).toBe(false);

    expect(await store.prune('defect', 2)).toEqual(['1', '5']);
    expect(store.installed('defect')).toEqual(['3', '4']);
    expect(store.snapshot('defect').history).toEqual(['3']);
    // Even keep 1 holds on to the rollback version.
    expect(await store.prune('defect', 1)).toEqual([]);
    expect(await store.prune('nothing-here', 2)).toEqual([]);

    const reopened = await ModelStore.open(root, silentLogger());
    expect(reopened.installed('defect')).toEqual(['3', '4']);
    expect(reopened.isRejected('defect', '6')).toBe(true);
  });

  it('cleans up what an interrupted change left, and keeps a download in progress', async () => {
    const store = await ModelStore.open(root, silentLogger());
    await installVersions(store, 'defect', ['1', '2']);
    await store.activate('defect', '2');
    await store.markRejected('defect', '4', 'sha256_mismatch');
    const m = path.join(root, 'defect');
    await writeFile(path.join(m, 'state.json.tmp-123-abcd'), '{"half');
    await mkdir(path.join(m, '.trash', '0-abcd'), { recursive: true });
    await writeFile(path.join(m, '.trash', '0-abcd', 'model.onnx'), 'x');
    await mkdir(path.join(m, 'staging', '.import-3-ffff'), { recursive: true });
    await mkdir(path.join(m, 'staging', '1'), { recursive: true });
    await mkdir(path.join(m, 'staging', '4'), { recursive: true });
    await writeFile(path.join(m, 'staging', '3'), 'not a folder, not ours');
    const resumable = path.join(m, 'staging', '5');
    await mkdir(resumable, { recursive: true });
    await writeFile(path.join(resumable, 'model.onnx'), 'partial');

    const reopened = await ModelStore.open(root, silentLogger());
    expect((await readdir(m)).sort()).toEqual(['staging', 'state.json', 'versions']);
    expect((await readdir(path.join(m, 'staging'))).sort()).toEqual(['3', '5']);
    expect(reopened.stagingDir('defect', '5')).toBe(resumable);
    expect(await readFile(path.join(resumable, 'model.onnx'), 'utf8')).toBe('partial');
    expect(reopened.active('defect')).toBe('2');
  });

  it('moves a damaged state.json aside and forgets an active version whose folder is gone', async () => {
    const store = await ModelStore.open(root, silentLogger());
    await installVersions(store, 'defect', ['1']);
    await installVersions(store, 'rul', ['1']);
    await store.activate('defect', '1');
    await store.activate('rul', '1');
    await writeFile(path.join(root, 'defect', 'state.json'), '{"schema": "vigil.modelstore.v1", "act');
    await rm(path.join(root, 'rul', 'versions', '1'), { recursive: true });

    const { log, lines } = captureLogger();
    const reopened = await ModelStore.open(root, log);
    expect(reopened.active('defect')).toBeUndefined();
    expect(reopened.installed('defect')).toEqual(['1']);
    const aside = (await readdir(path.join(root, 'defect'))).filter((f) => f.startsWith('state.json.bad-'));
    expect(aside).toHaveLength(1);
    expect(reopened.active('rul')).toBeUndefined();
    const errors = lines.filter((l) => l.level === LEVEL.error).map((l) => l.msg);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/state\.json is damaged \(not valid JSON.*\); moved it to .*state\.json\.bad-/);
    expect(errors[1]).toMatch(/active version 1 of model rul is no longer installed/);
    // Both now have a sound state again.
    const again = await ModelStore.open(root, silentLogger());
    expect(again.snapshot('defect').active).toBeUndefined();
    await again.activate('defect', '1');
    expect(again.active('defect')).toBe('1');
  });

  it('refuses model and version names that could leave the store', async () => {
    const store = await ModelStore.open(root, silentLogger());
    for (const [model, version] of [
      ['defect', '..'],
      ['defect', '.'],
      ['defect', '../../etc'],
      ['defect', 'a/b'],
      ['defect', '.hidden'],
      ['..', '1'],
      ['de/fect', '1'],
      ['', '1'],
    ] as const) {
      expect(() => store.packageDir(model, version)).toThrow(VigilError);
      expect(() => store.stagingDir(model, version)).toThrow(/not a usable/);
      await expect(store.activate(model, version)).rejects.toMatchObject({ code: 'VIGIL_ERR_STORE' });
    }
    expect(store.packageDir('defect', '1.2.0-rc_1')).toBe(
      path.join(root, 'defect', 'versions', '1.2.0-rc_1'),
    );
  });

  it('rolls back atomically, and is not held up by another version being verified', async () => {
    const store = await ModelStore.open(root, silentLogger());
    await installVersions(store, 'defect', ['1', '2']);
    const none = await refusal(store.rollback('defect', 'regression'));
    expect(none.message).toContain(
      'model defect has no earlier version installed to roll back to (active: none)',
    );
    await store.activate('defect', '1');
    await store.activate('defect', '2');

    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = store.install('defect', '3', await stage(store, 'defect', '3'), async (dir) => {
      await gate;
      await verify(dir);
    });
    expect(await store.rollback('defect', 'too_slow', 'p95 140 ms')).toBe('1');
    expect(store.active('defect')).toBe('1');
    expect(store.rejection('defect', '2')).toMatchObject({ reason: 'too_slow', message: 'p95 140 ms' });
    expect(store.isInstalled('defect', '3')).toBe(false);
    release();
    expect(await slow).toMatchObject({ alreadyInstalled: false });
    expect(store.installed('defect')).toEqual(['1', '2', '3']);

    // Two installs of one version at once: one installs it, the other finds it installed.
    const staging = await stage(store, 'defect', '4');
    const results = await Promise.all([
      store.install('defect', '4', staging, verify),
      store.install('defect', '4', staging, verify),
    ]);
    expect(results.map((r) => r.alreadyInstalled)).toEqual([false, true]);
    // Nothing to roll back to once 2 is refused and 1 is active with no history before it.
    await refusal(store.rollback('defect', 'regression'));
    const reopened = await ModelStore.open(root, silentLogger());
    expect(reopened.snapshot('defect')).toEqual(store.snapshot('defect'));
  });
});
