import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
  closeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Metrics } from '../../runtime/ops/metrics.js';
import { Store } from '../../runtime/store/store.js';
import { bundleChild } from '../helpers/bundle-child.js';
import { LEVEL, captureLogger, readings } from './helpers.js';

const cfg = StoreConfig.parse({ path: 'x', minFreeDiskMiB: 0 });
const PAGE = 4096;

describe('store recovery from a damaged file', () => {
  let dir: string;
  let file: string;
  let store: Store | undefined;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-recovery-'));
    file = path.join(dir, 'vigil.db');
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A real store with some rows, closed cleanly (the WAL checkpointed away). Returns its id. */
  function realStore(rows = 20_000): string {
    const s = Store.open(file, cfg, silentLogger());
    for (let i = 0; i < rows; i += 2_000)
      s.saveReadings(readings(2_000, { receivedAt: 1_764_000_000_000 + i }));
    const id = s.storeId;
    s.close();
    return id;
  }

  function overwrite(offset: number, bytes: Buffer): void {
    const fd = openSync(file, 'r+');
    try {
      writeSync(fd, bytes, 0, bytes.length, offset);
    } finally {
      closeSync(fd);
    }
  }

  /** Opens the damaged store and checks what every recovery must do; returns what it said. */
  async function expectRecovered(
    original: Buffer,
    oldId?: string,
  ): Promise<{ reason: string; movedTo: string }> {
    const metrics = new Metrics({ processMetrics: false });
    const { log, lines } = captureLogger();
    const before = Date.now();
    store = Store.open(file, cfg, log, { metrics });
    const recovery = store.recovery!;
    expect(recovery).toBeDefined();
    expect(recovery.movedTo).toMatch(/[/\\]vigil\.db\.corrupt-\d{8}T\d{6}Z$/);
    expect(path.dirname(recovery.movedTo)).toBe(dir);
    expect(recovery.at).toBeGreaterThanOrEqual(before);
    // Kept byte for byte for inspection.
    expect(readFileSync(recovery.movedTo).equals(original)).toBe(true);
    // One clear line, at error level, naming the moved file.
    const errors = lines.filter((l) => l.level >= LEVEL.error);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toContain(recovery.movedTo);
    expect(errors[0]!.msg).toContain('new, empty store');
    expect(errors[0]!.msg).toContain(recovery.reason);
    expect((await metrics.storeRecoveries.get()).values.map((v) => v.value)).toEqual([1]);
    // A working new store with an id of its own.
    if (oldId !== undefined) expect(store.storeId).not.toBe(oldId);
    expect(store.countReadings()).toBe(0);
    store.saveReadings(readings(3));
    expect(store.countReadings()).toBe(3);
    store.close();
    store = Store.open(file, cfg, silentLogger());
    expect(store.recovery).toBeUndefined();
    expect(store.countReadings()).toBe(3);
    return recovery;
  }

  it('moves aside a file that is not a database, with its -wal and -shm', async () => {
    const garbage = Buffer.from('camera upload gone wrong\n'.repeat(400));
    writeFileSync(file, garbage);
    writeFileSync(`${file}-wal`, 'wal bytes');
    writeFileSync(`${file}-shm`, 'shm bytes');
    const { reason, movedTo } = await expectRecovered(garbage);
    expect(reason).toContain('does not start with a SQLite header');
    const base = path.basename(movedTo);
    expect(
      readdirSync(dir)
        .filter((f) => f.includes('.corrupt-'))
        .sort(),
    ).toEqual([base, `${base}-shm`, `${base}-wal`]);
    expect(readFileSync(`${movedTo}-wal`, 'utf8')).toBe('wal bytes');
    // The -shm is only an index of the WAL, which SQLite rebuilds: moved along, content aside.
    expect(existsSync(`${movedTo}-shm`)).toBe(true);
  });

  it('moves aside a file cut short to less than a header', async () => {
    writeFileSync(file, 'SQLite format');
    expect((await expectRecovered(Buffer.from('SQLite format'))).reason).toContain('only 13 bytes long');
  });

  it.each([
    ['to half its pages', (size: number) => Math.floor(size / 2 / PAGE) * PAGE, 'its header counts'],
    ['in the middle of a page', (size: number) => Math.floor(size / 2) + 123, 'not a whole number'],
  ])('moves aside a real database truncated %s', async (_what, cut, expected) => {
    const oldId = realStore();
    truncateSync(file, cut(statSync(file).size));
    const { reason, movedTo } = await expectRecovered(readFileSync(file), oldId);
    expect(reason).toContain('truncated');
    // It had no -wal or -shm: none appear next to it.
    expect(readdirSync(dir).filter((f) => f.includes('.corrupt-'))).toEqual([path.basename(movedTo)]);
    expect(reason).toContain(expected);
  });

  it.each([
    ['pages garbled in the middle', 100],
    ['the first b-tree page garbled', 1],
  ])('finds a database with a valid header but %s (quick_check)', async (_what, page) => {
    const oldId = realStore();
    overwrite(page * PAGE, Buffer.alloc(8 * PAGE, 0x5a));
    const original = readFileSync(file);
    const { reason } = await expectRecovered(original, oldId);
    expect(reason).toMatch(/quick_check|malformed/);
  });

  it('with integrityCheck off, still recovers from damage met by the first reads at open', () => {
    const oldId = realStore();
    const size = statSync(file).size;
    overwrite(PAGE, Buffer.alloc(size - PAGE, 0x5a));
    const original = readFileSync(file);
    const metrics = new Metrics({ processMetrics: false });
    store = Store.open(
      file,
      StoreConfig.parse({ path: 'x', integrityCheck: 'off', minFreeDiskMiB: 0 }),
      silentLogger(),
      { metrics },
    );
    expect(store.recovery?.reason).toContain('malformed');
    expect(readFileSync(store.recovery!.movedTo).equals(original)).toBe(true);
    expect(store.storeId).not.toBe(oldId);
  });

  it('reads back the synchronous level and journal mode it set, and empties the WAL on a TRUNCATE checkpoint', () => {
    for (const synchronous of ['full', 'normal'] as const) {
      const s = Store.open(file, StoreConfig.parse({ path: 'x', synchronous }), silentLogger());
      try {
        expect(s.durability()).toEqual({ journalMode: 'wal', synchronous });
        s.saveReadings(readings(500));
        expect(statSync(`${file}-wal`).size).toBeGreaterThan(0);
        expect(s.checkpoint('PASSIVE')).toMatchObject({ busy: false });
        const outcome = s.checkpoint('TRUNCATE');
        expect(outcome).toEqual({ busy: false, log: 0, checkpointed: 0 });
        expect(statSync(`${file}-wal`).size).toBe(0);
      } finally {
        s.close();
      }
    }
    expect(existsSync(`${file}-wal`)).toBe(false);
  });
});

