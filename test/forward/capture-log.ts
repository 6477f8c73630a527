import { pino, type Logger } from 'pino';

/** A real pino logger whose lines are kept, for asserting what an operator would read. */
export function captureLog(): { log: Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write(s: string) {
        lines.push(JSON.parse(s) as { level: number; msg: string });
      },
    },
  );
  return { log, lines };
}
