import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { CheckResult, DoctorContext, PeerDate } from './check.js';

/**
 * Clock sanity. TLS certificates, signed model packages, token expiry and every timestamp in
 * the store need a wall clock that is roughly right; gateways without a battery-backed clock
 * boot in 1970 or in the year of their firmware until NTP answers.
 */

const MIN_YEAR = 2024;
const MAX_YEAR = 2100;
/** A peer's Date header has whole seconds: up to 1 s of the difference is rounding. */
const DATE_RESOLUTION_MS = 1_000;
export const SKEW_WARN_MS = 5_000;
export const SKEW_FAIL_MS = 60_000;
/** Wall and monotonic clocks drifting apart this much during the run means the wall clock was stepped. */
const STEP_WARN_MS = 1_000;

export function wallClockCheck(now: Date = new Date()): CheckResult {
  const year = now.getUTCFullYear();
  const base = { group: 'clock' as const, name: 'system clock', data: { now: now.toISOString() } };
  if (year < MIN_YEAR || year > MAX_YEAR) {
    return {
      ...base,
      status: 'fail',
      detail: `the clock says ${now.toISOString()}, which cannot be right`,
      fix: 'set the time (timedatectl set-time, or enable NTP: timedatectl set-ntp true); TLS and signatures fail with a wrong clock',
    };
  }
  return { ...base, status: 'ok', detail: `${now.toISOString()} (UTC)` };
}

/** Compares the wall clock's progress during the run with the monotonic clock's. */
export function clockStepCheck(ctx: Pick<DoctorContext, 'startedWall' | 'startedMono'>): CheckResult {
  const wall = Date.now() - ctx.startedWall;
  const mono = performance.now() - ctx.startedMono;
  const offset = Math.round(wall - mono);
  const base = {
    group: 'clock' as const,
    name: 'clock steps',
    data: { offsetMs: offset, runMs: Math.round(mono) },
  };
  if (Math.abs(offset) > STEP_WARN_MS) {
    return {
      ...base,
      status: 'warn',
      detail: `the wall clock moved ${offset} ms against the monotonic clock during this run: it was set or stepped (NTP just synchronising?)`,
      fix: 'run doctor again once time synchronisation has settled; a clock that keeps jumping points at a failing NTP source or RTC',
    };
  }
  return {
    ...base,
    status: 'ok',
    detail: `wall and monotonic clocks agree (${offset} ms apart over ${Math.round(mono)} ms)`,
  };
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout) => resolve(err ? undefined : stdout.trim()));
  });
}

/** NTP synchronisation as systemd sees it; undefined when it cannot be read here. */
export async function ntpState(): Promise<{ synchronized: boolean; how: string } | undefined> {
  const value = await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], 3_000);
  if (value === 'yes' || value === 'no') return { synchronized: value === 'yes', how: 'timedatectl' };
  // systemd-timesyncd touches this file once it has synchronised.
  if (existsSync('/run/systemd/timesync/synchronized'))
    return { synchronized: true, how: '/run/systemd/timesync/synchronized' };
  return undefined;
}

export async function ntpCheck(): Promise<CheckResult> {
  const state = await ntpState();
  const base = { group: 'clock' as const, name: 'time sync' };
  if (!state) {
    return {
      ...base,
      status: 'warn',
      detail: 'unknown: neither timedatectl nor systemd-timesyncd says whether the clock is synchronised',
      fix: 'make sure a time service runs (systemd-timesyncd, chrony) with a reachable NTP server; in a container the host keeps the time',
      data: { synchronized: null },
    };
  }
  if (!state.synchronized) {
    return {
      ...base,
      status: 'warn',
      detail: `not synchronised (${state.how})`,
      fix: 'enable NTP (timedatectl set-ntp true) and give the gateway an NTP server it can reach (the plant network often has one)',
      data: { synchronized: false, how: state.how },
    };
  }
  return {
    ...base,
    status: 'ok',
    detail: `synchronised (${state.how})`,
    data: { synchronized: true, how: state.how },
  };
}

/** The difference between this clock and a peer's Date header, beyond the header's rounding. */
export function peerSkewCheck(peer: PeerDate): CheckResult {
  const raw = peer.receivedAt - peer.date;
  // The header is truncated to the second: the peer's true time lies in [date, date + 1 s).
  const skew = raw < 0 ? raw : Math.max(0, raw - DATE_RESOLUTION_MS);
  const abs = Math.abs(skew);
  const base = {
    group: 'clock' as const,
    name: `skew vs ${peer.from.split(' ')[0]}`,
    data: { from: peer.from, skewMs: skew },
  };
  const says = `this clock is ${abs < 1000 ? `within 1 s of` : `${(abs / 1000).toFixed(1)} s ${skew > 0 ? 'ahead of' : 'behind'}`} ${peer.from}`;
  if (abs > SKEW_FAIL_MS) {
    return {
      ...base,
      status: 'fail',
      detail: says,
      fix: 'synchronise the clock (NTP); certificates and signatures are refused or accepted wrongly with this much skew',
    };
  }
  if (abs > SKEW_WARN_MS) {
    return {
      ...base,
      status: 'warn',
      detail: says,
      fix: 'check time synchronisation (NTP) on the gateway and on that server',
    };
  }
  return { ...base, status: 'ok', detail: says };
}

export async function clockChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  return [
    wallClockCheck(),
    clockStepCheck(ctx),
    await ntpCheck(),
    ...ctx.peerDates.map((p) => peerSkewCheck(p)),
  ];
}
