import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { StoreConfig } from '../config/schema.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

/**
 * Opening the store's database: durability settings, detection of a damaged file, and recovery
 * by moving it aside.
 *
 * Durability. The database runs in WAL mode: the ops API reads while the pipelines write, and a
 * commit appends to the write-ahead log instead of rewriting pages. `store.synchronous` chooses
 * when a commit reaches the disk:
 *  - `full` (default): the WAL is fsynced at every commit, so a row acknowledged as stored (and
 *    an MQTT QoS 1 message acknowledged because of it) survives a power cut. Measured on the
 *    development VM's virtio disk: ~150-190 µs per one-row commit against ~30-35 µs with
 *    `normal`; ~420-460 µs against ~300-340 µs for a 100-reading batch (5-7k against 26-34k
 *    one-row commits/s, ~220k against ~300k readings/s in 100-row batches). On eMMC or SD
 *    cards an fsync costs milliseconds, which is why readings are written in batches.
 *  - `normal`: the WAL is fsynced only at checkpoints. Every commit survives a crash or SIGKILL
 *    of Vigil (it is in the OS page cache), but a power cut or kernel crash can lose the last
 *    commits. The database is never corrupted by it either way.
 * `journal_size_limit` truncates the WAL file after a checkpoint when a burst (a large retention
 * pass, a long-running reader) made it grow, so that it does not keep its peak size on disk.
 * SQLite's automatic checkpoint (every ~4 MB of WAL, at commit) stays on; the daemon adds a
 * PASSIVE checkpoint every `store.checkpointIntervalSeconds`, and close() a TRUNCATE one, which
 * leaves an empty WAL behind.
 *
 * Damage. A file that SQLite rejects as not a database (SQLITE_NOTADB) or as malformed
 * (SQLITE_CORRUPT*: a truncated file, garbled pages), or for which `PRAGMA quick_check` reports
 * problems (when `store.integrityCheck` is `quick`), is closed and renamed, with its -wal, -shm
 * and -journal files, to `<file>.corrupt-<UTC time>` in the same folder, and a new, empty store
 * is started, so that the gateway keeps working. quick_check reads every page: measured ~250 ms
 * for a 124 MB database (1.5 M readings) on the development VM with the file in the page cache;
 * more from a cold eMMC. Errors of permission, disk space or a missing folder are not damage:
 * they stop the start with VIGIL_ERR_STORE, since moving the file aside would not help.
 */

/** A damaged database found at start and moved aside. */
export interface StoreRecovery {
  /** Where the damaged file now is. */
  movedTo: string;
  /** What was wrong with it, in words. */
  reason: string;
  /** When it was moved (ms since the epoch). */
  at: number;
}

export interface OpenedDatabase {
  db: Database.Database;
  /** The store's id (store_meta 'store_id'): a UUID created with the database. */
  storeId: string;
  /** Set when a damaged file was moved aside to open this one. */
  recovery: StoreRecovery | undefined;
}

const BUSY_TIMEOUT_MS = 5_000;
/** The WAL is cut back to this after a checkpoint that found it larger. */
const JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024;
/** At most this many quick_check findings are read; the first few say enough. */
const QUICK_CHECK_MAX_ERRORS = 5;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const COMPANION_SUFFIXES = ['-wal', '-shm', '-journal'] as const;

/** A database file found damaged; carries the reason shown to the operator. */
class DamagedDatabase extends Error {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}

/**
 * Opens `dbPath` (absolute), creating its folder and the database if needed, applying the
 * durability pragmas and the migrations, then `build`s what uses the connection (the Store:
 * its first reads, the row counts, touch most of the file too). A damaged file, whether found
 * by the checks or by `build`, is moved aside and a new one created (see above); `onRecovery` is
 * called once when that happened.
 */
