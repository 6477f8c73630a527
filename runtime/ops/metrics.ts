import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Latency buckets in seconds: fine around the 100 ms budget, coarse beyond. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5];

/**
 * Every Prometheus metric Vigil exports, in one place so that names stay consistent. Metric
 * names are a public contract (docs/METRICS.md).
 */
export class Metrics {
  readonly registry = new Registry();

  readonly framesIn = new Counter({
    name: 'vigil_frames_in_total',
    help: 'Frames accepted by a source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly inputErrors = new Counter({
    name: 'vigil_input_errors_total',
    help: 'Inputs refused by a source or its pipeline, by reason',
    labelNames: ['source', 'reason'] as const,
    registers: [this.registry],
  });
  readonly processed = new Counter({
    name: 'vigil_samples_processed_total',
    help: 'Samples that went through a pipeline to a stored result',
    labelNames: ['pipeline'] as const,
    registers: [this.registry],
  });
  readonly dropped = new Counter({
    name: 'vigil_samples_dropped_total',
    help: 'Samples dropped by a pipeline, by reason (superseded, deadline, decode_error, inference_error, store_error, model_unavailable, shutdown)',
    labelNames: ['pipeline', 'reason'] as const,
    registers: [this.registry],
  });
  readonly budgetExceeded = new Counter({
    name: 'vigil_budget_exceeded_total',
    help: 'Samples whose end-to-end latency exceeded the pipeline budget',
    labelNames: ['pipeline'] as const,
    registers: [this.registry],
  });
  readonly stageSeconds = new Histogram({
    name: 'vigil_stage_duration_seconds',
    help: 'Time spent per pipeline stage (queue, decode, preprocess, inference, postprocess, store, publish)',
    labelNames: ['pipeline', 'stage'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly e2eSeconds = new Histogram({
    name: 'vigil_latency_seconds',
    help: 'From sample arrival to result stored',
    labelNames: ['pipeline'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly alertSeconds = new Histogram({
    name: 'vigil_alert_latency_seconds',
    help: 'From frame arrival to the broker acknowledging the alert (PUBACK)',
    labelNames: ['pipeline'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly alerts = new Counter({
    name: 'vigil_alerts_total',
    help: 'Alerts raised, by kind',
    labelNames: ['pipeline', 'kind'] as const,
    registers: [this.registry],
  });
  readonly alertsPublished = new Counter({
    name: 'vigil_alerts_published_total',
    help: 'Alerts acknowledged by the MQTT broker',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly publishErrors = new Counter({
    name: 'vigil_publish_errors_total',
    help: 'Alert publications that failed (they stay in the store and are retried on reconnect)',
    registers: [this.registry],
  });
  readonly modelInfo = new Gauge({
    name: 'vigil_model_info',
    help: 'Loaded models: 1 per configured model (name) with its manifest name (model), version, engine backend and the execution provider in use',
    labelNames: ['model', 'version', 'backend', 'provider', 'name'] as const,
    registers: [this.registry],
  });
  readonly modelReady = new Gauge({
    name: 'vigil_model_ready',
    help: '1 once the model is loaded and warmed up',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly modelLoadErrors = new Counter({
    name: 'vigil_model_load_errors_total',
    help: 'Models that failed to load or verify, by error code',
    labelNames: ['model', 'code'] as const,
    registers: [this.registry],
  });
  readonly modelRestarts = new Counter({
    name: 'vigil_model_restarts_total',
    help: 'Engines replaced after their worker failed',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly sourceUp = new Gauge({
    name: 'vigil_source_up',
    help: '1 while the source is up',
    labelNames: ['source', 'type'] as const,
    registers: [this.registry],
  });
  readonly sourceReconnects = new Counter({
    name: 'vigil_source_reconnects_total',
    help: 'Connections a source re-established after losing them (server restart, cable pull, broker outage)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly readings = new Counter({
    name: 'vigil_readings_total',
    help: 'Telemetry readings accepted from a source, by quality (good, uncertain, bad)',
    labelNames: ['source', 'quality'] as const,
    registers: [this.registry],
  });
  readonly lastReading = new Gauge({
    name: 'vigil_source_last_reading_timestamp_seconds',
    help: 'When the source last delivered an accepted reading (Unix time); stale sources stand out',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly readingsStored = new Counter({
    name: 'vigil_readings_stored_total',
    help: 'Telemetry readings written to the store',
    registers: [this.registry],
  });
  readonly readingsPending = new Gauge({
    name: 'vigil_readings_pending',
    help: 'Accepted readings not yet written to the store',
    registers: [this.registry],
  });
  readonly readingsStoreErrors = new Counter({
    name: 'vigil_readings_store_errors_total',
    help: 'Batch writes of readings the store refused (the batch is kept and retried)',
    registers: [this.registry],
  });
  readonly readingsDropped = new Counter({
    name: 'vigil_readings_dropped_total',
    help: 'Accepted readings dropped before they were stored, by reason (store_backlog, store_rejected, shutdown)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly readingsWriteSeconds = new Histogram({
    name: 'vigil_readings_write_seconds',
    help: 'Time to write one batch of readings to the store',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly windowsScored = new Counter({
    name: 'vigil_windows_scored_total',
    help: 'Telemetry windows scored by a model and stored, per pipeline',
    labelNames: ['pipeline'] as const,
    registers: [this.registry],
  });
  readonly windowsSkipped = new Counter({
    name: 'vigil_windows_skipped_total',
    help: 'Telemetry windows due but not scored, by reason (gap, stale, bad_quality, superseded, model_unavailable, inference_error, store_error, shutdown)',
    labelNames: ['pipeline', 'reason'] as const,
    registers: [this.registry],
  });
  readonly windowReadingsDropped = new Counter({
    name: 'vigil_window_readings_dropped_total',
    help: 'Readings of a model tag that could not be placed in a window, by reason (out_of_order, duplicate, no_axis); they are still stored',
    labelNames: ['pipeline', 'reason'] as const,
    registers: [this.registry],
  });
  readonly windowResets = new Counter({
    name: 'vigil_window_resets_total',
    help: 'Assets whose counter axis went backwards (an engine replaced) and whose windows started afresh',
    labelNames: ['pipeline'] as const,
    registers: [this.registry],
  });
  readonly windowSeconds = new Histogram({
    name: 'vigil_window_latency_seconds',
    help: 'From a telemetry window being ready (its last step final) to its result stored',
    labelNames: ['pipeline'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly alertsCleared = new Counter({
    name: 'vigil_alerts_cleared_total',
    help: 'Telemetry alerts cleared (the score came back past alert.clear), by kind',
    labelNames: ['pipeline', 'kind'] as const,
    registers: [this.registry],
  });
  readonly activeAlerts = new Gauge({
    name: 'vigil_alerts_active',
    help: 'Telemetry alerts raised and not yet cleared (one per asset at most), per pipeline',
    labelNames: ['pipeline'] as const,
    registers: [this.registry],
  });
  readonly mqttConnected = new Gauge({
    name: 'vigil_mqtt_connected',
    help: '1 while connected to the alert broker',
    registers: [this.registry],
  });

  readonly ingestDuplicates = new Counter({
    name: 'vigil_ingest_duplicates_total',
    help: 'Redelivered input batches (MQTT QoS 1 after a crash or a lost acknowledgement) recognised as already stored and not stored again',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly storeRecoveries = new Counter({
    name: 'vigil_store_recoveries_total',
    help: 'Damaged database files found at start, moved aside and replaced by a new store',
    registers: [this.registry],
  });
  readonly storeClassBytes = new Gauge({
    name: 'vigil_store_class_bytes',
    help: 'Disk space used by one class of data (alerts, results, readings), as SQLite accounts it',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly storeQuotaBytes = new Gauge({
    name: 'vigil_store_quota_bytes',
    help: 'Disk quota of one class of data (store.quotaMiB)',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly storeEvicted = new Counter({
    name: 'vigil_store_evicted_total',
    help: 'Rows evicted to stay within a quota or the free-disk floor, by class and whether they had been delivered upstream (delivered="false" is data lost by policy)',
    labelNames: ['class', 'delivered', 'reason'] as const,
    registers: [this.registry],
  });
  readonly upstreamConnected = new Gauge({
    name: 'vigil_upstream_connected',
    help: '1 while connected to the upstream broker',
    registers: [this.registry],
  });
  readonly upstreamBacklogRows = new Gauge({
    name: 'vigil_upstream_backlog_rows',
    help: 'Rows stored and not yet acknowledged by the upstream broker, by class',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly upstreamBacklogAge = new Gauge({
    name: 'vigil_upstream_backlog_age_seconds',
    help: 'Age of the oldest row not yet acknowledged by the upstream broker, by class (0 when none waits)',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly upstreamOldestUndelivered = new Gauge({
    name: 'vigil_upstream_oldest_undelivered_seq',
    help: 'seq of the oldest row not yet acknowledged upstream, by class (0 when none waits)',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly upstreamLastDelivery = new Gauge({
    name: 'vigil_upstream_last_delivery_timestamp_seconds',
    help: 'When the upstream broker last acknowledged rows of this class (Unix time)',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly upstreamRowsDelivered = new Counter({
    name: 'vigil_upstream_rows_delivered_total',
    help: 'Rows acknowledged by the upstream broker, by class',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly upstreamMessages = new Counter({
    name: 'vigil_upstream_messages_total',
    help: 'Messages sent upstream, by class and outcome (acked, failed: resent later)',
    labelNames: ['class', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamDrainRate = new Gauge({
    name: 'vigil_upstream_drain_rows_per_second',
    help: 'Rows acknowledged upstream per second, over the last 10 s',
    registers: [this.registry],
  });

  readonly driftScore = new Gauge({
    name: 'vigil_drift_score',
    help: 'Latest drift measure of a pipeline, by feature (input.<name> or output.<name>) and test (psi, ks)',
    labelNames: ['pipeline', 'feature', 'test'] as const,
    registers: [this.registry],
  });
  readonly driftActive = new Gauge({
    name: 'vigil_drift_active',
    help: 'Whether a drift alert is raised and not yet cleared for the pipeline (0 or 1)',
    labelNames: ['pipeline'] as const,
    registers: [this.registry],
  });
  readonly driftAlerts = new Counter({
    name: 'vigil_drift_alerts_total',
    help: 'Drift alerts, by state (raised, cleared)',
    labelNames: ['pipeline', 'state'] as const,
    registers: [this.registry],
  });

  // Data expectations (docs/DATA-QUALITY.md). The tag label only takes tags named in a source's
  // expectations, so its cardinality is bounded by the config.
  readonly expectationViolations = new Counter({
    name: 'vigil_expectation_violations_total',
    help: 'Readings, payloads and frames that broke a data expectation, by source, rule and tag (empty for payload and frame rules)',
    labelNames: ['source', 'rule', 'tag'] as const,
    registers: [this.registry],
  });
  readonly dataQualityActive = new Gauge({
    name: 'vigil_data_quality_active',
    help: 'data_quality alerts raised and not yet cleared, by source and rule',
    labelNames: ['source', 'rule'] as const,
    registers: [this.registry],
  });
  readonly dataQualityAlerts = new Counter({
    name: 'vigil_data_quality_alerts_total',
    help: 'data_quality alerts, by source, rule and state (raised, cleared)',
    labelNames: ['source', 'rule', 'state'] as const,
    registers: [this.registry],
  });
  readonly payloadSchemaChanges = new Counter({
    name: 'vigil_payload_schema_changes_total',
    help: 'JSON payloads whose fields changed shape (added, removed or of another type) from the previous payload of the same subscription and asset',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  // Model acceptance tests before a version may enter shadow (docs/ACCEPTANCE.md).
  readonly modelAcceptance = new Counter({
    name: 'vigil_model_acceptance_total',
    help: 'Acceptance test runs of new model versions, by outcome (passed, failed, error, none: the version declares no tests)',
    labelNames: ['model', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly modelAcceptanceSeconds = new Histogram({
    name: 'vigil_model_acceptance_duration_seconds',
    help: "Time to run a new model version's acceptance tests on this gateway",
    labelNames: ['model'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'vigil_process_' });
  }
}
