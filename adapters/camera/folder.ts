import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { watch, type FSWatcher } from 'chokidar';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import type { CameraFolderSource as CameraFolderSourceSchema } from '../../runtime/config/schema.js';
import { errorMessage } from '../../runtime/errors.js';
import type { InputRejectReason, Source, SourceContext, SourceState } from '../../runtime/pipeline/source.js';
import { sniffImageType } from '../../runtime/pipeline/preprocess.js';

export type CameraFolderConfig = z.infer<typeof CameraFolderSourceSchema>;

export interface FolderCameraOptions {
  /**
   * A file whose size has settled but that still lacks its end marker is given up as
   * 'incomplete' after this long without growing. Default: 10 x stableMs, at least 1 s.
   */
  incompleteAfterMs?: number;
  /**
   * Period of a full directory listing that backs up the file-system events. inotify does not see
   * writes made by another host on an SMB/NFS mount, which is exactly where cameras upload to, so
   * a cheap readdir now and then makes sure no frame is left lying in the folder. Default 2000 ms.
   */
  rescanMs?: number;
}

/** Folder (inside the watched one) where refused files are moved, for an operator to look at. */
export const REJECTED_FOLDER = 'rejected';

/** A file seen in the folder that has not yet been emitted or refused. */
interface PendingFile {
  size: number;
  mtimeMs: number;
  /** performance.now() when size or mtime last changed (or when first seen). */
  changedAt: number;
}

/** Size and mtime of a file already dealt with (afterRead 'keep'): a change means a new frame. */
type Signature = string;

/**
 * Frames dropped as JPEG/PNG files into a folder, as industrial cameras do over FTP or SMB.
 *
 * Why not chokidar's awaitWriteFinish: it knows only "size stopped changing" and fires once,
 * whereas an upload that stalls half-way also stops changing. So chokidar here only says "look at
 * this file", and our own check decides when a file is whole: size and mtime unchanged for
 * `stableMs`, and the bytes end with the format's end marker (JPEG EOI FF D9, PNG IEND chunk).
 *
 * Policy for refused files: with afterRead 'delete' a refused file (empty, too large, not an
 * image, incomplete) is moved into `rejected/` inside the watched folder instead of deleted, so
 * that an operator can look at what the camera sent; the folder itself stays clean. With 'keep'
 * refused files stay where they are and are not reported again until they change.
 */
export class FolderCameraSource implements Source {
  readonly type = 'camera-folder';
  private readonly log: SourceContext['log'];
  private readonly incompleteAfterMs: number;
  private readonly rescanMs: number;
  private readonly pollMs: number;
  private readonly extensions: Set<string>;
  /** The watched folder as an absolute path, so that watcher paths compare equal. */
  private readonly dir: string;
  private readonly pending = new Map<string, PendingFile>();
  private readonly settled = new Map<string, Signature>();
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private checking = false;
  private current: SourceState = 'stopped';
  private stopped = false;
  private wakeStart: (() => void) | undefined;

  constructor(
    readonly name: string,
    private readonly config: CameraFolderConfig,
    private readonly ctx: SourceContext,
    options: FolderCameraOptions = {},
  ) {
    this.log = ctx.log.child({ source: name, path: config.path });
    this.incompleteAfterMs = options.incompleteAfterMs ?? Math.max(10 * config.stableMs, 1000);
    this.rescanMs = options.rescanMs ?? 2000;
    // Look at pending files a few times per stable period, so a whole file is noticed soon after
    // it settles without spinning on stat() for large stableMs.
    this.pollMs = Math.min(Math.max(Math.floor(config.stableMs / 3), 10), 250);
    this.extensions = new Set(config.extensions.map((e) => e.toLowerCase()));
    this.dir = path.resolve(config.path);
  }

