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
  {
    version: 4,
    description: 'store-and-forward: seqs, store id, forward cursors, ingest marks',
    sql: `
      -- Results and alerts get an integer seq (AUTOINCREMENT: only grows, never reused, even
      -- after every row was deleted) that orders them for forwarding upstream and that the
      -- forward cursors point at; their UUID id stays, UNIQUE. SQLite cannot add such a column
      -- in place, so both tables are rebuilt, their rows copied in arrival (rowid) order so
      -- that the seqs follow it. Readings already have such a key: their id.
      CREATE TABLE results_v4 (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT NOT NULL UNIQUE,
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
        alert_id      TEXT,
        asset         TEXT,
        details       TEXT            -- JSON TelemetryDetails
      );
      INSERT INTO results_v4 (id, sample_id, pipeline, source, origin, received_at, produced_at,
          model_name, model_version, backend, provider, label, confidence, score, threshold,
          scores, latency_ms, stages, alert_id, asset, details)
        SELECT id, sample_id, pipeline, source, origin, received_at, produced_at,
          model_name, model_version, backend, provider, label, confidence, score, threshold,
          scores, latency_ms, stages, alert_id, asset, details
        FROM results ORDER BY rowid;
      DROP TABLE results;
      ALTER TABLE results_v4 RENAME TO results;
      CREATE INDEX results_produced_at ON results (produced_at);
      CREATE INDEX results_sample_id ON results (sample_id);
      CREATE INDEX results_asset ON results (asset, produced_at) WHERE asset IS NOT NULL;

      CREATE TABLE alerts_v4 (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        result_id        TEXT NOT NULL,
        pipeline         TEXT NOT NULL,
        kind             TEXT NOT NULL,
        severity         TEXT NOT NULL,
        payload          TEXT NOT NULL,  -- JSON: the full Alert as published
        created_at       INTEGER NOT NULL,
        published_at     INTEGER,        -- acknowledged by the local broker (the outbox)
        publish_attempts INTEGER NOT NULL DEFAULT 0
      );
      INSERT INTO alerts_v4 (id, result_id, pipeline, kind, severity, payload, created_at,
          published_at, publish_attempts)
        SELECT id, result_id, pipeline, kind, severity, payload, created_at, published_at,
          publish_attempts
        FROM alerts ORDER BY rowid;
      DROP TABLE alerts;
      ALTER TABLE alerts_v4 RENAME TO alerts;
      CREATE INDEX alerts_created_at ON alerts (created_at);
      CREATE INDEX alerts_unpublished ON alerts (created_at) WHERE published_at IS NULL;

      -- 'store_id': a UUID written once when the store is created (by the code that opens it),
      -- sent with every upstream message; a new database file gets a new one.
      CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );

      -- Per data class, the highest seq the upstream broker acknowledged (every row up to it
      -- was delivered) and when. Only grows.
      CREATE TABLE forward_cursors (
        class        TEXT PRIMARY KEY,   -- alerts | results | readings
        acked_seq    INTEGER NOT NULL,
        delivered_at INTEGER             -- ms since the epoch
      );

      -- The last batch stored for each delivery slot of a source that may redeliver (the MQTT
      -- packet id of a QoS 1 message), so that a redelivery after a crash is recognised and not
      -- stored twice. The slot is the key: a broker has at most 65535 packet ids per session, so
      -- the table stays bounded without any clean-up.
      CREATE TABLE ingest_marks (
        source TEXT NOT NULL,
        key    TEXT NOT NULL,
        hash   TEXT NOT NULL,
        at     INTEGER NOT NULL,         -- ms since the epoch, when recorded
        PRIMARY KEY (source, key)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    description: 'trace ids: readings trace_id and flags, results payload_sha256 and data_quality',
    sql: `
      -- ADD COLUMN only writes the schema: existing rows read NULL, and nothing is copied, so an
      -- old database of millions of readings opens as fast as before.
      -- trace_id: the id of the message a reading arrived in (docs/OBSERVABILITY.md, trace ids).
      -- flags: JSON array of the data expectations it broke (docs/DATA-QUALITY.md); NULL: none.
      -- No index on trace_id: it would cost every insert for a rare search; a UUIDv7 trace id
      -- carries its time, so a search narrows by received_at (indexed) first.
      ALTER TABLE readings ADD COLUMN trace_id TEXT;
      ALTER TABLE readings ADD COLUMN flags TEXT;
      -- payload_sha256: frames, sha256 (hex) of the image as it arrived (the frame is not stored).
      -- data_quality: JSON DataQualityFlag of an input scored under the 'flag' policy.
      ALTER TABLE results ADD COLUMN payload_sha256 TEXT;
      ALTER TABLE results ADD COLUMN data_quality TEXT;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
