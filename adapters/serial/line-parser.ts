import type { LineFormat, SerialLineSource } from '../../runtime/config/sources/serial.js';
import type { InputRejectReason } from '../../runtime/pipeline/source.js';

/**
 * The pure half of the serial line source: bytes → lines (LineSplitter) and a line → asset, time
 * and tag values (createLineParser). No I/O, so that every odd input a device can send on a real
 * line is covered by unit tests.
 */

export type Delimiter = SerialLineSource['delimiter'];

const DELIMITERS: Record<Delimiter, Buffer> = {
  lf: Buffer.from('\n'),
  crlf: Buffer.from('\r\n'),
  cr: Buffer.from('\r'),
};

export type SplitEvent =
  | { kind: 'line'; bytes: Buffer }
  /** maxLineBytes went by without a delimiter; `head` is the start of the overlong line. */
  | { kind: 'too_large'; head: Buffer; bytes: number };

/**
 * Cuts a byte stream into lines. A line longer than maxLineBytes is refused once, then once more
 * for every further maxLineBytes without a delimiter (so that a line that never ends, which is
 * what a wrong baud rate often delivers, keeps being counted), and reading resynchronises after
 * the next delimiter. Memory stays bounded by maxLineBytes whatever the device sends.
 */
export class LineSplitter {
  private readonly delimiter: Buffer;
  private pending: Buffer = Buffer.alloc(0);
  /** Inside an overlong line: bytes are dropped until the next delimiter. */
  private discarding = false;
  /** Bytes dropped since the last too_large event while discarding. */
  private discarded = 0;

  constructor(
    delimiter: Delimiter,
    private readonly maxLineBytes: number,
  ) {
    this.delimiter = DELIMITERS[delimiter];
  }

  /** Forget a partial line, e.g. after the port was re-opened: its start belonged to another session. */
  reset(): void {
    this.pending = Buffer.alloc(0);
    this.discarding = false;
    this.discarded = 0;
  }

  push(chunk: Buffer): SplitEvent[] {
    const events: SplitEvent[] = [];
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let pos = 0;
    for (;;) {
      const idx = buf.indexOf(this.delimiter, pos);
      if (idx === -1) break;
      const line = buf.subarray(pos, idx);
      pos = idx + this.delimiter.length;
      if (this.discarding) {
        this.discarding = false;
        this.discarded = 0;
      } else if (line.length > this.maxLineBytes) {
        events.push({ kind: 'too_large', head: Buffer.from(line.subarray(0, 64)), bytes: line.length });
      } else {
        events.push({ kind: 'line', bytes: Buffer.from(line) });
      }
    }
    const rest = buf.subarray(pos);
    // A multi-byte delimiter may be split across chunks: keep its possible first bytes.
    const keep = this.delimiter.length - 1;
    if (this.discarding) {
      const dropped = Math.max(0, rest.length - keep);
      this.discarded += dropped;
      while (this.discarded >= this.maxLineBytes) {
        this.discarded -= this.maxLineBytes;
        events.push({ kind: 'too_large', head: Buffer.alloc(0), bytes: this.maxLineBytes });
      }
      this.pending = Buffer.from(rest.subarray(dropped));
    } else if (rest.length > this.maxLineBytes + keep) {
      events.push({ kind: 'too_large', head: Buffer.from(rest.subarray(0, 64)), bytes: rest.length });
      this.discarding = true;
      this.discarded = 0;
      this.pending = Buffer.from(rest.subarray(rest.length - keep));
    } else {
      this.pending = Buffer.from(rest);
    }
    return events;
  }
}

/** A short, printable rendering of bytes a device sent, for log lines and reject messages. */
export function excerpt(data: Buffer | string, max = 48): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let out = '';
  const n = Math.min(bytes.length, max);
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x22) out += '\\"';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else if (b === 0x09) out += '\\t';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x0a) out += '\\n';
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `"${out}"${bytes.length > max ? `… (${bytes.length} bytes)` : ''}`;
}