  state(): SourceState {
    return this.current;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.watcher) return;
    this.stopped = false;
    this.current = 'starting';
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    const dir = this.dir;
    const existed = await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!existed) {
      await mkdir(dir, { recursive: true });
      this.log.info('created the camera folder, which did not exist; point the camera upload (FTP/SMB) here');
    }
    if (signal.aborted || this.stopped) {
      await this.stop();
      return;
    }

    const watcher = watch(dir, {
      depth: 0, // rejected/ and any other subfolder are not frames
      ignoreInitial: true, // files already there are listed below, oldest first
      ignored: (p) => p !== dir && path.dirname(p) === dir && this.isIgnoredName(path.basename(p)),
    });
    this.watcher = watcher;
    watcher.on('add', (p) => this.noticed(p));
    watcher.on('change', (p) => this.noticed(p));
    watcher.on('unlink', (p) => {
      this.pending.delete(p);
      this.settled.delete(p);
    });
    watcher.on('error', (err) =>
      this.log.warn({ err }, 'folder watcher error; the periodic rescan still picks up files'),
    );
    await new Promise<void>((resolve) => {
      this.wakeStart = resolve; // stop() before 'ready' must not leave start() hanging
      watcher.once('ready', () => resolve());
    });
    this.wakeStart = undefined;
    if (this.stopped) return;

    await this.rescan();
    this.rescanTimer = setInterval(() => void this.rescan(), this.rescanMs);
    this.rescanTimer.unref();
    this.current = 'up';
    this.log.info(
      { stableMs: this.config.stableMs, afterRead: this.config.afterRead },
      'watching camera folder',
    );
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.current = 'stopped';
    clearInterval(this.rescanTimer);
    clearTimeout(this.pollTimer);
    this.rescanTimer = undefined;
    this.pollTimer = undefined;
    const watcher = this.watcher;
    this.watcher = undefined;
    this.pending.clear();
    this.wakeStart?.();
    if (watcher) await watcher.close();
  }

  /** Dotfiles, editors' and FTP servers' temporary names, and extensions that are not frames. */
  private isIgnoredName(base: string): boolean {
    if (base.startsWith('.') || base.endsWith('~')) return true;
    const ext = path.extname(base).toLowerCase();
    if (ext === '.part' || ext === '.tmp' || ext === '.filepart' || ext === '.crdownload') return true;
    return !this.extensions.has(ext);
  }

  private noticed(file: string): void {
    if (this.stopped || this.isIgnoredName(path.basename(file))) return;
    if (!this.pending.has(file))
      this.pending.set(file, { size: -1, mtimeMs: -1, changedAt: performance.now() });
    this.schedulePoll(0);
  }

  /** Lists the folder and queues every candidate not yet known, oldest first. */
  private async rescan(): Promise<void> {
    if (this.stopped) return;
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot list the camera folder; is it still mounted?');
      return;
    }
    const found: Array<{ file: string; mtimeMs: number }> = [];
    for (const base of names) {
      if (this.isIgnoredName(base)) continue;
      const file = path.join(this.dir, base);
      // A file the watcher announced but that was not looked at yet is re-queued in age order
      // below: an event that arrives while the folder is listed must not make it jump the queue.
      if ((this.pending.get(file)?.size ?? -1) !== -1) continue;
      const s = await stat(file).catch(() => undefined);
      if (!s?.isFile()) continue;
      if (this.settled.get(file) === signatureOf(s.size, s.mtimeMs)) continue;
      found.push({ file, mtimeMs: s.mtimeMs });
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs || a.file.localeCompare(b.file));
    for (const f of found) {
      const entry = this.pending.get(f.file);
      if (entry && entry.size !== -1) continue; // checked meanwhile: keep its place
      this.pending.delete(f.file);
      this.noticed(f.file);
    }
  }

  private schedulePoll(delayMs: number): void {
    if (this.stopped || this.checking) return;
    if (this.pollTimer && delayMs > 0) return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => void this.checkPending(), delayMs);
  }

  /** One pass over the pending files, in the order they were noticed; never two passes at once. */
  private async checkPending(): Promise<void> {
    this.pollTimer = undefined;
    if (this.stopped || this.checking) return;
    this.checking = true;
    try {
      for (const [file, entry] of [...this.pending]) {
        if (this.stopped) return;
        try {
          await this.check(file, entry);
        } catch (err) {
          // Defensive: check() handles its own errors; one bad file must never stop the source.
          this.settle(file, undefined);
          this.log.error({ err: errorMessage(err), file }, 'unexpected error while checking a frame file');
        }
      }
    } finally {
      this.checking = false;
    }
    if (this.pending.size > 0) this.schedulePoll(this.pollMs);
  }

  /**
   * A file that vanished between stat and open was renamed or taken away: forget it. Any other
   * read error (typically EACCES: the camera's upload user left it unreadable to Vigil) is
   * refused once, counted as read_error, and not retried until the file changes.
   */
  private readFailed(file: string, origin: string, err: NodeJS.ErrnoException, sig: string): void {
    if (err.code === 'ENOENT') {
      this.pending.delete(file);
      return;
    }
    this.refuse(
      file,
      'read_error',
      `cannot read ${origin}: ${err.message}; check the file permissions of the upload`,
      sig,
    );
  }

  private async check(file: string, entry: PendingFile): Promise<void> {
    const origin = path.basename(file);
    const s = await stat(file).catch((err: NodeJS.ErrnoException) => err);
    if (s instanceof Error) {
      this.pending.delete(file);
      if (s.code !== 'ENOENT')
        this.refuse(file, 'read_error', `cannot stat ${origin}: ${s.message}`, undefined);
      return;
    }
    const now = performance.now();
    if (s.size !== entry.size || s.mtimeMs !== entry.mtimeMs) {
      entry.size = s.size;
      entry.mtimeMs = s.mtimeMs;
      entry.changedAt = now;
      if (this.config.stableMs > 0) return;
    }
    if (now - entry.changedAt < this.config.stableMs) return;
    const sig = signatureOf(s.size, s.mtimeMs);
    if (this.settled.get(file) === sig) {
      this.pending.delete(file); // an event without a change (afterRead 'keep'): already dealt with
      return;
    }

    if (s.size === 0) return this.refuse(file, 'empty', `${origin} is empty (0 bytes)`, sig);
    if (s.size > this.config.maxFileBytes) {
      return this.refuse(
        file,
        'too_large',
        `${origin} is ${s.size} bytes, over the limit of ${this.config.maxFileBytes} (maxFileBytes)`,
        sig,
      );
    }
    const ends = await readEnds(file, s.size).catch((err: NodeJS.ErrnoException) => err);
    if (ends instanceof Error) return this.readFailed(file, origin, ends, sig);
    const { head, tail } = ends;
    const contentType = sniffImageType(head);
    if (!contentType) {
      return this.refuse(
        file,
        'not_an_image',
        `${origin} is not a JPEG or PNG image (unrecognised first bytes)`,
        sig,
      );
    }
    if (!hasEndMarker(contentType, tail)) {
      if (now - entry.changedAt >= this.incompleteAfterMs) {
        this.refuse(
          file,
          'incomplete',
          `${origin} stopped growing at ${s.size} bytes without the ${contentType.toUpperCase()} end marker ` +
            `for ${Math.round(now - entry.changedAt)} ms: the upload was cut off; check the camera's network link`,
          sig,
        );
      }
      return; // still uploading, or stalled: look again on the next pass
    }

    // While the store refuses writes (a full disk), a frame taken now could only be dropped, and
    // deleted after reading: the file stays where it is until the store takes writes again.
    if (this.ctx.storeRefusing?.()) return;
    const arrivedAt = performance.now();
    const data = await readFile(file).catch((err: NodeJS.ErrnoException) => err);
    if (data instanceof Error) return this.readFailed(file, origin, data, sig);
    if (data.length !== s.size) return; // changed between stat and read: look again
    // A file carries no id of its own: the frame's sample id (its trace id) is born here.
    const id = uuidv7();
    if (this.log.isLevelEnabled('debug'))
      this.log.debug({ sampleId: id, origin, bytes: data.length }, 'frame received');
    this.ctx.emit({
      kind: 'frame',
      id,
      source: this.name,
      receivedAt: Date.now(),
      arrivedAt,
      data,
      origin,
      contentType: contentType === 'jpeg' ? 'image/jpeg' : 'image/png',
    });
    this.pending.delete(file);
    if (this.config.afterRead === 'delete') {
      await unlink(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return;
        // Remember it, or it would be emitted again on the next rescan.
        this.settled.set(file, sig);
        this.log.warn(
          { err: err.message, file },
          'read a frame file but cannot delete it; check folder permissions',
        );
      });
    } else {
      this.settled.set(file, sig);
    }
  }

  private refuse(file: string, reason: InputRejectReason, message: string, sig: Signature | undefined): void {
    const origin = path.basename(file);
    this.ctx.reject(reason, message, origin);
    this.settle(file, sig);
    if (this.config.afterRead === 'delete') void this.moveAside(file);
  }

  private settle(file: string, sig: Signature | undefined): void {
    this.pending.delete(file);
    if (sig !== undefined) this.settled.set(file, sig);
  }

  private async moveAside(file: string): Promise<void> {
    const dir = path.join(this.dir, REJECTED_FOLDER);
    const base = path.basename(file);
    try {
      await mkdir(dir, { recursive: true });
      const target = await freeName(dir, base);
      await rename(file, target);
      this.settled.delete(file);
      this.log.info({ file: base, movedTo: target }, 'moved a refused frame file aside');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.log.warn(
        { err: errorMessage(err), file: base },
        'cannot move a refused frame file into rejected/',
      );
    }
  }
}

