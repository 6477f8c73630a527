import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WallClockShift } from '../../../simulator/chaos/clock.js';
import { LINE, PIPELINE } from '../rig.js';
import { sleep, waitSeconds, type Scenario } from '../drill.js';
import { histogramWindow, type MetricsScrape } from '../prom.js';

/**
 * Wall clocks jump under load, one at a time, each held for `durationS`:
 *
 *  1. gateway +1 h: the daemon's wall clock steps an hour ahead (libfaketime, monotonic clock
 *     untouched, as on an NTP step). Device timestamps now look an hour old: within
 *     telemetry.maxAgeSeconds, so they are accepted.
 *  2. gateway -1 h (stepped back past the true time): device timestamps look an hour in the
 *     future, beyond telemetry.maxClockSkewSeconds: refused as bad_timestamp and counted.
 *  3. device +1 h: the gateway's clock is right again and the devices stamp their messages an
 *     hour ahead: refused as bad_timestamp and counted.
 *
 * After each jump the clock is set right again. Nothing may crash, latencies (measured on the
 * monotonic clock) must stay sane through every jump, refused readings are counted, and readings
 * are accepted again once the clocks agree. Recovery (seconds from the clock set right):
 * `gatewayBack` and `deviceBack` (the first reading accepted again).
 */

const HOUR_S = 3600;

interface PhaseFindings {
  phase: string;
  readingsAccepted: number;
  refusedBadTimestamp: number;
  framesStored: number;
  latencyMaxBucketS: number | null;
}

export function clockJump(): Scenario {
  let dir: string | undefined;
  let shift: WallClockShift | undefined;
  let probe: { wallShiftS: number; monotonicOk: boolean } | undefined;
  return {
    name: 'clock-jump',
    summary:
      "the gateway's wall clock steps an hour ahead and behind, then a device's clock jumps an hour ahead",
    async prepare() {
      dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-chaos-clock-'));
      shift = await WallClockShift.create(dir);
      // libfaketime must really move this Node's wall clock and leave its monotonic clock.
      probe = await shift.verify();
      return {
        rig: { env: shift.env() },
        cleanup: async () => {
          if (dir) await rm(dir, { recursive: true, force: true });
        },
      };
    },
    async inject(ctx) {
      const { rig, options, telemetry } = ctx;
      const phases: PhaseFindings[] = [];
      const hold = async (phase: string) => {
        const before = await rig.metrics();
        await sleep(options.durationS * 1000);
        const after = await rig.metrics();
        phases.push(findings(phase, before, after));
      };
      const acceptedAgain = async (what: string) => {
        const base = (await rig.metrics()).sum('vigil_readings_total', { source: LINE });
        const from = Date.now();
        return waitSeconds(
          ctx,
          what,
          from,
          async () => (await rig.metrics()).sum('vigil_readings_total', { source: LINE }) > base,
          60,
        );
      };

      ctx.say('clock-jump: gateway clock +1 h');
      await shift!.set(HOUR_S);
      await hold('gateway +1 h');
      await shift!.set(0);
      await hold('gateway stepped back to true time');

      ctx.say('clock-jump: gateway clock -1 h');
      await shift!.set(-HOUR_S);
      await hold('gateway -1 h');
      await shift!.set(0);
      ctx.recovery.gatewayBack = await acceptedAgain(
        'a reading accepted after the gateway clock was set right',
      );
      await hold('gateway set right');

      ctx.say('clock-jump: device clock +1 h');
      telemetry.clockOffsetMs = HOUR_S * 1000;
      await hold('device +1 h');
      telemetry.clockOffsetMs = 0;
      ctx.recovery.deviceBack = await acceptedAgain(
        'a reading accepted after the device clock was set right',
      );
      await ctx.mark('fault');
      await hold('device set right');

      const status = await rig.status();
      const maxLatency = status?.pipelines?.[PIPELINE]?.latencyMs?.max ?? null;
      ctx.fault.libfaketimeProbe = probe;
      ctx.fault.phases = phases;
      ctx.fault.daemonLatencyMaxMs = maxLatency;
      // A latency taken from the wall clock would show the hour; one from the monotonic clock cannot.
      if (maxLatency === null || maxLatency > 60_000)
        ctx.failures.push(
          `the daemon's largest latency is ${maxLatency} ms: a wall-clock jump leaked into a latency`,
        );
      const refusedWhenExpected = phases.filter(
        (p) => p.phase.endsWith('-1 h') || p.phase.startsWith('device +'),
      );
      for (const p of refusedWhenExpected)
        if (p.refusedBadTimestamp === 0)
          ctx.failures.push(`no reading was refused as bad_timestamp during "${p.phase}"`);
      const forward = phases.find((p) => p.phase === 'gateway +1 h');
      if (forward && forward.readingsAccepted === 0)
        ctx.failures.push('no reading was accepted while the gateway clock was 1 h ahead');
      for (const p of phases)
        if (p.framesStored === 0) ctx.failures.push(`no frame was stored during "${p.phase}"`);
    },
  };
}

function findings(phase: string, before: MetricsScrape, after: MetricsScrape): PhaseFindings {
  const diff = (name: string, labels: Record<string, string>) =>
    after.sum(name, labels) - before.sum(name, labels);
  // The upper bound of the largest latency observed in the phase: the first bucket holding every
  // observation of the window (-1: beyond the last finite bucket, 2.5 s).
  const w = histogramWindow(before, after, 'vigil_latency_seconds', { pipeline: PIPELINE });
  const total = w.buckets.at(-1)?.count ?? 0;
  const top = total > 0 ? w.buckets.find((x) => x.count >= total) : undefined;
  const maxBucket = top === undefined ? null : top.le === Infinity ? -1 : top.le;
  return {
    phase,
    readingsAccepted: diff('vigil_readings_total', { source: LINE }),
    refusedBadTimestamp: diff('vigil_input_errors_total', { source: LINE, reason: 'bad_timestamp' }),
    framesStored: diff('vigil_samples_processed_total', { pipeline: PIPELINE }),
    latencyMaxBucketS: maxBucket,
  };
}
