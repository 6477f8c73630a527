/**
 * The store's schema as an ordered list of migrations. The database's `user_version` pragma
 * holds the number of the last migration applied; opening a store applies the ones after it,
 * each in its own transaction. Never edit a migration that has shipped: append a new one.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'results and alerts',
    sql: `
      CREATE TABLE results (
        id            TEXT PRIMARY KEY,
        sample_id     TEXT NOT NULL,
        pipeline      TEXT NOT NULL,
        source        TEXT NOT NULL,
        origin        TEXT NOT NULL,
        received_at   INTEGER NOT NULL,
        produced_at   INTEGER NOT NULL,
        model_name    TEXT NOT NULL,
        model_version TEXT NOT NULL,
        backend       TEXT NOT NULL,
        provider      TEXT NOT NULL,
        label         TEXT NOT NULL,
        confidence    REAL NOT NULL,
        score         REAL NOT NULL,
        threshold     REAL NOT NULL,
        scores        TEXT NOT NULL,  -- JSON object label -> probability
        latency_ms    REAL NOT NULL,
        stages        TEXT NOT NULL,  -- JSON StageTimings
        alert_id      TEXT
      );
      CREATE INDEX results_produced_at ON results (produced_at);
      CREATE INDEX results_sample_id ON results (sample_id);

      CREATE TABLE alerts (
        id               TEXT PRIMARY KEY,
        result_id        TEXT NOT NULL,
        pipeline         TEXT NOT NULL,
        kind             TEXT NOT NULL,
        severity         TEXT NOT NULL,
        payload          TEXT NOT NULL,  -- JSON: the full Alert as published
        created_at       INTEGER NOT NULL,
        published_at     INTEGER,
        publish_attempts INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX alerts_created_at ON alerts (created_at);
      -- The outbox: only undelivered alerts, so that the replay on reconnect stays cheap
      -- however many delivered alerts are kept.
      CREATE INDEX alerts_unpublished ON alerts (created_at) WHERE published_at IS NULL;
    `,
  },
  {
    version: 2,
    description: 'telemetry readings',
    sql: `
      -- One row per reading from any telemetry source. The integer id is assigned by SQLite,
      -- never reused (AUTOINCREMENT), and orders readings by arrival: a stable key for a receiver
      -- to de-duplicate on. Strings stay plain columns rather than lookup tables: at 10k
      -- readings/s the insert is still far from the bottleneck (docs/BENCHMARKS.md).
      CREATE TABLE readings (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        source      TEXT NOT NULL,
        asset       TEXT NOT NULL,
        tag         TEXT NOT NULL,
        value       REAL,            -- NULL when quality is bad
        quality     TEXT NOT NULL,   -- good | uncertain | bad
        status      TEXT,            -- the protocol's status name when not plainly good
        source_time INTEGER,         -- ms since the epoch, as the device stamped it
        server_time INTEGER,         -- ms since the epoch, as an intermediate server stamped it
        received_at INTEGER NOT NULL -- ms since the epoch, when Vigil received it
      );
      CREATE INDEX readings_received_at ON readings (received_at);
    `,
  },
  {
    version: 3,
    description: 'telemetry results: asset and details',
    sql: `
      -- Results of telemetry pipelines score one window of one asset; frame results leave
      -- both NULL. details is JSON (TelemetryDetails: axis position, RUL or probability, top
      -- tags).
      ALTER TABLE results ADD COLUMN asset TEXT;
      ALTER TABLE results ADD COLUMN details TEXT;
      CREATE INDEX results_asset ON results (asset, produced_at) WHERE asset IS NOT NULL;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
