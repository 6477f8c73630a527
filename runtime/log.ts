import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Where log lines go; defaults to stderr so that stdout stays free for command output. */
  destination?: number | string;
  /** A stream that takes the log lines instead of `destination` (to capture them). */
  stream?: DestinationStream;
}

/** What a redacted value is replaced with. */
export const REDACTED = '[redacted]';

const SECRET_KEYS = [
  'password',
  'token',
  'passphrase',
  'secret',
  'authorization',
  'cookie',
  // Spellings that other libraries' objects (HTTP headers, SDK options) use for the same things.
  'Authorization',
  'Cookie',
  'accessToken',
  'apiToken',
  'apiKey',
  'privateKey',
];

/**
 * Field names that are never written to a log, at any of the first three levels of a log line's
 * fields (`password`, `mqtt.password`, `req.headers.authorization`, ...). A second line of
 * defence: secrets are not passed to the logger in the first place, and URLs are logged without
 * their user:password part (redactUrl).
 */
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

/** One structured (JSON) logger for the process; components take a child with their name. */
export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? process.env.VIGIL_LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    },
    options.stream ?? pino.destination({ dest: options.destination ?? 2, sync: false }),
  );
}

/** A logger that drops everything; for tests and for commands that must print nothing else. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
