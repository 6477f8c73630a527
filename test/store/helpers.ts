import { pino, type Logger } from 'pino';
import type { Reading } from '../../runtime/telemetry/reading.js';

/** A logger that keeps every line it logs, parsed, for assertions on what the store said. */
export function captureLogger(): {
  log: Logger;
  lines: { level: number; msg: string; [k: string]: unknown }[];
} {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

export const LEVEL = { info: 30, warn: 40, error: 50 } as const;

/** `n` readings of one asset, tags t0..t(n-1), received at `receivedAt`. */
export function readings(
  n: number,
  opts: { source?: string; receivedAt?: number; tag?: string } = {},
): Reading[] {
  const receivedAt = opts.receivedAt ?? 1_764_000_000_000;
  return Array.from({ length: n }, (_, i) => ({
    source: opts.source ?? 'opc',
    asset: 'pump-1',
    tag: opts.tag ?? `t${i}`,
    value: i,
    quality: 'good' as const,
    sourceTime: receivedAt - 3,
    serverTime: null,
    receivedAt,
  }));
}
