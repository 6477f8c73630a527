import type { SimMachine } from '../machines/types.js';
import { DevicePort } from './device-port.js';

/** CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first. */
export function crc16(data: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of data) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** Appends the CRC to a frame body. */
export function withCrc(body: Uint8Array): Buffer {
  const frame = Buffer.alloc(body.length + 2);
  frame.set(body);
  frame.writeUInt16LE(crc16(body), body.length);
  return frame;
}

export type SimRegisterType = 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32';

/** Where the device keeps one of its machine's tags: raw = (value - offset) / scale. */
export interface SimRegister {
  table: 'holding' | 'input';
  address: number;
  tag: string;
  type: SimRegisterType;
  /** For 32-bit types: big = high word first (default), little = low word first. */
  wordOrder?: 'big' | 'little';
  scale?: number;
  offset?: number;
}

export interface SimModbusDeviceOptions {
  /** The device's end of the pty pair. */
  path: string;
  /** Unit (slave) address, default 1. */
  unitId?: number;
  machine: SimMachine;
  registers: SimRegister[];
}

const EXC_ILLEGAL_FUNCTION = 1;
const EXC_ILLEGAL_ADDRESS = 2;
const EXC_ILLEGAL_VALUE = 3;
const EXC_DEVICE_FAILURE = 4;
/** A partial request older than this is dropped: RTU's silent interval, generously for a pty. */
const RESYNC_MS = 50;

/**
 * A Modbus RTU slave on a pty: answers function codes 3 (read holding registers) and 4 (read
 * input registers) from registers mapped from its machine's tags, and every other function with
 * exception 1, as a simple transmitter or drive does. Requests with a bad CRC or for another unit
 * are ignored, as the spec says. A tag of bad quality makes integer registers answer exception 4
 * (device failure) and float32 registers NaN, the two ways real devices report a dead sensor.
 *
 * Faults: corruptCrc(n) spoils the CRC of the next n answers; dropResponses(n) leaves the next n
 * requests unanswered (the master times out).
 */
export class SimModbusDevice {
  private readonly port: DevicePort;
  private readonly unitId: number;
  private buffer: Buffer = Buffer.alloc(0);
  private lastByteAt = 0;
  private corruptNext = 0;
  private dropNext = 0;
  /** Requests for this unit with a good CRC, answered or not. */
  requests = 0;

  constructor(private readonly options: SimModbusDeviceOptions) {
    this.unitId = options.unitId ?? 1;
    this.port = new DevicePort(options.path, (chunk) => this.received(chunk));
  }

  start(): Promise<void> {
    return this.port.start();
  }

  stop(): Promise<void> {
    return this.port.stop();
  }

  corruptCrc(n: number): void {
    this.corruptNext += n;
  }

  dropResponses(n: number): void {
    this.dropNext += n;
  }

  private received(chunk: Buffer): void {
    const now = Date.now();
    if (now - this.lastByteAt > RESYNC_MS) this.buffer = Buffer.alloc(0);
    this.lastByteAt = now;
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const length = requestLength(this.buffer);
      if (length === undefined || this.buffer.length < length) return;
      const frame = this.buffer.subarray(0, length);
      if (crc16(frame.subarray(0, -2)) !== frame.readUInt16LE(length - 2)) {
        this.buffer = this.buffer.subarray(1); // not a frame start: slide on
        continue;
      }
      this.buffer = this.buffer.subarray(length);
      this.answer(Buffer.from(frame));
    }
  }

  private answer(request: Buffer): void {
    if (request[0] !== this.unitId) return; // another device's request, or a broadcast
    this.requests += 1;
    if (this.dropNext > 0) {
      this.dropNext -= 1;
      return;
    }
    const reply = this.reply(request);
    if (this.corruptNext > 0) {
      this.corruptNext -= 1;
      reply[reply.length - 1] = reply[reply.length - 1]! ^ 0xff;
    }
    this.port.write(reply);
  }

  private reply(request: Buffer): Buffer {
    const fn = request[1]!;
    const exception = (code: number) => withCrc(Buffer.from([this.unitId, fn | 0x80, code]));
    if (fn !== 3 && fn !== 4) return exception(EXC_ILLEGAL_FUNCTION);
    const start = request.readUInt16BE(2);
    const count = request.readUInt16BE(4);
    if (count < 1 || count > 125) return exception(EXC_ILLEGAL_VALUE);
    const words = this.registerWords(fn === 3 ? 'holding' : 'input');
    const body = Buffer.alloc(3 + 2 * count);
    body[0] = this.unitId;
    body[1] = fn;
    body[2] = 2 * count;
    for (let i = 0; i < count; i++) {
      const w = words.get(start + i);
      if (w === undefined) return exception(EXC_ILLEGAL_ADDRESS);
      if (w === 'failed') return exception(EXC_DEVICE_FAILURE);
      body.writeUInt16BE(w, 3 + 2 * i);
    }
    return withCrc(body);
  }

  /** The register image of one table now, from a fresh snapshot of the machine. */
  private registerWords(table: SimRegister['table']): Map<number, number | 'failed'> {
    const snap = this.options.machine.snapshot();
    const words = new Map<number, number | 'failed'>();
    for (const r of this.options.registers) {
      if (r.table !== table) continue;
      const v = snap.values[r.tag];
      const failed = v === undefined || v.quality === 'bad';
      const encoded = failed && r.type !== 'float32' ? undefined : encode(failed ? NaN : v!.value, r);
      if (encoded === undefined) {
        for (let i = 0; i < width(r.type); i++) words.set(r.address + i, 'failed');
      } else {
        encoded.forEach((w, i) => words.set(r.address + i, w));
      }
    }
    return words;
  }
}

function width(type: SimRegisterType): number {
  return type === 'uint16' || type === 'int16' ? 1 : 2;
}

const INT_RANGE: Record<Exclude<SimRegisterType, 'float32'>, [number, number]> = {
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

/** The register words for a value; integers saturate at their range, as device firmware does. */
export function encode(value: number, r: Omit<SimRegister, 'table' | 'address' | 'tag'>): number[] {
  const raw = (value - (r.offset ?? 0)) / (r.scale ?? 1);
  const b = Buffer.alloc(4);
  if (r.type === 'float32') b.writeFloatBE(raw, 0);
  else {
    const [lo, hi] = INT_RANGE[r.type];
    const n = Math.min(hi, Math.max(lo, Math.round(raw)));
    if (r.type === 'uint16' || r.type === 'int16') return [n & 0xffff];
    if (r.type === 'uint32') b.writeUInt32BE(n, 0);
    else b.writeInt32BE(n, 0);
  }
  const high = b.readUInt16BE(0);
  const low = b.readUInt16BE(2);
  return (r.wordOrder ?? 'big') === 'big' ? [high, low] : [low, high];
}

/** Length of the request at the start of `buf` by its function code; undefined until known. */
function requestLength(buf: Buffer): number | undefined {
  if (buf.length < 2) return undefined;
  const fn = buf[1]!;
  if (fn >= 1 && fn <= 6) return 8;
  if (fn === 15 || fn === 16) return buf.length < 7 ? undefined : 9 + buf[6]!;
  // Another function: its length is unknown to this device; the whole burst is taken as one
  // frame, which the CRC check then accepts (answered with exception 1) or slides past.
  return buf.length >= 4 ? buf.length : undefined;
}
