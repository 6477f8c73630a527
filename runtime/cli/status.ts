import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { loadConfigFile, resolvePath } from '../config/load.js';
import { ConfigError, errorMessage } from '../errors.js';
import { DATA_CLASSES, type DataClass } from '../forward/types.js';

/**
 * `vigil status`: what a gateway holds and has delivered. Asks the running daemon's
 * /api/v1/status; when no daemon answers and a config is given, reads the store file directly
 * (read-only), so that an operator can see the backlog of a stopped gateway too.
 */

export interface StatusOptions {
  config?: string;
  url?: string;
  json?: boolean;
}

interface ClassView {
  rows: number;
  oldestSeq: number | null;
  oldestAt: number | null;
  ackedSeq: number;
  lastDeliveryAt: number | null;
}

type Say = (line: string) => void;

export async function statusCommand(opts: StatusOptions, say: Say = (l) => console.log(l)): Promise<number> {
  let url = opts.url;
  let storePath: string | undefined;
  let forwarding = false;
  if (opts.config) {
    try {
      const loaded = await loadConfigFile(opts.config);
      const { http, store } = loaded.config;
      const host = http.host === '0.0.0.0' || http.host === '::' ? '127.0.0.1' : http.host;
      url ??= `http://${host.includes(':') ? `[${host}]` : host}:${http.port}`;
      storePath = resolvePath(loaded, store.path);
      forwarding = loaded.config.upstream?.enabled ?? false;
    } catch (err) {
      if (err instanceof ConfigError) for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
      console.error(`${opts.config}: ${errorMessage(err)}`);
      return 2;
    }
  }
  url ??= 'http://127.0.0.1:8470';

  let live: Record<string, unknown> | undefined;
  let unreachable = '';
  try {
    const res = await fetch(`${url.replace(/\/$/, '')}/api/v1/status`, {
      signal: AbortSignal.timeout(3_000),
    });
    if (!res.ok) unreachable = `HTTP ${res.status}`;
    else live = (await res.json()) as Record<string, unknown>;
  } catch (err) {
    unreachable = errorMessage(err);
  }

  if (live) {
    if (opts.json) say(JSON.stringify(live, null, 2));
    else printLive(live, url, say);
    return 0;
  }
  if (!storePath) {
    console.error(
      `no Vigil daemon answers at ${url} (${unreachable}). Start it, pass --url, or pass --config FILE to read its store directly.`,
    );
    return 1;
  }
  if (!existsSync(storePath)) {
    console.error(
      `no Vigil daemon answers at ${url} (${unreachable}), and there is no store at ${storePath} yet.`,
    );
    return 1;
  }
  let offline;
  try {
    offline = readStoreFile(storePath);
  } catch (err) {
    console.error(
      `no Vigil daemon answers at ${url} (${unreachable}), and the store ${storePath} cannot be read: ${errorMessage(err)}. ` +
        'A store written by an older Vigil is upgraded when the daemon next starts.',
    );
    return 1;
  }
  if (!forwarding) {
    if (opts.json) say(JSON.stringify({ daemon: 'not running', upstream: { enabled: false } }, null, 2));
    else
      say(
        `daemon: not answering at ${url} (${unreachable}); no upstream is configured, so nothing waits to be forwarded`,
      );
    return 0;
  }
  if (opts.json) say(JSON.stringify({ daemon: 'not running', store: offline }, null, 2));
  else {
    say(`daemon: not answering at ${url} (${unreachable}); read from the store file ${storePath}`);
    printClasses(offline.classes, Date.now(), say);
  }
  return 0;
}

