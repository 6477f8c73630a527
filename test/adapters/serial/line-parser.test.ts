import { describe, expect, it } from 'vitest';
import {
  createLineParser,
  excerpt,
  LineSplitter,
  parseNumber,
  parseTime,
  type LineParserOptions,
  type LineResult,
  type SplitEvent,
} from '../../../adapters/serial/line-parser.js';
import { SerialLineSource } from '../../../runtime/config/sources/serial.js';

function lines(events: SplitEvent[]): string[] {
  return events.map((e) => (e.kind === 'line' ? e.bytes.toString() : `<too_large ${e.bytes}>`));
}

describe('LineSplitter', () => {
  it('cuts lines on the delimiter across chunk boundaries', () => {
    const s = new LineSplitter('lf', 100);
    expect(lines(s.push(Buffer.from('a,1\nb,')))).toEqual(['a,1']);
    expect(lines(s.push(Buffer.from('2\n\nc')))).toEqual(['b,2', '']);
    expect(lines(s.push(Buffer.from('\n')))).toEqual(['c']);
  });

  it('finds a CRLF delimiter split between two chunks', () => {
    const s = new LineSplitter('crlf', 100);
    expect(lines(s.push(Buffer.from('x=1\r')))).toEqual([]);
    expect(lines(s.push(Buffer.from('\ny=2\r\n')))).toEqual(['x=1', 'y=2']);
    // A lone CR is part of the line under crlf.
    expect(lines(s.push(Buffer.from('a\rb\r\n')))).toEqual(['a\rb']);
  });

  it('refuses an overlong line once per maxLineBytes and resumes after the next delimiter', () => {
    const s = new LineSplitter('lf', 16);
    const events = s.push(Buffer.from('x'.repeat(20)));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'too_large' });
    // 36 more bytes without a delimiter: two more refusals (16 each), 4 carried over.
    expect(s.push(Buffer.from('y'.repeat(36))).map((e) => e.kind)).toEqual(['too_large', 'too_large']);
    expect(lines(s.push(Buffer.from('zzz\nok,1\n')))).toEqual(['ok,1']);
  });

  it('refuses an overlong line that arrives whole', () => {
    const s = new LineSplitter('lf', 16);
    const events = s.push(Buffer.from(`${'q'.repeat(17)}\nfine\n`));
    expect(events.map((e) => e.kind)).toEqual(['too_large', 'line']);
    expect(events[0]).toMatchObject({ bytes: 17 });
    expect(lines(events.slice(1))).toEqual(['fine']);
  });

  it('forgets a partial line on reset', () => {
    const s = new LineSplitter('cr', 100);
    s.push(Buffer.from('half'));
    s.reset();
    expect(lines(s.push(Buffer.from('whole\r')))).toEqual(['whole']);
  });
});

describe('parseNumber and parseTime', () => {
  it('takes plain decimals and refuses everything else with a reason', () => {
    expect(parseNumber(' -12.5 ')).toEqual({ ok: true, value: -12.5 });
    expect(parseNumber('1e3')).toEqual({ ok: true, value: 1000 });
    expect(parseNumber('.5')).toEqual({ ok: true, value: 0.5 });
    for (const t of ['NaN', 'nan', 'inf', '-Infinity', '+INF', '1e999'])
      expect(parseNumber(t)).toMatchObject({ ok: false, reason: 'not_finite' });
    for (const t of ['abc', '0x10', '12,5', '1.2.3', '', '12 V', 'true'])
      expect(parseNumber(t)).toMatchObject({ ok: false, reason: 'not_a_number' });
  });

  it('reads ms, s and ISO timestamps', () => {
    expect(parseTime('1718000000123', 'ms')).toBe(1718000000123);
    expect(parseTime('1718000000.5', 's')).toBe(1718000000500);
    expect(parseTime('2024-06-10T06:13:20Z', 'iso')).toBe(Date.UTC(2024, 5, 10, 6, 13, 20));
    expect(parseTime('yesterday', 'ms')).toBeUndefined();
    expect(parseTime('12', 'iso')).toBeUndefined();
    expect(parseTime('-5', 'ms')).toBeUndefined();
  });
});

describe('excerpt', () => {
  it('escapes what is not printable and shortens long input', () => {
    expect(excerpt(Buffer.from([0x41, 0x00, 0xff, 0x0a, 0x22]))).toBe('"A\\x00\\xff\\n\\""');
    expect(excerpt('z'.repeat(100), 10)).toBe('"zzzzzzzzzz"… (100 bytes)');
  });
});

function parser(format: unknown, extra: Record<string, unknown> = {}): (line: string) => LineResult | null {
  const cfg = SerialLineSource.parse({ type: 'serial-line', path: '/dev/null', format, ...extra });
  const options: LineParserOptions = { format: cfg.format, asset: cfg.asset, timeFormat: cfg.timeFormat };
  const parse = createLineParser(options);
  return (line) => parse(Buffer.from(line, 'latin1'));
}

