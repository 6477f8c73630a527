import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How the simulated camera hands an encoded frame to Vigil: through the same real paths a
 * factory camera uses (a file in a shared folder, an HTTP POST). Nothing here knows Vigil's code.
 */

export interface OutgoingFrame {
  /** The frame's name as the camera gives it, e.g. `cam1-000123.jpg`; Vigil reports it back. */
  origin: string;
  data: Buffer;
  format: 'jpeg' | 'png';
}

export type DeliveryResult = { ok: true } | { ok: false; error: string };

export interface FrameSink {
  /** Where frames go, for logs: a folder or a URL. */
  readonly target: string;
  /** Delivers one frame. Never throws: a failure comes back as `{ok: false, error}`. */
  deliver(frame: OutgoingFrame): Promise<DeliveryResult>;
}

export interface FolderSinkOptions {
  /** Number of writes the file is made of (an FTP upload arrives in pieces); default 3. */
  chunks?: number;
  /** Pause between the pieces, ms; default 20. Vigil must wait for the whole file. */
  pauseMs?: number;
}

/**
 * Writes each frame the way an FTP/SMB upload lands: the final name is created at once, the
 * bytes arrive in a few pieces with pauses between them, then the file is closed. So Vigil sees
 * partially written files and must tell them from whole ones.
 */
export class FolderSink implements FrameSink {
  private readonly chunks: number;
  private readonly pauseMs: number;
  private made = false;

  constructor(
    readonly target: string,
    options: FolderSinkOptions = {},
  ) {
    this.chunks = Math.max(1, Math.floor(options.chunks ?? 3));
    this.pauseMs = Math.max(0, options.pauseMs ?? 20);
  }

  async deliver(frame: OutgoingFrame): Promise<DeliveryResult> {
    const file = path.join(this.target, frame.origin);
    try {
      if (!this.made) {
        await mkdir(this.target, { recursive: true });
        this.made = true;
      }
      const fh = await open(file, 'w');
      try {
        const size = Math.ceil(frame.data.length / this.chunks);
        for (let offset = 0, i = 0; offset < frame.data.length; offset += size, i++) {
          if (i > 0 && this.pauseMs > 0) await sleep(this.pauseMs);
          const piece = frame.data.subarray(offset, offset + size);
          await fh.write(piece, 0, piece.length, offset);
        }
      } finally {
        await fh.close();
      }
      return { ok: true };
    } catch (err) {
      return { ok: false, error: `cannot write ${file}: ${(err as Error).message}` };
    }
  }
}

export interface HttpSinkOptions {
  /** Give up on one POST after this long; default 5000 ms. */
  timeoutMs?: number;
}

/** POSTs each frame to Vigil's camera-http endpoint, naming it in X-Frame-Origin. */
export class HttpSink implements FrameSink {
  private readonly timeoutMs: number;

  constructor(
    readonly target: string,
    options: HttpSinkOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  async deliver(frame: OutgoingFrame): Promise<DeliveryResult> {
    try {
      const res = await fetch(this.target, {
        method: 'POST',
        headers: { 'Content-Type': `image/${frame.format}`, 'X-Frame-Origin': frame.origin },
        body: frame.data,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await res.text();
      if (res.status === 202) return { ok: true };
      return { ok: false, error: `POST ${this.target} answered ${res.status}: ${text.slice(0, 200)}` };
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message;
      return {
        ok: false,
        error: `POST ${this.target} failed: ${(err as Error).message}${cause ? ` (${cause})` : ''}`,
      };
    }
  }
}
