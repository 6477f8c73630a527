import net from 'node:net';
import { crc32 } from 'node:zlib';
import { Rng } from '../camera/rng.js';

/**
 * What a broken camera, a flaky network or a scanner sends to an HTTP frame endpoint instead of a
 * frame: nothing, garbage, the wrong media type, an image cut short, an image header over random
 * bytes, a "pixel bomb" whose header claims 1.6 gigapixels, a body over the size limit, and an
 * upload whose connection drops half-way. Each kind says how a careful receiver should treat it:
 * refused at once with a 4xx and a reason, or accepted as bytes and then found undecodable, or
 * (for a cut upload) never answered because the client is gone.
 *
 * The simulator is the outside world: frames go out as raw HTTP over sockets, nothing of Vigil is
 * imported.
 */

export const CORRUPT_KINDS = [
  'empty',
  'garbage',
  'wrong_type',
  'truncated_jpeg',
  'jpeg_header_garbage',
  'png_header_garbage',
  'pixel_bomb',
  'too_large',
  'cut_upload',
] as const;
export type CorruptKind = (typeof CORRUPT_KINDS)[number];

/**
 * How a receiver should deal with it: `refused` (a 4xx answer before the frame goes anywhere),
 * `undecodable` (bytes that look like an image at first glance: accepted, then refused when
 * decoded), `cut` (no answer is possible; the receiver should count an incomplete upload).
 */
export type CorruptExpectation = 'refused' | 'undecodable' | 'cut';

export interface CorruptFrame {
  kind: CorruptKind;
  body: Buffer;
  contentType: string;
  expect: CorruptExpectation;
  /**
   * The reason a receiver following Vigil's documented input error reasons (docs/METRICS.md,
   * vigil_input_errors_total) should count it under.
   */
  reason: 'empty' | 'not_an_image' | 'bad_request' | 'too_large' | 'decode_error' | 'incomplete';
}

/** Bytes of a valid PNG header (signature + IHDR with a correct CRC) claiming width x height. */
export function pngHeader(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB
  const type = Buffer.from('IHDR');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(13, 0);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([type, ihdr])) >>> 0, 0);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), len, type, ihdr, crc]);
}

function randomBytes(rng: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(0, 255);
  return b;
}

/**
 * One corrupt frame of `kind`, made from a good JPEG where the kind needs one. `maxBodyBytes` is
 * the receiver's body limit (the `too_large` kind goes 1 KiB over it).
 */
export function corruptFrame(
  kind: CorruptKind,
  goodJpeg: Buffer,
  seed: number,
  maxBodyBytes: number,
): CorruptFrame {
  const rng = new Rng(seed);
  switch (kind) {
    case 'empty':
      return { kind, body: Buffer.alloc(0), contentType: 'image/jpeg', expect: 'refused', reason: 'empty' };
    case 'garbage': {
      const body = randomBytes(rng, 4096);
      body[0] = 0x42; // never a JPEG (FF D8) or PNG (89 50) start
      return {
        kind,
        body,
        contentType: 'application/octet-stream',
        expect: 'refused',
        reason: 'not_an_image',
      };
    }
    case 'wrong_type':
      return {
        kind,
        body: Buffer.from('{"frame":"not here"}'),
        contentType: 'application/json',
        expect: 'refused',
        reason: 'bad_request',
      };
    case 'truncated_jpeg':
      return {
        kind,
        body: goodJpeg.subarray(0, Math.max(4, Math.floor(goodJpeg.length * rng.range(0.2, 0.8)))),
        contentType: 'image/jpeg',
        expect: 'undecodable',
        reason: 'decode_error',
      };
    case 'jpeg_header_garbage':
      return {
        kind,
        body: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(rng, 2048)]),
        contentType: 'image/jpeg',
        expect: 'undecodable',
        reason: 'decode_error',
      };
    case 'png_header_garbage':
      return {
        kind,
        body: Buffer.concat([pngHeader(640, 480), randomBytes(rng, 2048)]),
        contentType: 'image/png',
        expect: 'undecodable',
        reason: 'decode_error',
      };
    case 'pixel_bomb':
      return {
        kind,
        body: pngHeader(40_000, 40_000),
        contentType: 'image/png',
        expect: 'undecodable',
        reason: 'decode_error',
      };
    case 'too_large': {
      const body = Buffer.alloc(maxBodyBytes + 1024, 0);
      goodJpeg.copy(body, 0, 0, Math.min(goodJpeg.length, body.length));
      return { kind, body, contentType: 'image/jpeg', expect: 'refused', reason: 'too_large' };
    }
    case 'cut_upload':
      return { kind, body: goodJpeg, contentType: 'image/jpeg', expect: 'cut', reason: 'incomplete' };
  }
}

/** What came back for one corrupt frame: the status and the receiver's reason (`code`), if any. */
export interface CorruptOutcome {
  kind: CorruptKind;
  id: string;
  /** HTTP status; 0 when no answer came (a cut upload, or the receiver closed the connection). */
  status: number;
  /** The `code` of a JSON error answer (e.g. `not_an_image`), or the body's first bytes. */
  code?: string | undefined;
  error?: string | undefined;
}

/**
 * Sends one corrupt frame as raw HTTP/1.1 to `url` (the frame endpoint), naming it `id` in
 * X-Request-Id; a `cut_upload` announces the whole body, sends half and drops the connection.
 */
export function sendCorruptFrame(
  url: string,
  frame: CorruptFrame,
  id: string,
  timeoutMs = 10_000,
): Promise<CorruptOutcome> {
  const u = new URL(url);
  const cut = frame.expect === 'cut';
  const head =
    `POST ${u.pathname}${u.search} HTTP/1.1\r\n` +
    `Host: ${u.host}\r\n` +
    `Content-Type: ${frame.contentType}\r\n` +
    `Content-Length: ${frame.body.length}\r\n` +
    `X-Request-Id: ${id}\r\n` +
    `X-Frame-Origin: chaos-${frame.kind}-${id}\r\n` +
    'Connection: close\r\n\r\n';
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port || 80) });
    let answer = Buffer.alloc(0);
    let done = false;
    const finish = (status: number, code?: string, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ kind: frame.kind, id, status, code, error });
    };
    const timer = setTimeout(() => finish(0, undefined, 'no answer within the time limit'), timeoutMs);
    socket.on('connect', () => {
      socket.write(head);
      if (cut) {
        socket.write(frame.body.subarray(0, Math.floor(frame.body.length / 2)), () =>
          setTimeout(() => finish(0, undefined, 'upload cut by the client'), 50),
        );
        return;
      }
      socket.write(frame.body);
    });
    socket.on('data', (d: Buffer) => {
      answer = Buffer.concat([answer, d]);
      const text = answer.toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(text)?.[1] ?? 0);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd))?.[1] ?? NaN);
      const body = text.slice(headEnd + 4);
      if (Number.isFinite(length) && Buffer.byteLength(body, 'latin1') < length) return;
      let code: string | undefined;
      let error: string | undefined;
      try {
        const json = JSON.parse(body) as { code?: string; error?: string };
        code = json.code;
        error = json.error;
      } catch {
        error = body.slice(0, 200);
      }
      finish(status, code, error);
    });
    // A refused upload is answered and its connection closed while we may still be writing.
    socket.on('error', (err) => {
      if (answer.length === 0) finish(0, undefined, err.message);
    });
    socket.on('close', () => finish(0, undefined, answer.length ? 'incomplete answer' : 'connection closed'));
  });
}
