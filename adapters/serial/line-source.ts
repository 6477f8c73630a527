import type { SerialLineSource } from '../../runtime/config/sources/serial.js';
import type { Logger } from '../../runtime/log.js';
import type { Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { createLineParser, excerpt, LineSplitter, type LineParser, type SplitEvent } from './line-parser.js';
import { lineSettings, SerialLink } from './port.js';

export type SerialLineConfig = SerialLineSource;

/**
 * Lines in a row with nothing usable after which one warning says what is likely wrong. On a
 * real line a wrong baud rate, parity or stop-bit setting delivers exactly this: a steady stream
 * of bytes that never forms a line.
 */
export const GARBAGE_RUN_HINT = 20;

/**
 * Telemetry as text lines from a device on a serial port: csv, key=value or a regex with named
 * groups, one batch of readings per line. Garbage, overlong lines and unusable fields are refused
 * one by one (ctx.reject) and never stop the source; the port is re-opened when it goes away.
 */
export class SerialLineReader implements Source {
  readonly type = 'serial-line';
  private readonly log: Logger;
  private readonly link: SerialLink;
  private readonly splitter: LineSplitter;
  private readonly parse: LineParser;
  private readonly origin: string;
  /** Lines in a row that gave nothing usable. */
  private badRun = 0;
  private hinted = false;

  constructor(
    readonly name: string,
    private readonly config: SerialLineConfig,
    private readonly ctx: SourceContext,
  ) {
    this.log = ctx.log.child({ source: name, path: config.path });
    this.origin = config.path;
    this.splitter = new LineSplitter(config.delimiter, config.maxLineBytes);
    this.parse = createLineParser({
      format: config.format,
      asset: config.asset,
      timeFormat: config.timeFormat,
    });
    this.link = new SerialLink({
      config,
      log: this.log,
      onData: (chunk) => this.received(chunk),
      onOpen: () => this.splitter.reset(),
      onReconnected: () => ctx.reconnected(),
    });
  }

  state(): SourceState {
    return this.link.state();
  }

  start(signal: AbortSignal): Promise<void> {
    return this.link.start(signal);
  }

  stop(): Promise<void> {
    return this.link.stop();
  }

  private received(chunk: Buffer): void {
    const receivedAt = Date.now();
    for (const event of this.splitter.push(chunk)) this.handle(event, receivedAt);
  }

  private handle(event: SplitEvent, receivedAt: number): void {
    if (event.kind === 'too_large') {
      const head = event.head.length > 0 ? `starting ${excerpt(event.head)}` : '(continued)';
      this.ctx.reject(
        'too_large',
        `line longer than maxLineBytes (${this.config.maxLineBytes}) ${head}; skipping to the next line end`,
        this.origin,
      );
      this.bad(event.head);
      return;
    }
    const result = this.parse(event.bytes);
    if (result === null) return;
    if (!result.ok) {
      this.ctx.reject(result.reason, result.message, this.origin);
      this.bad(event.bytes);
      return;
    }
    for (const p of result.problems) this.ctx.reject(p.reason, p.message, this.origin);
    if (result.values.length === 0) {
      this.bad(event.bytes);
      return;
    }
    const batch: Reading[] = result.values.map((v) => ({
      source: this.name,
      asset: result.asset,
      tag: v.tag,
      value: v.value,
      quality: v.value === null ? 'bad' : 'good',
      status: v.value === null ? 'NoValue' : undefined,
      sourceTime: result.time ?? receivedAt,
      receivedAt,
    }));
    this.ctx.readings(batch);
    this.good();
  }

  private bad(sample: Buffer): void {
    this.badRun += 1;
    if (this.badRun < GARBAGE_RUN_HINT || this.hinted) return;
    this.hinted = true;
    this.log.warn(
      { settings: lineSettings(this.config), format: this.config.format.type, sample: excerpt(sample) },
      `${GARBAGE_RUN_HINT} lines in a row from ${this.config.path} could not be read. This is what a wrong ` +
        `baud rate, parity or stop-bit setting looks like (configured ${lineSettings(this.config)}): compare ` +
        `them with the device's, then check the line format and delimiter`,
    );
  }

  private good(): void {
    if (this.hinted) this.log.info('serial lines are readable again');
    this.badRun = 0;
    this.hinted = false;
  }
}
