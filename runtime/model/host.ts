import type { Engine, EngineOptions } from '../engines/engine.js';
import { loadEngine } from '../engines/load.js';
import type { WorkerEngine } from '../engines/worker-engine.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelHealth } from '../ops/http.js';
import type { Metrics } from '../ops/metrics.js';

const RELOAD_FIRST_DELAY_MS = 1_000;
const RELOAD_MAX_DELAY_MS = 60_000;

/**
 * One configured model and the engine serving it: loads it, reports why it is not serving when
 * it is not, and replaces an engine whose worker failed. Pipelines ask it for the engine to use
 * at each frame, so a reload (and later a rollout) never needs a pipeline restart.
 */
export class ModelHost {
  private engine: WorkerEngine | undefined;
  /** Why the model is not serving, when it is not. */
  private error: { code: string; message: string } | undefined;
  private restarts = 0;
  /** A reload after an engine failure, while under way; close() waits for it. */
  private reloading: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly name: string,
    readonly packageDir: string,
    private readonly options: EngineOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** The engine to run now, or undefined while the model is unavailable (even before supervision notices). */
  current(): Engine | undefined {
    return this.engine?.failure ? undefined : this.engine;
  }

  /**
   * Loads the package. A model that fails to load or verify does not take the gateway down: its
   * pipelines drop frames as model_unavailable, /readyz says why, and everything else keeps
   * serving. Resolves true when the model serves.
   */
  async load(): Promise<boolean> {
    try {
      const engine = await loadEngine(this.packageDir, this.options, this.log);
      if (this.closed) {
        // close() came while this load was under way: nobody else would close this engine.
        await engine.close().catch(() => undefined);
        return false;
      }
      this.engine = engine;
      this.error = undefined;
      const m = engine.manifest;
      this.metrics.modelInfo.set(
        { model: m.name, version: m.version, backend: engine.backend, provider: engine.provider },
        1,
      );
      this.metrics.modelReady.set({ model: this.name }, 1);
      return true;
    } catch (err) {
      const code = err instanceof VigilError ? err.code : 'VIGIL_ERR_MODEL_LOAD';
      this.engine = undefined;
      this.error = { code, message: errorMessage(err) };
      this.metrics.modelReady.set({ model: this.name }, 0);
      this.metrics.modelLoadErrors.inc({ model: this.name, code });
      this.log.error(
        { package: this.packageDir, code },
        `model ${this.name} is not serving: ${errorMessage(err)}`,
      );
      return false;
    }
  }

  /**
   * Called periodically: an engine whose worker failed or hung is replaced by a fresh one, with
   * back-off between attempts, so that the gateway heals without an outside supervisor.
   */
  supervise(): void {
    const failure = this.engine?.failure;
    if (!failure || this.reloading || this.closed) return;
    const dead = this.engine!;
    this.engine = undefined;
    this.error = { code: failure.code, message: failure.message };
    this.metrics.modelReady.set({ model: this.name }, 0);
    this.metrics.modelRestarts.inc({ model: this.name });
    this.log.error(
      { code: failure.code },
      `model ${this.name} engine failed (${failure.message}); reloading it`,
    );
    this.reloading = (async () => {
      await dead.close().catch(() => undefined);
      let delay = RELOAD_FIRST_DELAY_MS;
      while (!this.closed && !(await this.load())) {
        await new Promise((r) => setTimeout(r, delay).unref());
        delay = Math.min(delay * 2, RELOAD_MAX_DELAY_MS);
      }
      this.restarts++;
      this.reloading = undefined;
    })();
  }

  health(): ModelHealth & { restarts: number } {
    const e = this.engine;
    return {
      name: this.name,
      package: this.packageDir,
      model: e?.manifest.name,
      version: e?.manifest.version,
      backend: e?.backend,
      provider: e?.provider,
      ready: e !== undefined && !e.failure,
      error: this.error,
      restarts: this.restarts,
    };
  }

  /** Stops reloading and closes the engine; the caller bounds how long it may take. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.reloading) await this.reloading;
    const engine = this.engine;
    this.engine = undefined;
    if (engine) await engine.close();
  }
}
