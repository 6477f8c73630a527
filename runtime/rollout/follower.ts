import type { KeyObject } from 'node:crypto';
import type { ModelRegistrySource, RegistryConfig } from '../config/registry.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelStore } from '../modelstore/store.js';
import { refusalReason, verifyPackage } from '../modelstore/verify.js';
import { AliasPoller } from '../registry/poller.js';
import { RegistryError, type ModelVersionInfo, type RegistryClient } from '../registry/types.js';
import type { RolloutController } from './controller.js';
import type { RolloutEvent } from './types.js';

/** Rejections that say something about the version itself: remembered in the model store. */
const PERMANENT = new Set<string>([
  'download_failed',
  'sha256_mismatch',
  'bad_package',
  'signature_missing',
  'signature_invalid',
  'load_failed',
  'incompatible',
  'acceptance_failed',
  'errors',
  'nan_output',
  'too_slow',
  'disagreement',
  'regression',
  'manual',
]);

export interface ModelFollowerOptions {
  /** The configured model (models.<name>). */
  model: string;
  source: ModelRegistrySource;
  deviceId: string;
  deviceGroup?: string | undefined;
  config: RegistryConfig;
  client: RegistryClient;
  store: ModelStore;
  controller: RolloutController;
  publicKeys: KeyObject[];
  log: Logger;
}

export interface FollowerStatus {
  registered: string;
  alias: string;
  poll: string;
  /** The registry version the alias pointed at in the last answer. */
  aliasVersion?: string | undefined;
  /** The registry version installed and serving (the model store's active one). */
  installedVersion?: string | undefined;
  lastError?: string | undefined;
  /** The wait before the next poll: the interval with jitter, or the back-off while failing. */
  nextPollMs?: number | undefined;
  pollRequests: number;
}

/**
 * Follows one alias of a registered model for one configured model: when the alias points at a
 * version this gateway has neither installed nor refused, it downloads it into the model store's
 * staging folder (resuming a download a restart interrupted), verifies it (sha256 of every file,
 * the signature policy), installs it atomically, and hands it to the rollout controller, which
 * tries it in shadow and promotes or rejects it. The model store remembers the outcome, so a
 * refused version is not pulled again on every poll and a restart serves the promoted version.
 */
export class ModelFollower {
  readonly alias: string;
  private readonly poller: AliasPoller;
  private lastError: string | undefined;
  private aliasVersion: string | undefined;
  private trial: Promise<void> | undefined;
  private stopped = false;
  /** Ends a download in progress when the daemon stops. */
  private readonly lifetime = new AbortController();
  /** Store updates, one after another. */
  private storeUpdates: Promise<void> = Promise.resolve();

  constructor(private readonly o: ModelFollowerOptions) {
    this.alias = (o.deviceGroup && o.source.aliasByGroup[o.deviceGroup]) || o.source.alias;
    this.poller = new AliasPoller({
      client: o.client,
      name: o.source.name,
      alias: this.alias,
      config: o.config,
      log: o.log,
      known: o.store.active(o.model),
      onVersion: (info) => this.offer(info),
    });
  }

  start(): void {
    this.o.log.info(
      { registered: this.o.source.name, alias: this.alias },
      `model ${this.o.model} follows ${this.o.source.name}@${this.alias} in the registry`,
    );
    this.poller.start();
  }

  /**
   * Asks the registry now (the CLI's `models pull` / POST .../check on a running daemon): answers
   * with the version the alias points at after one request; a new version is then downloaded and
   * tried in the background, as after a scheduled poll.
   */
  async checkNow(): Promise<ModelVersionInfo> {
    const info = await this.o.client.versionByAlias(this.o.source.name, this.alias);
    this.poller.pollNow().catch(() => undefined);
    return info;
  }

  /** Stops polling and ends a download in progress (it resumes from staging after a restart). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.lifetime.abort();
    await this.poller.stop();
    await this.storeUpdates;
  }

  status(): FollowerStatus {
    return {
      registered: this.o.source.name,
      alias: this.alias,
      poll: this.poller.state,
      aliasVersion: this.aliasVersion,
      installedVersion: this.o.store.active(this.o.model),
      // A failing poll (the registry down, answering 500) first, else a failed download or install.
      lastError: this.poller.lastError?.message ?? this.lastError,
      nextPollMs: this.poller.nextDelayMs,
      pollRequests: this.poller.requests,
    };
  }

  /**
   * Told about every rollout event of this model: the model store follows the host, so that a
   * restart serves what was promoted and never a version that was rejected or rolled back.
   * Updates run one after another, in the order of the events.
   */
  onEvent(event: RolloutEvent): Promise<void> {
    this.storeUpdates = this.storeUpdates.then(() => this.applyEvent(event));
    return this.storeUpdates;
  }

