import { SerialPortStream } from '@serialport/stream';
import type { SerialLineSource } from '../../runtime/config/sources/serial.js';
import { Backoff, sleep } from '../../runtime/backoff.js';
import { errorMessage } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/log.js';
import type { SourceState } from '../../runtime/pipeline/source.js';
import { serialBinding } from './binding.js';

/** The part of a serial source's config that says how to open the port. */
export type SerialPortConfig = Pick<
  SerialLineSource,
  'path' | 'baudRate' | 'dataBits' | 'parity' | 'stopBits' | 'reconnect'
>;

export interface SerialLinkOptions {
  config: SerialPortConfig;
  log: Logger;
  /** Bytes as the port delivers them. */
  onData(chunk: Buffer): void;
  /** After every successful open, before data flows: drop state that belonged to the old session. */
  onOpen?(): void;
  /** A re-open after the port had been open before (ctx.reconnected). */
  onReconnected(): void;
}

/** `8N1`, `7E1`: how the settings are written on device labels and in manuals. */
export function lineSettings(
  c: Pick<SerialPortConfig, 'baudRate' | 'dataBits' | 'parity' | 'stopBits'>,
): string {
  return `${c.baudRate} ${c.dataBits}${c.parity[0]!.toUpperCase()}${c.stopBits}`;
}

/**
 * Keeps one serial port open through the real native bindings (@serialport/bindings-cpp), for
 * as long as the source runs. A USB-serial adapter that is unplugged makes the port fail and its
 * device path disappear; this re-opens the same path with back-off until it comes back, which is
 * also what happens when the gateway boots before the adapter is plugged in.
 */
export class SerialLink {
  private port: SerialPortStream | undefined;
  private current: SourceState = 'stopped';
  private stopped = true;
  private everOpen = false;
  private lastError: string | undefined;
  private loop: Promise<void> | undefined;
  private abort = new AbortController();
  private readonly log: Logger;

  constructor(private readonly options: SerialLinkOptions) {
    this.log = options.log;
  }

  state(): SourceState {
    return this.current;
  }

  get isOpen(): boolean {
    return this.current === 'up' && this.port?.isOpen === true;
  }

  /** Resolves after the first attempt to open, whether it worked or not; retries go on behind. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.loop) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.current = 'starting';
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    if (signal.aborted) return this.stop();
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    this.loop = this.run(firstAttempt);
    await attempted;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.current = 'stopped';
    this.abort.abort();
    const port = this.port;
    this.port = undefined;
    if (port) await closePort(port);
    await this.loop;
    this.loop = undefined;
  }

  /** Sends bytes if the port is open; false when it is not (the caller counts that as it sees fit). */
  write(data: Buffer): boolean {
    const port = this.port;
    if (!port?.isOpen) return false;
    port.write(data);
    return true;
  }

  private async run(firstAttempt: () => void): Promise<void> {
    const { config } = this.options;
    const backoff = new Backoff({
      initialMs: config.reconnect.initialDelayMs,
      maxMs: config.reconnect.maxDelayMs,
    });
    while (!this.stopped) {
      const port = await this.open();
      firstAttempt();
      if (this.stopped) {
        if (port) await closePort(port);
        return;
      }
      if (port) {
        backoff.reset();
        const reopened = this.everOpen;
        this.everOpen = true;
        this.lastError = undefined;
        this.port = port;
        const closed = new Promise<Error | undefined>((resolve) => port.once('close', resolve));
        this.options.onOpen?.();
        port.on('data', (chunk: Buffer) => this.options.onData(chunk));
        this.current = 'up';
        if (reopened) this.options.onReconnected();
        this.log.info(
          { path: config.path, settings: lineSettings(config) },
          reopened ? 'serial port open again' : 'serial port open',
        );
        const err = await closed;
        this.port = undefined;
        if (this.stopped) return;
        this.current = 'down';
        this.log.warn(
          { path: config.path, err: err ? errorMessage(err) : undefined },
          `serial port ${config.path} went away (adapter unplugged or cable pulled?); re-opening it when it is back`,
        );
      } else {
        this.current = 'down';
      }
      await sleep(backoff.next(), this.abort.signal);
    }
  }

  /** One attempt; logs the first failure of a run of failures, and the rest only at debug. */
  private async open(): Promise<SerialPortStream | undefined> {
    const { config } = this.options;
    const port = new SerialPortStream({
      binding: serialBinding(),
      path: config.path,
      baudRate: config.baudRate,
      dataBits: config.dataBits,
      parity: config.parity,
      stopBits: config.stopBits,
      autoOpen: false,
      // flock() the device so that a second program (or a second Vigil) cannot read the same
      // line and steal half of its bytes.
      lock: true,
    });
    // Errors after open (a failed write on a vanished device) also surface as 'close'.
    port.on('error', (err: Error) => this.log.debug({ err: errorMessage(err) }, 'serial port error'));
    const err = await new Promise<Error | null>((resolve) => port.open(resolve));
    if (!err) return port;
    const message = errorMessage(err);
    if (message !== this.lastError) {
      this.lastError = message;
      this.log.warn(
        { path: config.path, err: message },
        `cannot open serial port ${config.path}: ${message}; check that the adapter is plugged in and the path is right (retrying)`,
      );
    } else {
      this.log.debug({ path: config.path, err: message }, 'serial port still not available');
    }
    return undefined;
  }
}

function closePort(port: SerialPortStream): Promise<void> {
  return new Promise((resolve) => {
    if (!port.isOpen) return resolve();
    port.close(() => resolve());
  });
}