export function openDatabase<T>(
  dbPath: string,
  cfg: StoreConfig,
  log: Logger,
  build: (opened: OpenedDatabase) => T,
  onRecovery?: (recovery: StoreRecovery) => void,
  traceSql?: (sql: string) => void,
): T {
  mkdirSync(path.dirname(dbPath), { recursive: true });
  // Opening creates an empty -wal and -shm; only those found here belong with a damaged file.
  const found = COMPANION_SUFFIXES.filter((suffix) => existsSync(dbPath + suffix));
  try {
    return openChecked(dbPath, cfg, log, undefined, build, traceSql);
  } catch (err) {
    if (!(err instanceof DamagedDatabase)) throw err;
    const at = Date.now();
    const movedTo = moveAside(dbPath, at, err.reason, found);
    const recovery: StoreRecovery = { movedTo, reason: err.reason, at };
    log.error(
      { path: dbPath, movedTo, reason: err.reason },
      `store database ${dbPath} is damaged (${err.reason}); it was moved to ${movedTo} and a new, empty ` +
        'store was started. Rows in the moved file that were not yet delivered will not be sent. Keep the ' +
        `moved file for inspection: \`sqlite3 ${movedTo} .recover\` can often salvage its rows.`,
    );
    onRecovery?.(recovery);
    return openChecked(dbPath, cfg, log, recovery, build, traceSql);
  }
}

function openChecked<T>(
  dbPath: string,
  cfg: StoreConfig,
  log: Logger,
  recovery: StoreRecovery | undefined,
  build: (opened: OpenedDatabase) => T,
  traceSql: ((sql: string) => void) | undefined,
): T {
  const checked = fileSize(dbPath) === 0 || inspect(dbPath, cfg);
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath, traceSql === undefined ? {} : { verbose: (sql) => traceSql(String(sql)) });
    // The first statement reads the header: SQLITE_NOTADB / SQLITE_CORRUPT surface here.
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${cfg.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (!checked) quickCheck(db, cfg);
    migrate(db, dbPath, log);
    return build({ db, storeId: ensureStoreId(db), recovery });
  } catch (err) {
    // Damage met here (not by inspect) is moved aside as this connection leaves it: closing may
    // have checkpointed its WAL into it first.
    closeQuietly(db);
    if (err instanceof DamagedDatabase) throw err;
    if (isCorruption(err)) throw new DamagedDatabase(describeDamage(dbPath, err), { cause: err });
    throw err;
  }
}

/**
 * Checks an existing file through a read-only connection first: unlike a read-write one, it
 * never checkpoints or deletes the WAL when closed, so a damaged file and its WAL are moved aside
 * exactly as they were found. Returns false when the file could not be inspected this way (a
 * WAL whose -shm cannot be created read-only, say): the read-write open then checks it.
 */
function inspect(dbPath: string, cfg: StoreConfig): boolean {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    quickCheck(db, cfg);
    return true;
  } catch (err) {
    if (err instanceof DamagedDatabase) throw err;
    if (isCorruption(err)) throw new DamagedDatabase(describeDamage(dbPath, err), { cause: err });
    return false;
  } finally {
    closeQuietly(db);
  }
}

function quickCheck(db: Database.Database, cfg: StoreConfig): void {
  if (cfg.integrityCheck !== 'quick') return;
  const findings = (db.pragma(`quick_check(${QUICK_CHECK_MAX_ERRORS})`) as { quick_check: string }[]).map(
    (r) => r.quick_check,
  );
  if (findings.length === 1 && findings[0] === 'ok') return;
  const text = findings.join('; ').replace(/\s+/g, ' ');
  throw new DamagedDatabase(
    `quick_check found damaged pages: ${text.length > 300 ? `${text.slice(0, 300)}...` : text}`,
  );
}

/** SQLite's own verdicts of a damaged file; every other error (I/O, permission, full) is not. */
function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'));
}

/**
 * Says what is wrong in the operator's words, from the file's header where that is clearer than
 * SQLite's generic "database disk image is malformed".
 */