// Decimal numbers as devices print them; deliberately no hex, no thousands separators, no units.
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const NOT_FINITE = /^[+-]?(?:nan|inf|infinity)$/i;
const ASSET = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
// eslint-disable-next-line no-control-regex -- control characters are what this refuses
const TAG = /^[^\u0000-\u001f#+]{1,200}$/;
// Control characters other than tab: a line that has them is line noise, not text.
// eslint-disable-next-line no-control-regex -- control characters are what this refuses
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export type NumberResult =
  { ok: true; value: number } | { ok: false; reason: 'not_a_number' | 'not_finite'; why: string };

/** A field that must be a number: NaN, infinities and anything else that is not a plain decimal are refused. */
export function parseNumber(text: string): NumberResult {
  const t = text.trim();
  if (NOT_FINITE.test(t)) return { ok: false, reason: 'not_finite', why: 'not a finite number' };
  if (!NUMBER.test(t)) return { ok: false, reason: 'not_a_number', why: 'not a number' };
  const value = Number(t);
  // 1e999 parses to Infinity: as unusable as the word.
  if (!Number.isFinite(value)) return { ok: false, reason: 'not_finite', why: 'not a finite number' };
  return { ok: true, value };
}

export type TimeFormat = SerialLineSource['timeFormat'];

/** The device's timestamp in ms since the epoch, or undefined when the text is not one. */
export function parseTime(text: string, format: TimeFormat): number | undefined {
  const t = text.trim();
  if (format === 'iso') {
    // Date.parse also takes "1" or "March 7"; insist on a date at least.
    if (!/^\d{4}-\d{2}-\d{2}/.test(t)) return undefined;
    const ms = Date.parse(t);
    return Number.isFinite(ms) ? ms : undefined;
  }
  if (!NUMBER.test(t)) return undefined;
  const n = Number(t) * (format === 's' ? 1000 : 1);
  return Number.isFinite(n) && n >= 0 ? Math.round(n) : undefined;
}

/** One tag value found in a line; `value` null when the field was empty (the device sent nothing). */
export interface LineValue {
  tag: string;
  value: number | null;
}

export interface LineProblem {
  reason: InputRejectReason;
  message: string;
}

export type LineResult =
  /** The line has the expected shape; some fields may still have been refused (`problems`). */
  | { ok: true; asset: string; time: number | null; values: LineValue[]; problems: LineProblem[] }
  /** Nothing usable in the line. */
  | { ok: false; reason: InputRejectReason; message: string };

export interface LineParserOptions {
  format: LineFormat;
  asset?: string | undefined;
  timeFormat: TimeFormat;
}

/** Returns null for an empty line: devices print blank lines, which are nothing to count. */
export type LineParser = (line: Buffer) => LineResult | null;

/** Fields of a line, before numbers are checked: where each came from, for messages. */
interface Fields {
  asset: { where: string; text: string } | undefined;
  time: { where: string; text: string } | undefined;
  tags: Array<{ where: string; tag: string; text: string }>;
}

type Splitter = (line: string) => Fields | string;

/**
 * Builds the parser for one configured format. Every refusal names the field and quotes the
 * line, so that an integrator can see which column or key of which device is wrong.
 */
export function createLineParser(options: LineParserOptions): LineParser {
  const split = fieldSplitter(options.format);
  return (bytes) => {
    const text = decodeLine(bytes);
    if (text === undefined) {
      return { ok: false, reason: 'malformed', message: `line is not text: ${excerpt(bytes)}` };
    }
    const line = text.trim();
    if (line === '') return null;
    const quoted = excerpt(line);
    const fields = split(line);
    if (typeof fields === 'string')
      return { ok: false, reason: 'malformed', message: `${fields}: ${quoted}` };

    let asset = options.asset;
    if (fields.asset !== undefined) {
      const a = fields.asset.text.trim();
      if (!ASSET.test(a)) {
        return {
          ok: false,
          reason: 'malformed',
          message: `${fields.asset.where} is ${excerpt(a)}, not an asset id, in line ${quoted}`,
        };
      }
      asset = a;
    }
    if (asset === undefined) {
      return {
        ok: false,
        reason: 'malformed',
        message: `line names no asset and no \`asset\` is configured: ${quoted}`,
      };
    }

    let time: number | null = null;
    if (fields.time !== undefined) {
      const t = parseTime(fields.time.text, options.timeFormat);
      if (t === undefined) {
        return {
          ok: false,
          reason: 'bad_timestamp',
          message: `${fields.time.where} is ${excerpt(fields.time.text.trim())}, not a timestamp in ${options.timeFormat} format, in line ${quoted}`,
        };
      }
      time = t;
    }

    const values: LineValue[] = [];
    const problems: LineProblem[] = [];
    for (const f of fields.tags) {
      if (f.text.trim() === '') {
        values.push({ tag: f.tag, value: null });
        continue;
      }
      const n = parseNumber(f.text);
      if (n.ok) values.push({ tag: f.tag, value: n.value });
      else
        problems.push({
          reason: n.reason,
          message: `${f.where} is ${excerpt(f.text.trim())}, ${n.why}, in line ${quoted}`,
        });
    }
    return { ok: true, asset, time, values, problems };
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The line as text, or undefined when it is line noise (invalid UTF-8, control characters). */
function decodeLine(bytes: Buffer): string | undefined {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  // A trailing CR (CRLF device, lf delimiter) or a leading LF (CRLF device, cr delimiter) is
  // part of the line ending, not noise.
  text = text.replace(/^\n+/, '').replace(/\r+$/, '');
  return CONTROL.test(text) ? undefined : text;
}

function fieldSplitter(format: LineFormat): Splitter {
  switch (format.type) {
    case 'csv':
      return csvSplitter(format);
    case 'kv':
      return kvSplitter(format);
    case 'regex':
      return regexSplitter(format);
  }
}

function csvSplitter(format: Extract<LineFormat, { type: 'csv' }>): Splitter {
  const columns = format.columns;
  return (line) => {
    const parts = line.split(format.separator);
    if (parts.length !== columns.length) {
      return `expected ${columns.length} fields separated by ${excerpt(format.separator)}, got ${parts.length}`;
    }
    const fields: Fields = { asset: undefined, time: undefined, tags: [] };
    columns.forEach((c, i) => {
      const text = parts[i]!;
      const where = `column ${i + 1}`;
      if (c === '-') return;
      if (c === 'asset') fields.asset = { where: `${where} (asset)`, text };
      else if (c === 'time') fields.time = { where: `${where} (time)`, text };
      else fields.tags.push({ where: `${where} (${c})`, tag: c, text });
    });
    return fields;
  };
}

function kvSplitter(format: Extract<LineFormat, { type: 'kv' }>): Splitter {
  const pairSep = format.pairSeparator ?? /[\s,]+/;
  const kvSep = format.keyValueSeparator;
  const mapping = format.tags;
  return (line) => {
    const tokens = line.split(pairSep).filter((t) => t.trim() !== '');
    if (tokens.length === 0) return 'no key=value pairs';
    const fields: Fields = { asset: undefined, time: undefined, tags: [] };
    // A repeated key: the last value is the device's latest word.
    const tags = new Map<string, { where: string; tag: string; text: string }>();
    for (const token of tokens) {
      const at = token.indexOf(kvSep);
      if (at <= 0) return `${excerpt(token)} is not a key${kvSep}value pair`;
      const key = token.slice(0, at).trim();
      const text = token.slice(at + kvSep.length);
      const where = `key '${key}'`;
      if (key === format.assetKey) fields.asset = { where, text };
      else if (key === format.timeKey) fields.time = { where, text };
      else {
        const tag = mapping === undefined ? key : mapping[key];
        if (tag === undefined) continue; // a mapping lists the keys wanted; others are ignored
        if (!TAG.test(tag)) return `${excerpt(key)} is not a usable tag name`;
        tags.set(tag, { where, tag, text });
      }
    }
    fields.tags = [...tags.values()];
    return fields;
  };
}

function regexSplitter(format: Extract<LineFormat, { type: 'regex' }>): Splitter {
  const re = new RegExp(`^(?:${format.pattern})$`);
  const mapping = format.tags ?? {};
  return (line) => {
    const m = re.exec(line);
    if (!m) return 'line does not match the configured pattern';
    const fields: Fields = { asset: undefined, time: undefined, tags: [] };
    for (const [group, text] of Object.entries(m.groups ?? {})) {
      if (text === undefined) continue; // an optional group the line did not have
      const where = `group '${group}'`;
      if (group === 'asset') fields.asset = { where, text };
      else if (group === 'time') fields.time = { where, text };
      else fields.tags.push({ where, tag: mapping[group] ?? group, text });
    }
    return fields;
  };
}
