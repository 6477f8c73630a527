import type { TelemetryConfig } from '../config/sources/telemetry.js';
import type { InputRejectReason } from '../pipeline/source.js';
import type { ExpectationChecker } from '../quality/checker.js';
import type { Reading } from './reading.js';

export interface Refusal {
  reason: InputRejectReason;
  message: string;
}

export type TagLimitMap = Record<string, { min?: number | undefined; max?: number | undefined }>;

const QUALITIES = new Set(['good', 'uncertain', 'bad']);

/**
 * The runtime's own check of every reading, whatever adapter produced it: adapters convert
 * their protocol's values, this makes sure nothing that is not a finite, plausible, sensibly
 * stamped number gets stored as one. A refused reading is counted and logged by the caller.
 *
 * `limits` and `expectations` differ on purpose: a value outside `limits` is physically
 * impossible and refused (never stored); a reading that breaks an expectation
 * (docs/DATA-QUALITY.md) is out of spec, and is stored with its flags, counted and alerted on.
 */
export class ReadingGate {
  private readonly maxSkewMs: number;
  private readonly maxAgeMs: number;

  constructor(
    private readonly limits: TagLimitMap,
    cfg: Pick<TelemetryConfig, 'maxClockSkewSeconds' | 'maxAgeSeconds'>,
    /** The source's data expectations, applied by TelemetryIngest to the readings that pass. */
    readonly expectations?: ExpectationChecker | undefined,
  ) {
    this.maxSkewMs = cfg.maxClockSkewSeconds * 1000;
    this.maxAgeMs = cfg.maxAgeSeconds * 1000;
  }

  /** Undefined when the reading may be stored; otherwise why not. */
  check(r: Reading, now: number): Refusal | undefined {
    const where = `${r.asset}/${r.tag}`;
    if (typeof r.asset !== 'string' || r.asset === '' || typeof r.tag !== 'string' || r.tag === '')
      return { reason: 'unknown_tag', message: 'a reading without an asset or tag name' };
    if (typeof r.receivedAt !== 'number' || !Number.isFinite(r.receivedAt))
      return { reason: 'malformed', message: `${where}: no receive time` };
    if (r.status !== undefined && r.status !== null && typeof r.status !== 'string')
      return { reason: 'malformed', message: `${where}: status ${describe(r.status)} is not a name` };
    if (!QUALITIES.has(r.quality))
      return {
        reason: 'malformed',
        message: `${where}: quality '${String(r.quality)}' is not good, uncertain or bad`,
      };
    const v: unknown = r.value;
    if (v !== null) {
      if (typeof v !== 'number')
        return { reason: 'not_a_number', message: `${where}: value ${describe(v)} is not a number` };
      if (!Number.isFinite(v))
        return { reason: 'not_finite', message: `${where}: value ${String(v)} is not finite` };
      const lim = this.limits[r.tag];
      if (lim && ((lim.min !== undefined && v < lim.min) || (lim.max !== undefined && v > lim.max)))
        return {
          reason: 'out_of_range',
          message: `${where}: value ${v} is outside the plausible range [${lim.min ?? '-∞'}, ${lim.max ?? '∞'}] set in limits.${r.tag}`,
        };
    } else if (r.quality === 'good') {
      return { reason: 'not_a_number', message: `${where}: a good reading without a value` };
    }
    for (const [name, t] of [
      ['source timestamp', r.sourceTime],
      ['server timestamp', r.serverTime],
    ] as const) {
      if (t === null || t === undefined) continue;
      if (typeof t !== 'number' || !Number.isFinite(t))
        return { reason: 'bad_timestamp', message: `${where}: ${name} ${describe(t)} is not a time` };
      if (t > now + this.maxSkewMs)
        return {
          reason: 'bad_timestamp',
          message: `${where}: ${name} ${iso(t)} is ${Math.round((t - now) / 1000)} s in the future (telemetry.maxClockSkewSeconds is ${this.maxSkewMs / 1000}); check the device clock`,
        };
      if (t < now - this.maxAgeMs)
        return {
          reason: 'bad_timestamp',
          message:
            t >= 1e9 && t < 1e10 && Math.abs(t * 1000 - now) <= this.maxAgeMs
              ? `${where}: ${name} ${t} looks like seconds since the epoch, not milliseconds; set the source's timestamp format to s (timestampFormat or timeFormat)`
              : `${where}: ${name} ${iso(t)} is older than telemetry.maxAgeSeconds (${this.maxAgeMs / 1000} s); check the device clock`,
        };
    }
    return undefined;
  }
}

function describe(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

function iso(t: number): string {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString();
}
