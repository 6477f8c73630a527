import type { KeyObject } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { resolvePath, type LoadedConfig } from '../config/load.js';
import type { RegistryConfig } from '../config/registry.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelHost } from '../model/host.js';
import { loadPublicKeys } from '../model/signature.js';
import { ModelStore } from '../modelstore/store.js';
import type { ModelAction } from '../ops/http.js';
import type { Metrics } from '../ops/metrics.js';
import { verifyPackage } from '../modelstore/verify.js';
import { MlflowRegistryClient } from '../registry/mlflow.js';
import { RegistryError, type RegistryClient } from '../registry/types.js';
import { sleep } from '../backoff.js';
import { RolloutController } from './controller.js';
import { ModelFollower } from './follower.js';
import type { RolloutEvent } from './types.js';

const OWNER_FILE = 'daemon.pid';

/** Registry versions are strings of digits: compared as numbers, others as text. */
function compareVersions(a: string, b: string): number {
  return /^\d+$/.test(a) && /^\d+$/.test(b) ? Number(a) - Number(b) : a.localeCompare(b);
}

/** The pid of a live process that owns the model store at `storeDir`, if any. */
export function storeOwner(storeDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(storeDir, OWNER_FILE), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: alive, but another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** States worth writing back to the registry: where a version is on its way, and how it ended. */
const TAGGED_STATES = new Set(['shadow', 'promoted', 'rejected', 'rolled_back']);

/** Tries of one tag write when the registry is unreachable, slow or unavailable (0.5 + 1 + 2 + 4 s apart). */
const TAG_ATTEMPTS = 5;

/**
 * Over-the-air rollout for the daemon: the registry client, the on-disk model store, and per
 * model that follows a registered model its rollout controller and follower. Rollout events are
 * published (the daemon's callback), mirrored into the model store, and written back to the
 * registry as tags of the model version, `vigil.<device>.state` and `vigil.<device>.reason`.
 */
export class ModelRollouts {
  private readonly controllers = new Map<string, RolloutController>();
  private readonly followers = new Map<string, ModelFollower>();
  /** Registry tag writes, in event order. */
  private tags: Promise<void> = Promise.resolve();
  /** Cut short the retries of tag writes at stop. */
  private readonly stopping = new AbortController();

  private constructor(
    private readonly loaded: LoadedConfig,
    private readonly config: RegistryConfig,
    readonly client: RegistryClient,
    readonly store: ModelStore,
    private readonly publicKeys: KeyObject[],
    private readonly log: Logger,
    private readonly metrics: Metrics | undefined,
  ) {}

  /** Undefined when the config has no registry: section. */
  static async open(
    loaded: LoadedConfig,
    log: Logger,
    metrics?: Metrics,
  ): Promise<ModelRollouts | undefined> {
    const config = loaded.config.registry;
    if (!config) return undefined;
    const baseDir = path.dirname(loaded.file);
    const rlog = log.child({ component: 'registry' });
    const client = new MlflowRegistryClient(config, { baseDir, log: rlog });
    const storeDir = resolvePath(loaded, config.storeDir);
    const owner = storeOwner(storeDir);
    // Only a warning: after a power cut the file may name a pid that another program now has,
    // and a gateway must never refuse to start over that.
    if (owner !== undefined && owner !== process.pid)
      rlog.warn(
        { storeDir, pid: owner },
        `the model store ${storeDir} names process ${owner} as its owner; if that is another Vigil, give one of them another registry.storeDir`,
      );
    const store = await ModelStore.open(storeDir, rlog);
    // Tells `vigil models pull|status` that a daemon owns this store, even with its HTTP off.
    writeFileSync(path.join(storeDir, OWNER_FILE), `${process.pid}\n`);
    const publicKeys = await loadPublicKeys(config.signatures.publicKeys, baseDir);
    return new ModelRollouts(loaded, config, client, store, publicKeys, rlog, metrics);
  }

  /**
   * The package a model serves at start: the version its registry follower promoted last (kept in
   * the model store), checked again against the signature policy in force (it may have become
   * stricter since), else the config's package.
   */
  async packageFor(model: string): Promise<string> {
    const mc = this.loaded.config.models[model]!;
    const fallback = resolvePath(this.loaded, mc.package);
    const active = mc.registry ? this.store.active(model) : undefined;
    if (!active || !this.store.isInstalled(model, active) || this.store.isRejected(model, active))
      return fallback;
    const dir = this.store.packageDir(model, active);
    try {
      await verifyPackage(dir, { policy: this.config.signatures.policy, publicKeys: this.publicKeys });
      return dir;
    } catch (err) {
      this.log.error(
        { model, version: active, err: errorMessage(err) },
        `installed version ${active} of model ${model} no longer passes its checks (${errorMessage(err)}); serving ${fallback} instead`,
      );
      return fallback;
    }
  }

  /** Sets up the rollout of one model that follows the registry; `publish` sends its events on MQTT. */
  attach(model: string, host: ModelHost, budgetMs: number, publish: (event: RolloutEvent) => void): void {
    const mc = this.loaded.config.models[model]!;
    if (!mc.registry) return;
    const log = this.log.child({ model });
    const group = this.loaded.config.device.group;
    const alias = (group && mc.registry.aliasByGroup[group]) || mc.registry.alias;
    const refOf = (version: string) => ({
      packageDir: this.store.packageDir(model, version),
      registered: { name: mc.registry!.name, alias, version },
    });
    // What a rollback can go back to after a restart: the config's package, then the installed
    // versions older than the active one that were never refused.
    const active = this.store.active(model);
    const older = this.store
      .installed(model)
      .filter((v) => v !== active && !this.store.isRejected(model, v))
      .filter((v) => active === undefined || compareVersions(v, active) < 0);
    const controller = new RolloutController({
      model,
      deviceId: this.loaded.config.device.id,
      host,
      history: [{ packageDir: resolvePath(this.loaded, mc.package) }, ...older.map(refOf)],
      ...(active && host.packageDir === this.store.packageDir(model, active)
        ? { active: refOf(active) }
        : {}),
      policy: mc.rollout,
      budgetMs,
      log,
      metrics: this.metrics,
      onEvent: (event) => {
        publish(event);
        void this.followers.get(model)?.onEvent(event);
        this.tag(event);
      },
    });
    const follower = new ModelFollower({
      model,
      source: mc.registry,
      deviceId: this.loaded.config.device.id,
      deviceGroup: this.loaded.config.device.group,
      config: this.config,
      client: this.client,
      store: this.store,
      controller,
      publicKeys: this.publicKeys,
      log,
    });
    this.controllers.set(model, controller);
    this.followers.set(model, follower);
  }

  start(): void {
    for (const f of this.followers.values()) f.start();
  }

  status(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [model, c] of this.controllers)
      out[model] = { ...c.status(), registry: this.followers.get(model)?.status() };
    return out;
  }

  /** A state change asked for over the ops API (`vigil models promote|rollback|pull`). */
  async action(model: string, action: ModelAction): Promise<{ status: number; body: unknown }> {
    const controller = this.controllers.get(model);
    const follower = this.followers.get(model);
    if (!controller || !follower) {
      const followed = [...this.controllers.keys()].join(', ') || 'none';
      return {
        status: 404,
        body: { error: `model '${model}' does not follow the registry (those that do: ${followed})` },
      };
    }
    try {
      if (action === 'check') {
        const info = await follower.checkNow();
        return {
          status: 200,
          body: { alias: follower.alias, version: info?.version ?? null, status: follower.status() },
        };
      }
      const outcome = action === 'promote' ? await controller.promote() : await controller.rollback();
      const ok =
        outcome.state === 'promoted' || outcome.state === 'rolled_back' || outcome.state === 'unchanged';
      return { status: ok ? 200 : 409, body: outcome };
    } catch (err) {
      return { status: 502, body: { error: errorMessage(err) } };
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    for (const f of this.followers.values()) await f.stop();
    for (const c of this.controllers.values()) await c.close();
    await this.tags;
    rmSync(path.join(resolvePath(this.loaded, this.config.storeDir), OWNER_FILE), { force: true });
  }

  private tag(event: RolloutEvent): void {
    const r = event.registered;
    if (!this.config.reportTags || !r || !TAGGED_STATES.has(event.state)) return;
    const prefix = `vigil.${event.device}`;
    const reason = event.reason ? `${event.reason}: ${event.message}` : event.message;
    // One after another, in the order of the events: a later decision's tags must never be
    // overwritten by an earlier event's write that happened to finish last.
    this.tags = this.tags.then(async () => {
      // A registry that is slow or restarting (a timeout, a 503) gets a few more tries: the tags
      // are how the ML engineer learns the verdict. A problem a person must fix is not retried.
      for (let attempt = 1; ; attempt++) {
        try {
          // The reason first: whoever sees the new state also sees its reason.
          await this.client.setVersionTag(r.name, r.version, `${prefix}.reason`, reason.slice(0, 4_000));
          await this.client.setVersionTag(r.name, r.version, `${prefix}.state`, event.state);
          return;
        } catch (err) {
          const again = err instanceof RegistryError && err.retryable && attempt < TAG_ATTEMPTS;
          if (again && !this.stopping.signal.aborted) {
            await sleep(500 * 2 ** (attempt - 1), this.stopping.signal);
            if (!this.stopping.signal.aborted) continue;
          }
          this.log.warn(
            { version: r.version, attempts: attempt, err: errorMessage(err) },
            `could not report ${event.state} of version ${r.version} to the registry: ${errorMessage(err)}`,
          );
          return;
        }
      }
    });
  }
}
