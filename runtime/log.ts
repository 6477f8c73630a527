import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Where log lines go; defaults to stderr so that stdout stays free for command output. */
  destination?: number | string;
}

/** One structured (JSON) logger for the process; components take a child with their name. */
export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? process.env.VIGIL_LOG_LEVEL ?? 'info';
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: options.destination ?? 2, sync: false }),
  );
}

/** A logger that drops everything; for tests and for commands that must print nothing else. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
