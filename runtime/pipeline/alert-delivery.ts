import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { AlertPublisher } from './pipeline.js';
import type { Alert } from './result.js';

/**
 * Hands stored alerts to the publisher without holding up the pipeline, and keeps track of the
 * publishes in flight so that a pipeline can wait for them (idle, stop). A failed publish is
 * counted and logged once per alert; the alert stays in the store and the publisher re-sends it
 * when the broker is back. Shared by the frame and telemetry pipelines.
 */
export class AlertDelivery {
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly publisher: AlertPublisher,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /**
   * Publishes `alert`; `onAcked` runs with the time the broker's acknowledgement came back.
   * `resultId`, when given, is logged with it, so that the alert's log lines join the result's.
   */
  send(alert: Alert, onAcked: (ackedAt: number) => void, resultId?: string): void {
    const started = performance.now();
    const p = this.publisher
      .publishAlert(alert)
      .then(() => {
        const ackedAt = performance.now();
        if (this.log.isLevelEnabled('debug')) {
          this.log.debug(
            {
              alertId: alert.id,
              sampleId: alert.sampleId,
              ...(resultId !== undefined ? { resultId } : {}),
              kind: alert.kind,
              publishMs: Math.round((ackedAt - started) * 100) / 100,
            },
            'alert published',
          );
        }
        onAcked(ackedAt);
      })
      .catch((err: unknown) => {
        this.metrics.publishErrors.inc();
        this.log.warn(
          { alertId: alert.id, sampleId: alert.sampleId, err: errorMessage(err) },
          'alert not published now; it stays in the store and is sent when the broker is back',
        );
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  /** Resolves once every publish started so far has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }
}
