import { existsSync } from 'node:fs';
import type { SimMachine } from '../machines/types.js';
import { DevicePort } from './device-port.js';
import { readPtySettings, uartReceive, type PtySettings, type UartFraming } from './uart.js';

export interface SimLineDeviceOptions {
  /** The device's end of the pty pair. */
  path: string;
  /**
   * The host's end of the pair, whose line settings the device watches to emulate a baud-rate
   * or stop-bit mismatch (see uart.ts). Without it the device never scrambles its lines.
   */
  hostPath?: string;
  machine: SimMachine;
  /**
   * `csv`: `asset,time,<tag values in machine.tags order>`; `kv`: `asset=.. time=.. tag=value ...`.
   * time is ms since the epoch. A value whose quality is bad is left empty.
   */
  format: 'csv' | 'kv';
  /** Lines per second. */
  rateHz: number;
  /** The device's own line settings (fixed, as on a real device): default 9600 8N1. */
  baudRate?: number;
  dataBits?: 7 | 8;
  parity?: 'none' | 'even' | 'odd';
  stopBits?: 1 | 2;
  /** Line end: default '\n'. */
  delimiter?: string;
  /**
   * How often the host's settings are looked at (each look runs `stty`), default
   * DEFAULT_SETTINGS_POLL_MS. An integrator changes a baud rate by hand, so seconds are fine.
   */
  settingsPollMs?: number;
}

export const DEFAULT_SETTINGS_POLL_MS = 1000;

/**
 * A sensor box on a serial line that prints one line of its machine's values per tick, as many
 * PLC serial modules, scales and data loggers do. Faults: garbage bytes (line noise), raw text
 * (for oversized or malformed lines), and a line-settings mismatch with the host, emulated bit
 * by bit (uart.ts) since a pty itself does not care about baud rates.
 */
export class SimLineDevice {
  private readonly port: DevicePort;
  private readonly framing: UartFraming;
  private host: PtySettings | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private settingsTimer: NodeJS.Timeout | undefined;
  private checking = false;
  private running = false;
  /** Lines written as the device meant them (scrambled ones included). */
  linesSent = 0;
  /** Times the host's settings were read (`stty` runs). */
  settingsReads = 0;

  constructor(private readonly options: SimLineDeviceOptions) {
    this.port = new DevicePort(options.path, () => undefined);
    this.framing = {
      baudRate: options.baudRate ?? 9600,
      dataBits: options.dataBits ?? 8,
      parity: options.parity ?? 'none',
      stopBits: options.stopBits ?? 1,
    };
  }

  /** The CSV columns the device prints, for a matching source config. */
  static csvColumns(machine: SimMachine): string[] {
    return ['asset', 'time', ...machine.tags.map((t) => t.name)];
  }

  /**
   * True while the host's settings differ from the device's, i.e. while lines arrive scrambled.
   * A host end nobody has set up yet counts as matching: were it taken for a mismatch, a host that
   * opens the port with the right settings would get garbage until the next look.
   */
  get mismatched(): boolean {
    const h = this.host;
    return (
      h !== undefined &&
      h.configured &&
      (h.baudRate !== this.framing.baudRate || h.stopBits !== this.framing.stopBits)
    );
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.port.start();
    if (this.options.hostPath !== undefined) {
      await this.checkHost();
      this.settingsTimer = setInterval(
        () => void this.checkHost(),
        this.options.settingsPollMs ?? DEFAULT_SETTINGS_POLL_MS,
      );
    }
    this.tickTimer = setInterval(() => this.tick(), 1000 / this.options.rateHz);
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.tickTimer);
    clearInterval(this.settingsTimer);
    await this.port.stop();
  }

  /** Line noise: n random bytes, sent as they are (no line settings apply to noise). */
  garbage(n: number): void {
    const bytes = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
    this.port.write(bytes);
  }

  /** Raw text or bytes, through the same (possibly mismatched) line as the lines. */
  send(data: string | Buffer): void {
    this.transmit(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  /** The line the device prints for one snapshot of its machine. */
  line(): string {
    const s = this.options.machine.snapshot();
    const values = this.options.machine.tags.map((t) => {
      const v = s.values[t.name];
      return { tag: t.name, text: v === undefined || v.quality === 'bad' ? '' : String(v.value) };
    });
    if (this.options.format === 'csv')
      return [s.asset, String(s.time), ...values.map((v) => v.text)].join(',');
    return [`asset=${s.asset}`, `time=${s.time}`, ...values.map((v) => `${v.tag}=${v.text}`)].join(' ');
  }

  private tick(): void {
    this.send(this.line() + (this.options.delimiter ?? '\n'));
    this.linesSent += 1;
  }

  private transmit(bytes: Buffer): void {
    const host = this.host;
    if (host && this.mismatched) {
      // What the host's UART would make of the device's bits; data bits and parity cannot be
      // read from a pty, so the receiver is assumed to share the device's.
      bytes = uartReceive(bytes, this.framing, { ...this.framing, ...host });
    }
    if (bytes.length > 0) this.port.write(bytes);
  }

  private async checkHost(): Promise<void> {
    const hostPath = this.options.hostPath;
    // No stty while the cable is out: the last known settings stand anyway.
    if (this.checking || hostPath === undefined || !existsSync(hostPath)) return;
    this.checking = true;
    try {
      this.settingsReads += 1;
      const s = await readPtySettings(hostPath);
      if (s) this.host = s; // keep the last known while the cable is out
    } finally {
      this.checking = false;
    }
  }
}
