import { randomBytes } from 'node:crypto';
import { cp, mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { zodIssues } from '../validation.js';
import { TEMP_MARK, fsyncPath, fsyncTree, isDirectory, writeFileAtomic } from './durable.js';
import { ModelState, emptyState, trimState, type Rejection } from './state.js';

/**
 * Model versions on disk, one folder per model:
 *
 *   <root>/<model>/versions/<version>/   complete, verified packages (the only thing ever loaded)
 *   <root>/<model>/staging/<version>/    a download in progress, resumed after a restart
 *   <root>/<model>/state.json            active version, those before it, refused versions
 *   <root>/<model>/.trash/               versions being deleted
 *
 * A version enters versions/ by one rename of a staging folder whose files were verified and
 * fsynced, and leaves it by one rename into .trash/, so a crash at any moment leaves each version
 * either absent or whole. state.json is replaced atomically. One process owns a store at a time.
 */

/** Model names as the config allows them (models.<name>). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** MLflow versions are digits; manifests may say 1.2.0. Never '.', '..' or a hidden name. */
export const VERSION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const STATE_FILE = 'state.json';
const VERSIONS = 'versions';
const STAGING = 'staging';
const TRASH = '.trash';
/** Copies of packages handed in from outside the store, under staging/. */
const IMPORT_PREFIX = '.import-';

export interface InstallResult {
  /** The installed package folder (packageDir). */
  dir: string;
  /** The version was already installed; the staging folder was discarded and verify not run. */
  alreadyInstalled: boolean;
}

/** Everything the store knows about one model, for status pages and the CLI. */
export interface ModelStoreSnapshot {
  model: string;
  active: string | undefined;
  /** The version a rollback goes back to (see previous()). */
  rollbackTo: string | undefined;
  /** Versions active before, most recent first (some may since have been pruned). */
  history: string[];
  /** Installed versions, oldest first. */
  installed: string[];
  rejected: Record<string, Rejection>;
}

interface ModelEntry {
  state: ModelState;
  installed: Set<string>;
}

export class ModelStore {
  private readonly models = new Map<string, ModelEntry>();
  /**
   * Per model (and per model/version for installs), the tail of its queue of changes: one
   * change at a time. Model names cannot hold '/', so the two kinds of key never meet.
   */
  private readonly chains = new Map<string, Promise<unknown>>();

  private constructor(
    readonly root: string,
    private readonly log: Logger,
  ) {}

  /**
   * Opens (creating it if needed) the store at `root`: reads each model's state, deletes what
   * an interrupted change left behind (temp state files, versions halfway to deletion, staging
   * folders of versions installed or refused since), and forgets an active version whose
   * folder is gone. Throws VIGIL_ERR_STORE when the folder cannot be created or read.
   */
  static async open(root: string, log: Logger): Promise<ModelStore> {
    const abs = path.resolve(root);
    const store = new ModelStore(abs, log.child({ component: 'modelstore' }));
    let names: string[];
    try {
      await mkdir(abs, { recursive: true });
      names = (await readdir(abs, { withFileTypes: true }))
        .filter((e) => e.isDirectory() && MODEL_NAME.test(e.name))
        .map((e) => e.name);
    } catch (err) {
      throw storeError(abs, `cannot open the model store folder`, err);
    }
    for (const name of names) await store.loadModel(name);
    return store;
  }

  /** Models that have a folder in the store. */
  modelNames(): string[] {
    return [...this.models.keys()].sort();
  }

  /** Where version `version` of `model` is (or would be) installed. */
  packageDir(model: string, version: string): string {
    checkNames(this.root, model, version);
    return path.join(this.root, model, VERSIONS, version);
  }

  /**
   * The one staging folder of a version: the same path after a restart, so that a download
   * interrupted there resumes. Not created here (the downloader creates it, parents included).
   */
  stagingDir(model: string, version: string): string {
    checkNames(this.root, model, version);
    return path.join(this.root, model, STAGING, version);
  }

  /**
   * Installs `version` from `stagingDir`: runs `verify` on it (it throws to refuse the package;
   * its error is passed on unchanged and the staging folder stays), fsyncs every file, then moves
   * the folder into versions/ in one rename. A folder outside <root>/<model>/staging/ is copied
   * in first and verified there, so that the bytes verified are the bytes installed. Installing
   * an installed version discards the staging folder and changes nothing else.
   */
  async install(
    model: string,
    version: string,
    stagingDir: string,
    verify: (dir: string) => Promise<unknown>,
  ): Promise<InstallResult> {
    checkNames(this.root, model, version);
    const target = this.packageDir(model, version);
    const given = path.resolve(stagingDir);
    const stagingRoot = path.join(this.root, model, STAGING);
    const inside = path.dirname(given) === stagingRoot && VERSION_NAME.test(path.basename(given));
    const already = async (): Promise<InstallResult> => {
      if (inside) await removeTree(this.root, given);
      this.entryOrCreate(model).installed.add(version);
      return { dir: target, alreadyInstalled: true };
    };
    // Verifying a large model takes a while: it holds up other installs of the same version
    // only, and the model's own queue (activate, rollback) just for the final rename.
    return this.exclusive(`${model}/${version}`, async () => {
      if (this.isInstalled(model, version) || (await isDirectory(target))) {
        return this.exclusive(model, already);
      }
      if (!(await isDirectory(given))) {
        throw new VigilError(
          'VIGIL_ERR_STORE',
          `model store ${this.root}: cannot install version ${version} of model ${model}: ${given} is not a folder ` +
            '(the download did not finish or was removed).',
          { detail: { model, version, dir: given } },
        );
      }
      await this.ensureModelDir(model);

      let dir = given;
      if (!inside) {
        dir = path.join(stagingRoot, `${IMPORT_PREFIX}${version}-${randomBytes(4).toString('hex')}`);
        await guard(this.root, `cannot copy ${given} into the store`, async () => {
          await mkdir(stagingRoot, { recursive: true });
          await cp(given, dir, { recursive: true, verbatimSymlinks: true, errorOnExist: true });
        });
      }
      try {
        this.log.debug({ model, version, dir }, 'install: verifying');
        await verify(dir);
        this.log.debug({ model, version }, 'install: syncing');
        await guard(this.root, `cannot write version ${version} of model ${model} to disk`, () =>
          fsyncTree(dir),
        );
      } catch (err) {
        if (!inside) await removeTree(this.root, dir);
        throw err;
      }
      return this.exclusive(model, async () => {
        if (await isDirectory(target)) {
          if (!inside) await removeTree(this.root, dir);
          return already();
        }
        await guard(this.root, `cannot install version ${version} of model ${model}`, async () => {
          this.log.debug({ model, version }, 'install: moving into versions/');
          await rename(dir, target);
          await fsyncPath(path.dirname(target));
          await fsyncPath(stagingRoot);
        });
        this.entryOrCreate(model).installed.add(version);
        this.log.info({ model, version, dir: target }, 'model version installed');
        return { dir: target, alreadyInstalled: false };
      });
    });
  }

  /** Deletes the staging folder of a version (a download to start over, or not to finish). */
  async discardStaging(model: string, version: string): Promise<void> {
    const dir = this.stagingDir(model, version);
    return this.exclusive(model, () => removeTree(this.root, dir));
  }

  /**
   * Makes an installed version the active one; the one active before heads the rollback
   * history. Activating a refused version withdraws its refusal (an explicit choice, e.g. a
   * manual promote). Throws VIGIL_ERR_STORE when the version is not installed.
   */
  async activate(model: string, version: string): Promise<void> {
    checkNames(this.root, model, version);
    return this.exclusive(model, async () => {
      const entry = this.entry(model);
      if (!entry?.installed.has(version)) {
        const have = entry ? [...entry.installed].sort(compareVersions) : [];
        throw new VigilError(
          'VIGIL_ERR_STORE',
          `model store ${this.root}: version ${version} of model ${model} is not installed, so it cannot be activated ` +
            `(installed: ${have.length > 0 ? have.join(', ') : 'none'}). Pull it first.`,
          { detail: { model, version, installed: have } },
        );
      }
      const s = entry.state;
      if (s.active === version && !Object.hasOwn(s.rejected, version)) return;
      const from = s.active;
      const rest = s.previous.filter((v) => v !== version && v !== from);
      const rejected = { ...s.rejected };
      delete rejected[version];
      await this.writeState(model, {
        ...s,
        active: version,
        previous: from !== null && from !== version ? [from, ...rest] : rest,
        rejected,
      });
      this.log.info({ model, version, from }, 'model version activated');
    });
  }

  /**
   * Refuses the active version and activates the rollback version (previous()) in one change
   * of state.json, so that a crash never leaves a refused version active. Returns the version
   * now active. Throws VIGIL_ERR_STORE, changing nothing, when there is nothing to go back to.
   */
  async rollback(model: string, reason: string, message?: string): Promise<string> {
    checkNames(this.root, model);
    return this.exclusive(model, async () => {
      const s = this.entry(model)?.state;
      const to = this.previous(model);
      if (!s || s.active === null || to === undefined) {
        throw new VigilError(
          'VIGIL_ERR_STORE',
          `model store ${this.root}: model ${model} has no earlier version installed to roll back to ` +
            `(active: ${s?.active ?? 'none'}).`,
          { detail: { model, active: s?.active ?? null } },
        );
      }
      const from = s.active;
      await this.writeState(model, {
        ...s,
        active: to,
        previous: [from, ...s.previous.filter((v) => v !== from && v !== to)],
        rejected: { ...s.rejected, [from]: rejectionOf(reason, message) },
      });
      this.log.warn({ model, from, to, reason, message }, 'model version rolled back');
      return to;
    });
  }

  active(model: string): string | undefined {
    return this.entry(model)?.state.active ?? undefined;
  }

  /**
   * The version a rollback goes back to: the most recently active one before the current that
   * is still installed and not refused.
   */
  previous(model: string): string | undefined {
    const entry = this.entry(model);
    if (!entry) return undefined;
    const s = entry.state;
    return s.previous.find((v) => v !== s.active && entry.installed.has(v) && !Object.hasOwn(s.rejected, v));
  }

  /** Installed versions, oldest first (numeric order for MLflow's digit versions). */
  installed(model: string): string[] {
    return [...(this.entry(model)?.installed ?? [])].sort(compareVersions);
  }

  isInstalled(model: string, version: string): boolean {
    return this.entry(model)?.installed.has(version) ?? false;
  }

  /**
   * Records that `version` was refused (a RolloutReason such as sha256_mismatch or regression),
   * so that polls do not pull it again, and deletes its staging folder. The version stays
   * installed if it was (prune removes refused versions first).
   */
  async markRejected(model: string, version: string, reason: string, message?: string): Promise<void> {
    checkNames(this.root, model, version);
    return this.exclusive(model, async () => {
      const s = this.entry(model)?.state ?? emptyState();
      await this.writeState(model, {
        ...s,
        rejected: { ...s.rejected, [version]: rejectionOf(reason, message) },
      });
      await removeTree(this.root, this.stagingDir(model, version));
      this.log.warn({ model, version, reason, message }, 'model version refused');
    });
  }

  isRejected(model: string, version: string): boolean {
    const s = this.entry(model)?.state;
    return s !== undefined && Object.hasOwn(s.rejected, version);
  }

  rejection(model: string, version: string): Rejection | undefined {
    const s = this.entry(model)?.state;
    return s && Object.hasOwn(s.rejected, version) ? s.rejected[version] : undefined;
  }

  /** Withdraws a refusal, so that the version may be pulled and tried again. */
  async clearRejected(model: string, version: string): Promise<void> {
    checkNames(this.root, model, version);
    return this.exclusive(model, async () => {
      const s = this.entry(model)?.state;
      if (!s || !Object.hasOwn(s.rejected, version)) return;
      const rejected = { ...s.rejected };
      delete rejected[version];
      await this.writeState(model, { ...s, rejected });
      this.log.info({ model, version }, 'model version refusal withdrawn');
    });
  }

  /**
   * Deletes installed versions beyond `keep` (at least 1): the active version and the rollback
   * version (previous()) always stay, as does every version in `protect` (e.g. one in shadow).
   * The other places go to the newest versions not refused (an installed version not yet
   * activated is likely the next candidate, and costs a download to get back); refused versions
   * go first. Returns the versions deleted.
   */
  async prune(model: string, keep: number, options: { protect?: readonly string[] } = {}): Promise<string[]> {
    checkNames(this.root, model);
    return this.exclusive(model, async () => {
      const entry = this.entry(model);
      if (!entry) return [];
      const s = entry.state;
      const installed = [...entry.installed];
      const refused = (v: string): boolean => Object.hasOwn(s.rejected, v);
      const newestFirst = (a: string, b: string): number => compareVersions(b, a);
      const byPreference = [
        ...installed.filter((v) => !refused(v)).sort(newestFirst),
        ...installed.filter(refused).sort(newestFirst),
      ];

      const kept = new Set<string>();
      const rollback = this.previous(model);
      if (s.active !== null) kept.add(s.active);
      if (rollback !== undefined) kept.add(rollback);
      for (const v of byPreference) {
        if (kept.size >= Math.max(1, keep)) break;
        kept.add(v);
      }
      for (const v of options.protect ?? []) kept.add(v);
      const doomed = installed.filter((v) => !kept.has(v)).sort(compareVersions);
      if (doomed.length === 0) return [];

      const trash = path.join(this.root, model, TRASH);
      const versions = path.join(this.root, model, VERSIONS);
      await guard(this.root, `cannot delete old versions of model ${model}`, async () => {
        this.log.debug({ model, versions: doomed }, 'prune: moving to .trash/');
        await mkdir(trash, { recursive: true });
        for (const v of doomed) {
          await rename(path.join(versions, v), path.join(trash, `${v}-${randomBytes(4).toString('hex')}`));
          entry.installed.delete(v);
        }
        await fsyncPath(versions);
      });
      this.log.debug({ model }, 'prune: deleting .trash/');
      await removeTree(this.root, trash);
      await this.writeState(model, {
        ...s,
        previous: s.previous.filter((v) => entry.installed.has(v)),
      });
      this.log.info({ model, removed: doomed, kept: [...kept] }, 'old model versions deleted');
      return doomed;
    });
  }

  snapshot(model: string): ModelStoreSnapshot {
    const s = this.entry(model)?.state ?? emptyState();
    return {
      model,
      active: s.active ?? undefined,
      rollbackTo: this.previous(model),
      history: [...s.previous],
      installed: this.installed(model),
      rejected: { ...s.rejected },
    };
  }

  private entry(model: string): ModelEntry | undefined {
    return this.models.get(model);
  }

  private entryOrCreate(model: string): ModelEntry {
    let e = this.models.get(model);
    if (!e) {
      e = { state: emptyState(), installed: new Set() };
      this.models.set(model, e);
    }
    return e;
  }

  private exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const next = (this.chains.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  /** Creates <model>/versions durably: a new model folder must survive a power cut too. */
  private async ensureModelDir(model: string): Promise<void> {
    const dir = path.join(this.root, model);
    if (await isDirectory(path.join(dir, VERSIONS))) return;
    await guard(this.root, `cannot create the folder of model ${model}`, async () => {
      await mkdir(path.join(dir, VERSIONS), { recursive: true });
      await fsyncPath(dir);
      await fsyncPath(this.root);
    });
  }

  private async writeState(model: string, next: ModelState): Promise<void> {
    await this.ensureModelDir(model);
    const state = trimState({ ...next, updatedAt: new Date().toISOString() });
    this.log.debug({ model, active: state.active }, 'state: writing');
    await guard(this.root, `cannot write the state of model ${model}`, () =>
      writeFileAtomic(path.join(this.root, model, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`),
    );
    this.entryOrCreate(model).state = state;
  }

  private async loadModel(model: string): Promise<void> {
    const dir = path.join(this.root, model);
    const entry = this.entryOrCreate(model);
    await guard(this.root, `cannot read the folder of model ${model}`, async () => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.name.startsWith(`${STATE_FILE}${TEMP_MARK}`)) await rm(path.join(dir, e.name), { force: true });
      }
      await removeTree(this.root, path.join(dir, TRASH));
      const versions = path.join(dir, VERSIONS);
      if (await isDirectory(versions)) {
        for (const e of await readdir(versions, { withFileTypes: true })) {
          if (e.isDirectory() && VERSION_NAME.test(e.name)) entry.installed.add(e.name);
          else
            this.log.warn({ model, entry: e.name }, 'model store: ignoring an unexpected entry in versions/');
        }
      }
    });
    entry.state = await this.readState(model);

    const s = entry.state;
    if (s.active !== null && !entry.installed.has(s.active)) {
      this.log.error(
        { model, version: s.active },
        `model store: active version ${s.active} of model ${model} is no longer installed; no version is active until one is pulled or activated`,
      );
      await this.writeState(model, { ...s, active: null });
    }

    const staging = path.join(dir, STAGING);
    if (await isDirectory(staging)) {
      for (const name of await readdir(staging)) {
        const stale =
          name.startsWith(IMPORT_PREFIX) ||
          (VERSION_NAME.test(name) && (entry.installed.has(name) || Object.hasOwn(s.rejected, name)));
        if (stale) await removeTree(this.root, path.join(staging, name));
      }
    }
  }

  /**
   * state.json, or an empty state when there is none. A file that does not parse (written by
   * hand, or a damaged disk) is moved aside and the model starts over without an active
   * version, which the registry then sets again: a gateway must not stay down over it.
   */
  private async readState(model: string): Promise<ModelState> {
    const file = path.join(this.root, model, STATE_FILE);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw storeError(this.root, `cannot read ${file}`, err);
    }
    let problem: string;
    try {
      const parsed = ModelState.safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
      problem = zodIssues(parsed.error)
        .map((i) => `${i.path}: ${i.message}`)
        .join('; ');
    } catch (err) {
      problem = `not valid JSON: ${errorMessage(err)}`;
    }
    const aside = `${file}.bad-${Date.now()}`;
    await guard(this.root, `cannot move the damaged ${file} aside`, () => rename(file, aside));
    this.log.error(
      { model, file, movedTo: aside, problem },
      `model store: ${file} is damaged (${problem}); moved it to ${aside} and starting model ${model} without an active version`,
    );
    return emptyState();
  }
}

function rejectionOf(reason: string, message: string | undefined): Rejection {
  const r: Rejection = { reason, at: new Date().toISOString() };
  if (message !== undefined) r.message = message;
  return r;
}

/** Numeric where both are digits (MLflow: '10' after '9'), else natural text order. */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function checkNames(root: string, model: string, version?: string): void {
  if (!MODEL_NAME.test(model)) {
    throw new VigilError(
      'VIGIL_ERR_STORE',
      `model store ${root}: '${model}' is not a usable model name (letters, digits, dash and underscore, starting with a letter or digit).`,
      { detail: { model } },
    );
  }
  if (version !== undefined && !VERSION_NAME.test(version)) {
    throw new VigilError(
      'VIGIL_ERR_STORE',
      `model store ${root}: '${version}' is not a usable version of model ${model} (letters, digits, '.', '_' and '-', ` +
        'starting with a letter or digit, at most 128 characters).',
      { detail: { model, version } },
    );
  }
}

async function removeTree(root: string, dir: string): Promise<void> {
  await guard(root, `cannot delete ${dir}`, () => rm(dir, { recursive: true, force: true }));
}

async function guard<T>(root: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof VigilError) throw err;
    throw storeError(root, what, err);
  }
}

function storeError(root: string, what: string, err: unknown): VigilError {
  const code = (err as NodeJS.ErrnoException).code;
  const hint =
    code === 'ENOSPC'
      ? ' The disk is full: free space, or lower registry.keepVersions.'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
        ? ' Vigil needs write access to this folder (registry.storeDir).'
        : '';
  return new VigilError('VIGIL_ERR_STORE', `model store ${root}: ${what}: ${errorMessage(err)}.${hint}`, {
    cause: err,
    detail: { root, errno: code },
  });
}
