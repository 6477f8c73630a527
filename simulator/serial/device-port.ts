import { SerialPortStream } from '@serialport/stream';
import { deviceBinding } from './binding.js';

/** Bytes queued for the line beyond which a device drops what it would send: a UART never waits. */
const MAX_BACKLOG = 4096;

/**
 * The simulated device's end of a pty pair, kept open: when the cable is pulled (the pair's
 * socat goes) the end disappears, and it is opened again as soon as the pair is plugged back.
 * The device side has no line settings of its own on a pty; the devices emulate them.
 */
export class DevicePort {
  private port: SerialPortStream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private opening = false;

  constructor(
    private readonly path: string,
    private readonly onData: (chunk: Buffer) => void,
    private readonly retryMs = 50,
  ) {}

  get isOpen(): boolean {
    return this.port?.isOpen === true;
  }

  /** Resolves once the end is open (or at least one attempt failed: it keeps trying). */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await this.tryOpen();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const port = this.port;
    this.port = undefined;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  /** Sends bytes if the end is open and the line is not backed up; false when they were dropped. */
  write(data: Buffer): boolean {
    const port = this.port;
    if (!port?.isOpen || port.writableLength > MAX_BACKLOG) return false;
    port.write(data);
    return true;
  }

  private async tryOpen(): Promise<void> {
    if (this.stopped || this.opening || this.port) return;
    this.opening = true;
    const port = new SerialPortStream({
      binding: deviceBinding(),
      path: this.path,
      baudRate: 9600,
      autoOpen: false,
      lock: false,
    });
    port.on('error', () => undefined); // a write after the cable was pulled; 'close' follows
    const err = await new Promise<Error | null>((resolve) => port.open(resolve));
    this.opening = false;
    if (err || this.stopped) {
      if (!err) await new Promise<void>((resolve) => port.close(() => resolve()));
      this.schedule();
      return;
    }
    this.port = port;
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.once('close', () => {
      if (this.port === port) this.port = undefined;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tryOpen(), this.retryMs);
  }
}
