import { pino } from 'pino';
import { PtyPair } from '../../../simulator/serial/pty-pair.js';
import { Recorder } from '../recorder.js';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A Recorder whose log lines are kept, for tests of what a source tells the integrator. */
export function loggingRecorder(): { rec: Recorder; logs: LogLine[] } {
  const rec = new Recorder();
  const logs: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  Object.assign(rec, { log });
  return { rec, logs };
}

/** Things to stop after each test, in reverse order of creation. */
export class Cleanup {
  private readonly items: Array<() => Promise<void>> = [];

  add<T extends { stop(): Promise<void> }>(thing: T): T {
    this.items.push(() => thing.stop());
    return thing;
  }

  /** A pty pair made by socat; a missing socat fails the test with how to install it. */
  async pair(): Promise<PtyPair> {
    return this.add(await PtyPair.create());
  }

  async run(): Promise<void> {
    while (this.items.length > 0) await this.items.pop()!();
  }
}

export const FAST_RECONNECT = { initialDelayMs: 20, maxDelayMs: 200 };

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
