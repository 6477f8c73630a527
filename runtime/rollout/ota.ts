import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { resolvePath, type LoadedConfig } from '../config/load.js';
import type { RegistryConfig } from '../config/registry.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelHost } from '../model/host.js';
import { loadPublicKeys } from '../model/signature.js';
import { ModelStore } from '../modelstore/store.js';
import type { ModelAction } from '../ops/http.js';
import { MlflowRegistryClient } from '../registry/mlflow.js';
import type { RegistryClient } from '../registry/types.js';
import { RolloutController } from './controller.js';
import { ModelFollower } from './follower.js';
import type { RolloutEvent } from './types.js';

/** States worth writing back to the registry: where a version is on its way, and how it ended. */
const TAGGED_STATES = new Set(['shadow', 'promoted', 'rejected', 'rolled_back']);

/**
 * Over-the-air rollout for the daemon: the registry client, the on-disk model store, and per
 * model that follows a registered model its rollout controller and follower. Rollout events are
 * published (the daemon's callback), mirrored into the model store, and written back to the
 * registry as tags of the model version, `vigil.<device>.state` and `vigil.<device>.reason`.
 */
export class ModelRollouts {
  private readonly controllers = new Map<string, RolloutController>();
  private readonly followers = new Map<string, ModelFollower>();

  private constructor(
    private readonly loaded: LoadedConfig,
    private readonly config: RegistryConfig,
    readonly client: RegistryClient,
    readonly store: ModelStore,
    private readonly publicKeys: KeyObject[],
    private readonly log: Logger,
  ) {}

  /** Undefined when the config has no registry: section. */
  static async open(loaded: LoadedConfig, log: Logger): Promise<ModelRollouts | undefined> {
    const config = loaded.config.registry;
    if (!config) return undefined;
    const baseDir = path.dirname(loaded.file);
    const rlog = log.child({ component: 'registry' });
    const client = new MlflowRegistryClient(config, { baseDir, log: rlog });
    const store = await ModelStore.open(resolvePath(loaded, config.storeDir), rlog);
    const publicKeys = await loadPublicKeys(config.signatures.publicKeys, baseDir);
    return new ModelRollouts(loaded, config, client, store, publicKeys, rlog);
  }

  /**
   * The package a model serves at start: the version its registry follower promoted last (kept in
   * the model store), else the config's package.
   */
  packageFor(model: string): string {
    const mc = this.loaded.config.models[model]!;
    const active = mc.registry ? this.store.active(model) : undefined;
    if (active && this.store.isInstalled(model, active) && !this.store.isRejected(model, active))
      return this.store.packageDir(model, active);
    return resolvePath(this.loaded, mc.package);
  }

  /** Sets up the rollout of one model that follows the registry; `publish` sends its events on MQTT. */
  attach(model: string, host: ModelHost, budgetMs: number, publish: (event: RolloutEvent) => void): void {
    const mc = this.loaded.config.models[model]!;
    if (!mc.registry) return;
    const log = this.log.child({ model });
    const controller = new RolloutController({
      model,
      deviceId: this.loaded.config.device.id,
      host,
      policy: mc.rollout,
      budgetMs,
      log,
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
    for (const f of this.followers.values()) await f.stop();
    for (const c of this.controllers.values()) await c.close();
  }

  private tag(event: RolloutEvent): void {
    const r = event.registered;
    if (!this.config.reportTags || !r || !TAGGED_STATES.has(event.state)) return;
    const prefix = `vigil.${event.device}`;
    const reason = event.reason ? `${event.reason}: ${event.message}` : event.message;
    void (async () => {
      try {
        await this.client.setVersionTag(r.name, r.version, `${prefix}.state`, event.state);
        await this.client.setVersionTag(r.name, r.version, `${prefix}.reason`, reason.slice(0, 4_000));
      } catch (err) {
        this.log.warn(
          { version: r.version, err: errorMessage(err) },
          `could not report ${event.state} of version ${r.version} to the registry: ${errorMessage(err)}`,
        );
      }
    })();
  }
}