describe('a store this user may not write', () => {
  let probe: { file: string; dir: string };
  let dir: string;
  // As root every file is writable; the probe then runs as nobody.
  const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

  beforeAll(async () => {
    probe = await bundleChild('test/store/open-probe.ts');
  });
  afterAll(() => rmSync(probe.dir, { recursive: true, force: true }));
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-readonly-'));
    chmodSync(dir, 0o755);
  });
  afterEach(() => {
    chmodSync(dir, 0o755);
    rmSync(dir, { recursive: true, force: true });
  });

  function openAs(file: string): { ok: boolean; code?: string; message?: string } {
    const out = spawnSync(process.execPath, [probe.file, file], {
      ...asUser,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.status, out.stderr).toBe(0);
    return JSON.parse(out.stdout) as { ok: boolean; code?: string; message?: string };
  }

  it('reports VIGIL_ERR_STORE and leaves the file where it is', () => {
    const folder = path.join(dir, 'data');
    mkdirSync(folder);
    const file = path.join(folder, 'vigil.db');
    const s = Store.open(file, cfg, silentLogger());
    s.saveReadings(readings(10));
    s.close();
    const before = readFileSync(file);
    chmodSync(folder, 0o555);

    const existing = openAs(file);
    expect(existing).toMatchObject({ ok: false, code: 'VIGIL_ERR_STORE' });
    expect(existing.message).toContain(file);
    const created = openAs(path.join(folder, 'new.db'));
    expect(created).toMatchObject({ ok: false, code: 'VIGIL_ERR_STORE' });

    expect(readdirSync(folder)).toEqual(['vigil.db']);
    expect(readFileSync(file).equals(before)).toBe(true);
  });
});