  private async applyEvent(event: RolloutEvent): Promise<void> {
    const v = event.registered?.version;
    if (!v || event.registered?.name !== this.o.source.name) return;
    const { store, model, log, config } = this.o;
    try {
      if (event.state === 'promoted') {
        await store.activate(model, v);
        const removed = await store.prune(model, config.keepVersions);
        if (removed.length > 0)
          log.info({ removed }, `older versions of model ${model} removed from the store`);
      } else if (event.state === 'rejected') {
        if (event.reason && !PERMANENT.has(event.reason)) {
          // Not the version's fault (too few inputs to judge it): offered again at a later poll.
          this.poller.forget(v);
          log.info(
            { version: v, reason: event.reason },
            `version ${v} is tried again when the registry next offers it`,
          );
        } else if (!store.isRejected(model, v)) {
          await store.markRejected(model, v, event.reason ?? 'rejected', event.message);
        }
      } else if (event.state === 'rolled_back') {
        // `registered` names the version rolled back from: refused from now on, so that a restart
        // never serves it again; the store then serves the one before it, or (none left) the
        // daemon falls back to the config's package.
        if (store.active(model) === v && store.previous(model))
          await store.rollback(model, event.reason ?? 'regression', event.message);
        else if (!store.isRejected(model, v))
          await store.markRejected(model, v, event.reason ?? 'regression', event.message);
      }
    } catch (err) {
      log.error(
        { err: errorMessage(err), version: v },
        `model store not updated after ${event.state}: ${errorMessage(err)}`,
      );
    }
  }

  /**
   * A version the alias points at. Download, verification and install are awaited (the poller
   * waits meanwhile, and offers the version again if this throws: a registry that failed mid-
   * download is retried at the next poll, resuming); the shadow trial runs in the background.
   */
  private async offer(info: ModelVersionInfo): Promise<void> {
    const { store, model, controller, log } = this.o;
    this.aliasVersion = info.version;
    if (this.stopped || store.active(model) === info.version) return;
    if (store.isRejected(model, info.version)) {
      const r = store.rejection(model, info.version);
      log.warn(
        { version: info.version, reason: r?.reason },
        `${this.o.source.name}@${this.alias} points at version ${info.version}, which this gateway refused (${r?.reason ?? 'rejected'}); waiting for another version`,
      );
      return;
    }
    const registered = { name: this.o.source.name, alias: this.alias, version: info.version };
    const ref = { version: info.version, registered };
    if (!store.isInstalled(model, info.version)) {
      controller.setState('downloading', ref);
      const staging = store.stagingDir(model, info.version);
      try {
        const got = await this.o.client.downloadVersion(info, staging, { signal: this.lifetime.signal });
        log.info(
          {
            version: info.version,
            files: got.files.length,
            bytes: got.bytes,
            resumedBytes: got.resumedBytes,
          },
          `version ${info.version} of ${this.o.source.name} downloaded`,
        );
      } catch (err) {
        if (this.stopped) return;
        this.lastError = errorMessage(err);
        // Only a version whose artifacts are missing or malformed is refused for good. A registry
        // that failed or refused our credentials, or a full disk, is tried again at the next
        // poll, resuming from what is in staging.
        if (!(err instanceof RegistryError) || err.retryable || err.kind === 'auth') {
          log.warn(
            { version: info.version, err: this.lastError },
            `download of version ${info.version} did not finish; it resumes at the next poll: ${this.lastError}`,
          );
          throw err;
        }
        controller.fail(
          ref,
          'download_failed',
          `version ${info.version} could not be downloaded: ${this.lastError}`,
        );
        return;
      }
      if (this.stopped) return;
      controller.setState('verifying', ref);
      try {
        const policy = this.o.config.signatures.policy;
        await store.install(model, info.version, staging, async (dir) => {
          await verifyPackage(dir, { policy, publicKeys: this.o.publicKeys });
        });
      } catch (err) {
        if (this.stopped) return;
        this.lastError = errorMessage(err);
        const reason = refusalReason(err);
        if (!reason) {
          // Not the package's fault (a full disk, a permission): tried again at the next poll.
          log.error(
            { version: info.version, err: this.lastError },
            `version ${info.version} could not be installed: ${this.lastError}`,
          );
          throw err;
        }
        controller.fail(ref, reason, `version ${info.version} refused: ${this.lastError}`);
        return;
      }
    }
    if (this.stopped) return;
    this.lastError = undefined;
    const packageDir = store.packageDir(model, info.version);
    this.trial = controller.tryVersion({ packageDir, registered }).then(
      (outcome) => log.info({ version: info.version, outcome: outcome.state }, outcome.message),
      (err: unknown) =>
        log.error(
          { err: errorMessage(err) },
          `trial of version ${info.version} failed: ${errorMessage(err)}`,
        ),
    );
  }

  /** Resolves once the trial started last is decided (tests). */
  async settled(): Promise<void> {
    await this.trial;
  }
}
