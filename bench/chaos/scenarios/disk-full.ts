import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SmallDisk } from '../../../simulator/chaos/disk.js';
import { LINE, PIPELINE, PIPELINE_CONCURRENCY } from '../rig.js';
import { sleep, waitSeconds, type DrillContext, type Scenario } from '../drill.js';
import type { Ledger } from '../ledger.js';
import type { MetricsScrape } from '../prom.js';

/**
 * The disk holding the store fills up under load: the store lives on a small tmpfs of its own
 * (`DISK_MIB`), and a ballast file takes every free byte for `durationS`, then is deleted. SQLite
 * gets real ENOSPC from the kernel. What the store does then is what docs/STORE-AND-FORWARD.md
 * promises: below store.minFreeDiskMiB it stops growing and makes room by evicting the oldest
 * delivered rows; a write that still cannot get space fails (SQLITE_FULL). A batch of readings is
 * then kept in memory and retried (an MQTT QoS 1 source is not acknowledged, so its broker keeps
 * the messages). A frame's result is dropped as `store_error`, and from then on the camera
 * refuses frames (503 store_unavailable) until a probe write of the store succeeds.
 *
 * The frames the gateway had already taken when its first write failed are lost: their 202 was
 * answered before it could know. The drill allows that many and no more (FRAMES_HELD), and the
 * report shows them as lost with the allowance named.
 *
 * Recovery (seconds from the release of the space): `storing` (a frame's result stored again)
 * and `readingsCaughtUp` (nothing waits in memory for the store: vigil_readings_pending 0 and
 * every reading published up to the release taken).
 */

const DISK_MIB = 24;
const FLOOR_MIB = 4;
/**
 * The most frames the gateway holds after their 202: `concurrency` being processed, and the one
 * pending slot of the camera (the scheduler keeps one waiting frame per source).
 */
const FRAMES_HELD = PIPELINE_CONCURRENCY + 1;

export function diskFull(): Scenario {
  let disk: SmallDisk | undefined;
  let base: string | undefined;
  const samples: Array<{ at: number; processed: number; storeErrors: number; readingsPending: number }> = [];
  return {
    name: 'disk-full',
    summary: `the ${DISK_MIB} MiB filesystem holding the store fills up under load, then space returns`,
    async prepare() {
      base = await mkdtemp(path.join(os.tmpdir(), 'vigil-chaos-disk-'));
      try {
        disk = await SmallDisk.mount(path.join(base, 'disk'), DISK_MIB);
      } catch (err) {
        await rm(base, { recursive: true, force: true });
        throw err;
      }
      return {
        rig: { storeDir: disk.dir, store: { minFreeDiskMiB: FLOOR_MIB, quotaCheckSeconds: 1 } },
        cleanup: async () => {
          await disk?.unmount();
          if (base) await rm(base, { recursive: true, force: true });
        },
      };
    },
    async inject(ctx) {
      const { rig, options } = ctx;
      ctx.allowances.framesLostAfterAccept = {
        max: FRAMES_HELD,
        reasons: ['store_error'],
        why:
          `frames already taken when the first store write failed (pipeline concurrency ${PIPELINE_CONCURRENCY} ` +
          'plus the one waiting frame of the camera): answered 202 before the gateway could know the disk was full',
      };
      const before = await rig.metrics();
      const freeBefore = disk!.freeBytes();
      const freeLeft = await disk!.fill(0);
      const filledAt = Date.now();
      ctx.say(
        `disk-full: ${Math.round(freeBefore / 1024)} KiB were free; ballast of ${Math.round(disk!.ballast / 1024)} KiB ` +
          `leaves ${freeLeft} bytes for ${options.durationS} s`,
      );
      while (Date.now() - filledAt < options.durationS * 1000) {
        const m = await rig.metrics().catch(() => undefined);
        if (m) samples.push(sample(m));
        await sleep(250);
      }
      const during = await rig.metrics();
      await ctx.mark('fault');
      const publishedAtRelease = ctx.telemetry.published;
      await disk!.release();
      const releasedAt = Date.now();
      ctx.say(`disk-full: space released (${Math.round(disk!.freeBytes() / 1024)} KiB free)`);
      const processedAtRelease = during.sum('vigil_samples_processed_total', { pipeline: PIPELINE });
      const [storing, readingsCaughtUp] = await Promise.all([
        waitSeconds(
          ctx,
          'a result stored after the space returned',
          releasedAt,
          async () =>
            (await rig.metrics()).sum('vigil_samples_processed_total', { pipeline: PIPELINE }) >
            processedAtRelease,
          120,
        ),
        waitSeconds(
          ctx,
          'the readings held in memory to be stored',
          releasedAt,
          async () => {
            const m = await rig.metrics();
            const taken =
              m.sum('vigil_readings_total', { source: LINE }) +
              m.sum('vigil_input_errors_total', { source: LINE });
            return m.sum('vigil_readings_pending') === 0 && taken >= publishedAtRelease * 2;
          },
          120,
        ),
      ]);
      ctx.recovery.storing = storing;
      ctx.recovery.readingsCaughtUp = readingsCaughtUp;
      const diff = (name: string, labels: Record<string, string> = {}) =>
        during.sum(name, labels) - before.sum(name, labels);
      Object.assign(ctx.fault, {
        diskMiB: DISK_MIB,
        minFreeDiskMiB: FLOOR_MIB,
        freeBytesDuringFault: freeLeft,
        framesStoredDuringFault: diff('vigil_samples_processed_total', { pipeline: PIPELINE }),
        framesDroppedStoreError: diff('vigil_samples_dropped_total', {
          pipeline: PIPELINE,
          reason: 'store_error',
        }),
        readingBatchWritesRefused: diff('vigil_readings_store_errors_total'),
        maxReadingsPendingInMemory: Math.max(0, ...samples.map((s) => s.readingsPending)),
        readingsAcceptedDuringFault: diff('vigil_readings_total', { source: LINE }),
        evictedDuringFault: evictions(during, before),
        telemetryUnackedAtRelease: ctx.telemetry.unacked,
      });
    },
    review(ctx: DrillContext, ledger: Ledger) {
      // Rows evicted for the disk before delivery would be data lost by policy: count them.
      ctx.fault.undeliveredEvicted = ledger.upstream.gaps;
    },
  };
}

function sample(m: MetricsScrape): {
  at: number;
  processed: number;
  storeErrors: number;
  readingsPending: number;
} {
  return {
    at: m.at,
    processed: m.sum('vigil_samples_processed_total', { pipeline: PIPELINE }),
    storeErrors: m.sum('vigil_samples_dropped_total', { pipeline: PIPELINE, reason: 'store_error' }),
    readingsPending: m.sum('vigil_readings_pending'),
  };
}

function evictions(after: MetricsScrape, before: MetricsScrape): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of after.samples) {
    if (s.name !== 'vigil_store_evicted_total') continue;
    const key = `${s.labels.class}/${s.labels.reason}/${s.labels.delivered === 'true' ? 'delivered' : 'undelivered'}`;
    const prev = before.sum('vigil_store_evicted_total', s.labels);
    if (s.value - prev > 0) out[key] = s.value - prev;
  }
  return out;
}
