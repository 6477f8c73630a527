import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { StoreWriteGuard } from '../../runtime/store/write-guard.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('StoreWriteGuard', () => {
  it('refuses from a failed write until a probe write succeeds, probing on its interval', () => {
    vi.useFakeTimers();
    let full = true;
    let probes = 0;
    const guard = new StoreWriteGuard(
      () => {
        probes++;
        if (full) throw new Error('database or disk is full');
      },
      silentLogger(),
      2_000,
    );
    expect(guard.refusing).toBe(false);
    guard.failed();
    guard.failed(); // a second failure while refusing starts nothing new
    expect(guard.refusing).toBe(true);
    vi.advanceTimersByTime(4_000);
    expect(probes).toBe(2);
    expect(guard.refusing).toBe(true);
    full = false;
    vi.advanceTimersByTime(2_000);
    expect(probes).toBe(3);
    expect(guard.refusing).toBe(false);
    vi.advanceTimersByTime(10_000);
    expect(probes).toBe(3); // no probing once the store takes writes
    guard.stop();
  });

  it('probes a real store with a write of its own, and that write fails once the store is closed', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-guard-'));
    try {
      const file = path.join(dir, 'vigil.db');
      const store = Store.open(file, StoreConfig.parse({ path: file }), silentLogger());
      expect(() => store.probeWrite()).not.toThrow();
      store.close();
      expect(() => store.probeWrite()).toThrow(/cannot probe the store with a write/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