function signatureOf(size: number, mtimeMs: number): Signature {
  return `${size}:${mtimeMs}`;
}

/** The first and last few bytes of a file, without reading the whole of it. */
async function readEnds(file: string, size: number): Promise<{ head: Buffer; tail: Buffer }> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(Math.min(8, size));
    await fh.read(head, 0, head.length, 0);
    const tailLength = Math.min(TAIL_BYTES, size);
    const tail = Buffer.alloc(tailLength);
    await fh.read(tail, 0, tailLength, size - tailLength);
    return { head, tail };
  } finally {
    await fh.close();
  }
}

/** Enough of the end of a file to find the end marker behind a little padding. */
const TAIL_BYTES = 64;
const PNG_IEND = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);

/**
 * Whether the bytes end the way a whole image ends. Some cameras pad files to a block size with
 * zero bytes after the JPEG EOI, so trailing zeros are skipped for JPEG.
 */
export function hasEndMarker(type: 'jpeg' | 'png', tail: Buffer): boolean {
  if (type === 'png')
    return tail.length >= PNG_IEND.length && tail.subarray(-PNG_IEND.length).equals(PNG_IEND);
  let end = tail.length;
  while (end > 0 && tail[end - 1] === 0x00) end--;
  return end >= 2 && tail[end - 2] === 0xff && tail[end - 1] === 0xd9;
}

/** `dir/base`, or `dir/<stem>-<n><ext>` when a file of that name was already moved aside. */
async function freeName(dir: string, base: string): Promise<string> {
  const ext = path.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  for (let n = 0; ; n++) {
    const candidate = path.join(dir, n === 0 ? base : `${stem}-${n}${ext}`);
    const exists = await stat(candidate).then(
      () => true,
      () => false,
    );
    if (!exists || n > 1000) return candidate;
  }
}
