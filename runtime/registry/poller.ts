import { Backoff } from '../backoff.js';
import type { RegistryConfig } from '../config/registry.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { RegistryError, type ModelVersionInfo, type RegistryClient } from './types.js';

/**
 * Follows one alias of one registered model: a single GET per poll (the version the alias points
 * at), spread over time with jitter so that a fleet does not poll in step, and backed off while
 * the registry is down. Hands on a version only when it differs from the last one handed on.
 */

export type PollerState =
  /** No poll answered yet. */
  | 'starting'
  /** The alias resolves to a version. */
  | 'ok'
  /** The model or the alias does not exist (yet): polled at the normal interval. */
  | 'not_found'
  /** The registry refuses us (credentials, permissions, answers that are not MLflow's). */
  | 'refused'
  /** Unreachable, timing out or 5xx: polled with back-off. */
  | 'failing'
  | 'stopped';

export interface AliasPollerOptions {
  client: RegistryClient;
  /** Registered model name and alias followed. */
  name: string;
  alias: string;
  config: Pick<RegistryConfig, 'pollIntervalSeconds' | 'backoff'>;
  log: Logger;
  /**
   * A version the alias now points at that differs from the last one handed on, READY. Awaited
   * (polls wait meanwhile, so keep it short: start the work and return); when it throws or
   * rejects, the same version is offered again at the next poll.
   */
  onVersion: (info: ModelVersionInfo) => void | Promise<void>;
  /** The version already in use (say, installed before a restart), so it is not offered again. */
  known?: string;
  /** For tests: the jitter's and back-off's randomness. */
  random?: () => number;
}

export class AliasPoller {
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private timer: NodeJS.Timeout | undefined;
  private plannedDelay: number | undefined;
  private inFlight: Promise<ModelVersionInfo | undefined> | undefined;
  private lastSeen: string | undefined;
  private current: PollerState = 'starting';
  private error: RegistryError | undefined;
  private running = false;
  /** Set by stop(): a poll still in flight then hands nothing on. */
  private stopped = false;
  private requestCount = 0;
  /** Last alias target logged, so that a change of target is logged once. */
  private loggedVersion: string | undefined;

  constructor(private readonly options: AliasPollerOptions) {
    this.random = options.random ?? Math.random;
    this.backoff = new Backoff(
      { initialMs: options.config.backoff.initialDelayMs, maxMs: options.config.backoff.maxDelayMs },
      this.random,
    );
    this.lastSeen = options.known;
  }

  /** Polls now, then keeps polling until stop(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = false;
    if (this.current === 'stopped') this.current = 'starting';
    this.schedule(0);
  }

  /** Stops polling; resolves once a poll in progress (at most one request) has finished. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
    this.current = 'stopped';
  }

  /**
   * One poll now (joining one already in progress), for the CLI and tests: resolves with the
   * version the alias points at, rejects with the RegistryError; the regular schedule restarts
   * from here.
   */
  async pollNow(): Promise<ModelVersionInfo | undefined> {
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.inFlight ?? this.poll();
  }

  get state(): PollerState {
    return this.current;
  }

  /** The error of the last poll, if it failed. */
  get lastError(): RegistryError | undefined {
    return this.error;
  }

  /** The version last handed to onVersion (or `known`). */
  get lastVersion(): string | undefined {
    return this.lastSeen;
  }

  /**
   * Offers `version` again at the next poll, should the alias still point at it (a trial that
   * could not judge it, for want of inputs).
   */
  forget(version: string): void {
    if (this.lastSeen === version) this.lastSeen = undefined;
  }

  /** The wait before the next poll, as planned after the last one: interval with jitter, or back-off. */
  get nextDelayMs(): number | undefined {
    return this.plannedDelay;
  }

  /** Registry requests made so far (one per poll). */
  get requests(): number {
    return this.requestCount;
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.poll().catch(() => undefined);
    }, ms);
  }

  /** Normal interval with 0–20 % jitter, or the back-off while the registry fails. */
  private nextDelay(): number {
    if (this.current === 'failing') return this.backoff.next();
    return this.options.config.pollIntervalSeconds * 1000 * (1 + this.random() * 0.2);
  }

  private poll(): Promise<ModelVersionInfo | undefined> {
    const run = this.pollOnce().finally(() => {
      this.inFlight = undefined;
      this.plannedDelay = this.nextDelay();
      if (this.running && !this.timer) this.schedule(this.plannedDelay);
    });
    this.inFlight = run;
    return run;
  }

  private async pollOnce(): Promise<ModelVersionInfo | undefined> {
    const { client, name, alias, log } = this.options;
    const target = `${name}@${alias}`;
    let info: ModelVersionInfo;
    this.requestCount += 1;
    try {
      info = await client.versionByAlias(name, alias);
    } catch (err) {
      const error =
        err instanceof RegistryError
          ? err
          : new RegistryError('invalid', `registry poll of ${target} failed: ${errorMessage(err)}`);
      const next: PollerState = error.retryable
        ? 'failing'
        : error.kind === 'not_found'
          ? 'not_found'
          : 'refused';
      if (next !== this.current || (next !== 'failing' && this.error?.message !== error.message)) {
        const retry =
          next === 'failing'
            ? 'retrying with back-off'
            : `checking again every ${this.options.config.pollIntervalSeconds} s`;
        log.warn(
          { model: name, alias, kind: error.kind, errorCode: error.errorCode },
          `registry: ${target}: ${error.message}; ${retry}`,
        );
      }
      this.current = next;
      this.error = error;
      throw error;
    }

    const recovered = this.current !== 'ok' && this.current !== 'starting';
    if (this.loggedVersion !== info.version) {
      const waiting = info.status === 'READY' ? '' : ` (${info.status}, waiting until READY)`;
      log.info(
        { model: name, alias, version: info.version, status: info.status },
        `registry: ${target} points at version ${info.version}${waiting}`,
      );
      this.loggedVersion = info.version;
    } else if (recovered) {
      log.info(
        { model: name, alias, version: info.version },
        `registry: answers again; ${target} is still version ${info.version}`,
      );
    }
    this.current = 'ok';
    this.error = undefined;
    this.backoff.reset();

    if (info.status === 'READY' && info.version !== this.lastSeen && !this.stopped) {
      try {
        await this.options.onVersion(info);
        this.lastSeen = info.version;
      } catch (err) {
        log.error(
          { model: name, alias, version: info.version, err: errorMessage(err) },
          `registry: handling ${target} version ${info.version} failed: ${errorMessage(err)}; offered again at the next poll`,
        );
      }
    }
    return info;
  }
}