/** The backlog per class from a store file, read-only (the daemon may be running or not). */
export function readStoreFile(file: string): { id: string | null; classes: Record<DataClass, ClassView> } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const id =
      (
        db.prepare("SELECT value FROM store_meta WHERE key = 'store_id'").get() as
          { value: string } | undefined
      )?.value ?? null;
    const table: Record<DataClass, { name: string; seq: string; at: string }> = {
      alerts: { name: 'alerts', seq: 'seq', at: 'created_at' },
      results: { name: 'results', seq: 'seq', at: 'produced_at' },
      readings: { name: 'readings', seq: 'id', at: 'received_at' },
    };
    const classes = {} as Record<DataClass, ClassView>;
    for (const cls of DATA_CLASSES) {
      const t = table[cls];
      const cursor = db
        .prepare('SELECT acked_seq, delivered_at FROM forward_cursors WHERE class = ?')
        .get(cls) as { acked_seq: number; delivered_at: number | null } | undefined;
      const acked = cursor?.acked_seq ?? 0;
      const oldest = db
        .prepare(
          `SELECT ${t.seq} AS seq, ${t.at} AS at FROM ${t.name} WHERE ${t.seq} > ? ORDER BY ${t.seq} LIMIT 1`,
        )
        .get(acked) as { seq: number; at: number } | undefined;
      const rows = (
        db.prepare(`SELECT count(*) AS n FROM ${t.name} WHERE ${t.seq} > ?`).get(acked) as { n: number }
      ).n;
      classes[cls] = {
        rows,
        oldestSeq: oldest?.seq ?? null,
        oldestAt: oldest?.at ?? null,
        ackedSeq: acked,
        lastDeliveryAt: cursor?.delivered_at ?? null,
      };
    }
    return { id, classes };
  } finally {
    db.close();
  }
}

function age(at: number | null, now: number): string {
  if (at === null) return '-';
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

const when = (at: number | null) => (at === null ? 'never' : new Date(at).toISOString());

function printClasses(classes: Record<string, ClassView>, now: number, say: Say): void {
  say('class      backlog   oldest undelivered (seq, age)   acked seq   last delivery');
  for (const cls of DATA_CLASSES) {
    const c = classes[cls];
    if (!c) continue;
    const oldest = c.oldestSeq === null ? '-' : `${c.oldestSeq}, ${age(c.oldestAt, now)}`;
    say(
      `${cls.padEnd(10)} ${String(c.rows).padStart(7)}   ${oldest.padEnd(30)}  ${String(c.ackedSeq).padStart(9)}   ${when(c.lastDeliveryAt)}`,
    );
  }
}

function printLive(s: Record<string, unknown>, url: string, say: Say): void {
  const now = Date.now();
  say(`device ${String(s.device)} · Vigil ${String(s.version)} · up since ${String(s.startedAt)} · ${url}`);
  say(`ready: ${s.ready ? 'yes' : 'no'}`);
  const up = s.upstream as
    | {
        enabled: boolean;
        state?: string;
        url?: string;
        drainRowsPerSecond?: number;
        lastError?: string;
        classes?: Record<string, ClassView>;
      }
    | undefined;
  if (up?.enabled) {
    say(
      `upstream: ${up.state ?? '?'} ${up.url ?? ''} · drain ${Math.round(up.drainRowsPerSecond ?? 0)} rows/s${up.lastError ? ` · last error: ${up.lastError}` : ''}`,
    );
    if (up.classes) printClasses(up.classes, now, say);
  } else {
    say('upstream: not configured (nothing is forwarded)');
  }
  const store = s.store as
    | {
        path?: string;
        synchronous?: string;
        recovery?: { movedTo: string; reason: string; at: string | number };
        classes?: Record<
          string,
          {
            rows: number;
            bytes: number;
            quotaBytes: number;
            evicted: { delivered: number; undelivered: number };
          }
        >;
        outbox?: { alerts: number };
      }
    | undefined;
  if (store) {
    say(`store: ${store.path ?? '?'} (synchronous ${store.synchronous ?? '?'})`);
    if (store.recovery)
      say(
        `  recovered at start: the damaged file was moved to ${store.recovery.movedTo} (${store.recovery.reason})`,
      );
    for (const [cls, c] of Object.entries(store.classes ?? {})) {
      const mib = (b: number) => (b / 2 ** 20).toFixed(1);
      say(
        `  ${cls.padEnd(9)} ${String(c.rows).padStart(9)} rows  ${mib(c.bytes)} of ${mib(c.quotaBytes)} MiB  evicted ${c.evicted.delivered} delivered, ${c.evicted.undelivered} undelivered`,
      );
    }
    if (store.outbox) say(`  alerts not yet acknowledged by the local broker: ${store.outbox.alerts}`);
  }
}