function describeDamage(file: string, err: unknown): string {
  const sqlite = `SQLite: ${errorMessage(err)}`;
  try {
    const size = fileSize(file);
    const header = Buffer.alloc(100);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, header, 0, Math.min(size, 100), 0);
    } finally {
      closeSync(fd);
    }
    if (size < 100) return `the file is only ${size} bytes long, shorter than a SQLite header (${sqlite})`;
    if (!header.subarray(0, 16).equals(SQLITE_MAGIC))
      return `the file does not start with a SQLite header: it is damaged or not a database (${sqlite})`;
    const raw = header.readUInt16BE(16);
    const pageSize = raw === 1 ? 65_536 : raw;
    if (pageSize < 512 || pageSize > 65_536 || (pageSize & (pageSize - 1)) !== 0)
      return `the file's header is damaged (page size ${raw}) (${sqlite})`;
    if (size % pageSize !== 0)
      return `the file is truncated: ${size} bytes is not a whole number of ${pageSize}-byte pages (${sqlite})`;
    // The header's page count is valid when its "version valid for" matches the change counter;
    // with a WAL present the file may legitimately lag it.
    const headerPages = header.readUInt32BE(28);
    const valid = header.readUInt32BE(92) === header.readUInt32BE(24);
    if (valid && headerPages > size / pageSize && fileSize(`${file}-wal`) === 0)
      return `the file is truncated: its header counts ${headerPages} pages, the file holds ${size / pageSize} (${sqlite})`;
  } catch {
    // The file cannot be read back: SQLite's message is all there is.
  }
  return sqlite;
}

/**
 * Renames the database and the companions it had (`found`) to
 * `<file>.corrupt-<stamp>[-wal|-shm|-journal]`, so that sqlite3 opens the moved file with its own
 * WAL, and removes the companions that opening it created. Returns the new name of the database.
 */
function moveAside(dbPath: string, at: number, reason: string, found: readonly string[]): string {
  const stamp = new Date(at)
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
  let target = `${dbPath}.corrupt-${stamp}`;
  for (let n = 2; existsSync(target); n++) target = `${dbPath}.corrupt-${stamp}-${n}`;
  try {
    renameSync(dbPath, target);
    for (const suffix of COMPANION_SUFFIXES) {
      if (!existsSync(dbPath + suffix)) continue;
      // A -wal or -journal left next to the new file would be replayed into it.
      if (found.includes(suffix)) renameSync(dbPath + suffix, target + suffix);
      else rmSync(dbPath + suffix, { force: true });
    }
  } catch (err) {
    throw new VigilError(
      'VIGIL_ERR_STORE',
      `store database ${dbPath} is damaged (${reason}) and could not be moved aside: ${errorMessage(err)}. ` +
        'Move or delete it (and its -wal and -shm files) by hand, or point store.path at another file.',
      { cause: err, detail: { path: dbPath } },
    );
  }
  return target;
}

function migrate(db: Database.Database, dbPath: string, log: Logger): void {
  const current = Number(db.pragma('user_version', { simple: true }));
  if (current > SCHEMA_VERSION) {
    throw new VigilError(
      'VIGIL_ERR_STORE',
      `store ${dbPath} has schema version ${current}, newer than this Vigil understands (${SCHEMA_VERSION}). ` +
        'Upgrade Vigil, or point store.path at another file.',
      { detail: { path: dbPath, schemaVersion: current } },
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
    })();
    log.info(
      { path: dbPath, version: migration.version, description: migration.description },
      'store schema migrated',
    );
  }
}

/** The store id, created on first open of this database file and never changed afterwards. */
function ensureStoreId(db: Database.Database): string {
  db.prepare("INSERT OR IGNORE INTO store_meta (key, value) VALUES ('store_id', ?)").run(randomUUID());
  return (db.prepare("SELECT value FROM store_meta WHERE key = 'store_id'").get() as { value: string }).value;
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function closeQuietly(db: Database.Database | undefined): void {
  try {
    db?.close();
  } catch {
    // Already failing; the original error is the one to report.
  }
}