describe('csv lines', () => {
  const parse = parser({ type: 'csv', columns: ['asset', 'time', 'temperature', '-', 'pressure'] });

  it('maps columns to asset, time and tags', () => {
    expect(parse('pump-1,1718000000000,21.5,ignored,3.25\r')).toEqual({
      ok: true,
      asset: 'pump-1',
      time: 1718000000000,
      values: [
        { tag: 'temperature', value: 21.5 },
        { tag: 'pressure', value: 3.25 },
      ],
      problems: [],
    });
  });

  it('names the column of a value that is not a finite number, keeping the others', () => {
    const r = parse('pump-1,1718000000000,NaN,x,abc');
    expect(r).toMatchObject({ ok: true, values: [] });
    if (!r?.ok) throw new Error('expected a parsed line');
    expect(r.problems.map((p) => p.reason)).toEqual(['not_finite', 'not_a_number']);
    expect(r.problems[0]!.message).toContain('column 3 (temperature)');
    expect(r.problems[0]!.message).toContain('"NaN"');
    expect(r.problems[1]!.message).toContain('column 5 (pressure)');
    expect(parse('pump-1,1718000000000,Infinity,x,2')).toMatchObject({
      ok: true,
      values: [{ tag: 'pressure', value: 2 }],
      problems: [{ reason: 'not_finite' }],
    });
  });

  it('gives an empty field as a value-less reading', () => {
    expect(parse('pump-1,1718000000000,,x,2')).toMatchObject({
      ok: true,
      values: [
        { tag: 'temperature', value: null },
        { tag: 'pressure', value: 2 },
      ],
    });
  });

  it('refuses the wrong field count, a bad asset, a bad time, and line noise', () => {
    expect(parse('pump-1,1,2')).toMatchObject({ ok: false, reason: 'malformed' });
    expect(parse('pump 1,1718000000000,1,x,2')).toMatchObject({ ok: false, reason: 'malformed' });
    const t = parse('pump-1,soon,1,x,2');
    expect(t).toMatchObject({ ok: false, reason: 'bad_timestamp' });
    expect(t?.ok === false && t.message).toContain('column 2 (time)');
    const noise = parse('pu\u0000mp,\u00ff\u0001,1,x,2');
    expect(noise).toMatchObject({ ok: false, reason: 'malformed' });
    expect(noise?.ok === false && noise.message).toContain('\\x00');
  });

  it('skips blank lines without counting them', () => {
    expect(parse('   \r')).toBeNull();
  });

  it('uses the configured asset and the receive time when the line has neither', () => {
    const p = parser({ type: 'csv', columns: ['a', 'b'], separator: ';' }, { asset: 'press-2' });
    expect(p('1;2')).toMatchObject({ ok: true, asset: 'press-2', time: null });
  });
});

describe('key=value lines', () => {
  it('takes every key as a tag by default, with asset and time keys', () => {
    const parse = parser({ type: 'kv' });
    expect(parse('asset=pump-1 time=1718000000000 temperature=21.5, pressure=3')).toEqual({
      ok: true,
      asset: 'pump-1',
      time: 1718000000000,
      values: [
        { tag: 'temperature', value: 21.5 },
        { tag: 'pressure', value: 3 },
      ],
      problems: [],
    });
    expect(parse('asset=pump-1 temperature=oops')).toMatchObject({
      ok: true,
      problems: [
        { reason: 'not_a_number', message: expect.stringContaining("key 'temperature'") as unknown },
      ],
    });
    expect(parse('temperature=1')).toMatchObject({ ok: false, reason: 'malformed' });
    expect(parse('asset=pump-1 garbage')).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('reads only mapped keys when a mapping is given, with other separators', () => {
    const parse = parser(
      {
        type: 'kv',
        pairSeparator: ';',
        keyValueSeparator: ':',
        assetKey: 'id',
        timeKey: 'ts',
        tags: { T: 'temperature' },
      },
      { timeFormat: 's' },
    );
    expect(parse('id:fan-3;ts:1718000000;T:40.5;uptime:99')).toEqual({
      ok: true,
      asset: 'fan-3',
      time: 1718000000000,
      values: [{ tag: 'temperature', value: 40.5 }],
      problems: [],
    });
  });
});

describe('regex lines', () => {
  it('maps named groups to tags', () => {
    const parse = parser(
      {
        type: 'regex',
        pattern: String.raw`(?<asset>\S+) T=(?<t>\S+)C(?: P=(?<pressure>\S+))?`,
        tags: { t: 'temperature' },
      },
      { asset: 'fallback' },
    );
    expect(parse('oven-2 T=180.5C P=1.2')).toMatchObject({
      ok: true,
      asset: 'oven-2',
      values: [
        { tag: 'temperature', value: 180.5 },
        { tag: 'pressure', value: 1.2 },
      ],
    });
    expect(parse('oven-2 T=180.5C')).toMatchObject({
      ok: true,
      values: [{ tag: 'temperature', value: 180.5 }],
    });
    expect(parse('hello')).toMatchObject({ ok: false, reason: 'malformed' });
  });
});

describe('serial config schemas', () => {
  it('refuses settings that cannot work', () => {
    const base = {
      type: 'serial-line',
      path: '/dev/ttyUSB0',
      asset: 'a',
      format: { type: 'csv', columns: ['x'] },
    };
    expect(SerialLineSource.safeParse(base).success).toBe(true);
    expect(SerialLineSource.safeParse({ ...base, baudRate: 9601 }).success).toBe(false);
    expect(SerialLineSource.safeParse({ ...base, asset: undefined }).success).toBe(false);
    expect(
      SerialLineSource.safeParse({ ...base, format: { type: 'csv', columns: ['x', 'x'] } }).success,
    ).toBe(false);
    expect(SerialLineSource.safeParse({ ...base, format: { type: 'regex', pattern: '(?<x>' } }).success).toBe(
      false,
    );
    expect(SerialLineSource.safeParse({ ...base, format: { type: 'regex', pattern: '\\d+' } }).success).toBe(
      false,
    );
    expect(SerialLineSource.safeParse({ ...base, parity: 'mark' }).success).toBe(false);
    expect(SerialLineSource.safeParse({ ...base, speed: 9600 }).success).toBe(false);
  });
});
