import { EventEmitter } from 'node:events';
import type { SerialLink } from './port.js';

/** Longest RTU frame (the spec's ADU limit); anything beyond is noise and is dropped. */
const MAX_FRAME = 256;
/** unit, function, exception code, CRC. */
const EXCEPTION_LENGTH = 5;

/**
 * The port object modbus-serial's ModbusRTU client drives (open/close/write/isOpen and 'data'
 * events, one event per answer frame), on top of our own SerialLink, so that the Modbus source
 * opens, locks and re-opens its port exactly like the line source, through the same bindings.
 *
 * RTU marks frame ends by 3.5 characters of silence, which no OS serial API reports reliably, so
 * an answer is cut by its expected length instead (known from the request), as modbus-serial's
 * own buffered port does. Unlike that port, bytes left over from an earlier request (a late
 * answer after a timeout) are dropped when the next request goes out, so that they can never be
 * taken for its answer. ModbusRTU checks the CRC, the unit, the function code and exceptions.
 */
export class RtuPort extends EventEmitter {
  /** Read and written by ModbusRTU (its serial transaction ids are always 1). */
  _transactionIdRead = 1;
  _transactionIdWrite = 1;
  private buffer: Buffer = Buffer.alloc(0);
  private unit = -1;
  private fn = -1;
  private expected = 0;

  constructor(private readonly link: SerialLink) {
    super();
  }

  get isOpen(): boolean {
    return this.link.isOpen;
  }

  /** The link opens the port by itself; ModbusRTU only needs to hear that it may start. */
  open(callback: (err: Error | null) => void): void {
    callback(null);
  }

  close(callback?: () => void): void {
    this.buffer = Buffer.alloc(0);
    callback?.();
  }

  write(request: Buffer): void {
    this.unit = request[0] ?? -1;
    this.fn = request[1] ?? -1;
    this.expected = answerLength(request);
    this.buffer = Buffer.alloc(0);
    this.link.write(request);
  }

  /** Bytes from the link; emits 'data' once an answer to the current request is complete. */
  received(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > MAX_FRAME) this.buffer = this.buffer.subarray(this.buffer.length - MAX_FRAME);
    const buf = this.buffer;
    for (let i = 0; i + EXCEPTION_LENGTH <= buf.length; i++) {
      if (buf[i] !== this.unit) continue;
      const fn = buf[i + 1];
      if (fn === (this.fn | 0x80)) return this.emitFrame(i, EXCEPTION_LENGTH);
      if (fn !== this.fn || this.expected === 0) continue;
      // For reads the third byte is the byte count: a cheap check that this is a frame start.
      if ((this.fn === 3 || this.fn === 4) && buf[i + 2] !== this.expected - 5) continue;
      if (i + this.expected <= buf.length) return this.emitFrame(i, this.expected);
      return; // the start of the answer is here; wait for the rest
    }
  }

  /** The link re-opened: nothing received before belongs to a request still waiting. */
  reset(): void {
    this.buffer = Buffer.alloc(0);
  }

  private emitFrame(start: number, length: number): void {
    const frame = Buffer.from(this.buffer.subarray(start, start + length));
    this.buffer = this.buffer.subarray(start + length);
    this.emit('data', frame);
  }
}

/** Length of the normal answer to a request, from its function code; 0 when not known. */
function answerLength(request: Buffer): number {
  if (request.length < 6) return 0;
  const count = request.readUInt16BE(4);
  switch (request[1]) {
    case 1:
    case 2:
      return 5 + Math.ceil(count / 8);
    case 3:
    case 4:
      return 5 + 2 * count;
    case 5:
    case 6:
    case 15:
    case 16:
      return 8;
    default:
      return 0;
  }
}
