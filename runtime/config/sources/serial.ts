import { z } from 'zod';
import { TelemetryExpectations } from '../../quality/config.js';
import { AssetName, Reconnect, TagLimits, TagName } from './telemetry.js';

/**
 * Serial telemetry: text lines from a device on a serial port (RS-232/RS-485/USB-serial), and
 * Modbus RTU polling of holding and input registers, as found on RS-485 lines in factories.
 */

/** The rates a UART and a USB-serial adapter reliably support; anything else is a typo. */
export const STANDARD_BAUD_RATES = [
  300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,
] as const;

/** The line settings and reconnect behaviour every serial source shares. */
export const SerialPortSettings = {
  path: z
    .string()
    .min(1)
    .describe(
      'Device path of the serial port, e.g. /dev/ttyUSB0 or (stable across re-plugging) /dev/serial/by-id/usb-FTDI_...',
    ),
  baudRate: z
    .literal(STANDARD_BAUD_RATES)
    .default(9600)
    .describe(
      'Baud rate; must match the device: a mismatch shows up as garbage lines (serial-line) or as timeouts and CRC errors (modbus-rtu)',
    ),
  dataBits: z.literal([7, 8]).default(8).describe('Data bits per character'),
  parity: z.enum(['none', 'even', 'odd']).default('none').describe('Parity bit'),
  stopBits: z.literal([1, 2]).default(1).describe('Stop bits'),
  reconnect: Reconnect.describe(
    'Back-off between attempts to re-open the port when it is missing or was unplugged',
  ),
  limits: TagLimits,
  expectations: TelemetryExpectations.optional().describe(
    'Data expectations on the readings of this source: out-of-spec data is stored, flagged, counted and alerted on (docs/DATA-QUALITY.md)',
  ),
};

const FieldName = z
  .string()
  .min(1)
  .max(200)
  // eslint-disable-next-line no-control-regex -- control characters are what this refuses
  .regex(/^[^\u0000-\u001f]+$/, 'no control characters');

const CsvFormat = z
  .strictObject({
    type: z.literal('csv').describe('Delimited values in fixed columns'),
    columns: z
      .array(z.union([z.literal(['asset', 'time', '-']), TagName]))
      .min(1)
      .describe(
        "What each field of a line is, in order: a tag name, 'asset' (the asset id), 'time' (the device's timestamp) or '-' (skip the field). A line with a different number of fields is refused as malformed",
      ),
    separator: z.string().length(1).default(',').describe('Field separator, one character (, ; or a tab)'),
  })
  .refine((f) => f.columns.filter((c) => c === 'asset').length <= 1, {
    message: "at most one 'asset' column",
  })
  .refine((f) => f.columns.filter((c) => c === 'time').length <= 1, { message: "at most one 'time' column" })
  .refine(
    (f) => {
      const tags = f.columns.filter((c) => c !== 'asset' && c !== 'time' && c !== '-');
      return tags.length > 0 && new Set(tags).size === tags.length;
    },
    { message: 'at least one tag column, and each tag only once' },
  )
  .describe('Delimited values in fixed columns, e.g. `pump-1,1718000000000,21.5,3.2`');

const KvFormat = z
  .strictObject({
    type: z.literal('kv').describe('key=value pairs'),
    pairSeparator: z
      .string()
      .length(1)
      .optional()
      .describe(
        'Separator between key=value pairs, one character; by default any run of spaces, tabs and commas',
      ),
    keyValueSeparator: z.string().length(1).default('=').describe('Separator between a key and its value'),
    assetKey: FieldName.default('asset').describe(
      'Key whose value is the asset id; lines without it belong to `asset`',
    ),
    timeKey: FieldName.default('time').describe(
      "Key whose value is the device's timestamp; lines without it are stamped on receipt",
    ),
    tags: z
      .record(FieldName, TagName)
      .optional()
      .describe(
        'Key → tag name. When given, only these keys are read and other keys are ignored; when omitted, every other key is a tag of the same name',
      ),
  })
  .describe('key=value pairs, e.g. `asset=pump-1 temperature=21.5 pressure=3.2`');

const RegexFormat = z
  .strictObject({
    type: z.literal('regex').describe('A regular expression with named groups'),
    pattern: z
      .string()
      .min(1)
      .refine(
        (p) => {
          try {
            new RegExp(p);
            return true;
          } catch {
            return false;
          }
        },
        { message: 'not a valid JavaScript regular expression' },
      )
      .refine((p) => /\(\?<[A-Za-z_$][\w$]*>/.test(p), {
        message: 'needs at least one named group, like (?<temperature>[-0-9.]+)',
      })
      .describe(
        "JavaScript regular expression matched against the whole line; named groups are tags (group name = tag name), except 'asset' and 'time'. A line that does not match is refused as malformed",
      ),
    tags: z
      .record(z.string().regex(/^[A-Za-z_$][\w$]*$/, 'a regex group name'), TagName)
      .optional()
      .describe('Group name → tag name, for tag names that are not valid group names'),
  })
  .describe('A regular expression with named groups, for devices with a free-form line');

export const LineFormat = z.discriminatedUnion('type', [CsvFormat, KvFormat, RegexFormat]);
export type LineFormat = z.infer<typeof LineFormat>;

export const SerialLineSource = z
  .strictObject({
    type: z
      .literal('serial-line')
      .describe('Text lines (csv, key=value or regex) from a device on a serial port'),
    ...SerialPortSettings,
    asset: AssetName.optional().describe(
      "Asset of every line that does not name one itself (csv column 'asset', kv `assetKey`, regex group 'asset')",
    ),
    delimiter: z
      .enum(['lf', 'crlf', 'cr'])
      .default('lf')
      .describe(
        'End of a line: lf (\\n), crlf (\\r\\n) or cr (\\r). With lf a trailing \\r is dropped too, so CRLF devices also work',
      ),
    format: LineFormat.describe('How a line is split into asset, time and tag values'),
    timeFormat: z
      .enum(['ms', 's', 'iso'])
      .default('ms')
      .describe(
        "How the device's timestamp field is written: ms or s since the epoch, or ISO 8601; without a time field the receive time is used",
      ),
    maxLineBytes: z
      .number()
      .int()
      .min(16)
      .max(1024 * 1024)
      .default(4096)
      .describe(
        'Longer lines are refused as too_large (once per this many bytes) and reading resumes after the next delimiter',
      ),
  })
  .superRefine((c, ctx) => {
    const f = c.format;
    const namesAsset =
      f.type === 'csv'
        ? f.columns.includes('asset')
        : f.type === 'regex'
          ? /\(\?<asset>/.test(f.pattern)
          : true; // kv: a line may carry the asset key; lines without it are refused at run time
    if (!namesAsset && c.asset === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['asset'],
        message: "set `asset`, or give the line format an 'asset' field",
      });
    }
  })
  .describe('Text lines from a device on a serial port (csv, key=value or regex)');
export type SerialLineSource = z.infer<typeof SerialLineSource>;

const ModbusRegister = z
  .strictObject({
    asset: AssetName.optional().describe('Asset of this value; defaults to the source `asset`'),
    tag: TagName.describe('Tag name of the value'),
    unitId: z
      .number()
      .int()
      .min(1)
      .max(247)
      .optional()
      .describe('Modbus unit (slave) address of the device holding it; defaults to the source `unitId`'),
    table: z
      .enum(['holding', 'input'])
      .describe('holding registers (function code 3) or input registers (function code 4)'),
    address: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .describe('Zero-based register address as sent on the wire (register 40001 is holding address 0)'),
    type: z
      .enum(['uint16', 'int16', 'uint32', 'int32', 'float32'])
      .default('uint16')
      .describe('How the register(s) are read: 16-bit types take one register, 32-bit types two'),
    wordOrder: z
      .enum(['big', 'little'])
      .default('big')
      .describe(
        'For 32-bit types: big = high word in the first register (Modbus convention), little = low word first',
      ),
    scale: z.number().default(1).describe('value = raw × scale + offset'),
    offset: z.number().default(0).describe('value = raw × scale + offset'),
  })
  .refine((r) => r.address + (r.type.endsWith('32') ? 1 : 0) <= 65535, {
    message: 'a 32-bit value needs two registers inside 0..65535',
  })
  .describe('One value: where it is (unit, table, address), how it is encoded and which tag it becomes');
export type ModbusRegister = z.infer<typeof ModbusRegister>;

export const ModbusRtuSource = z
  .strictObject({
    type: z
      .literal('modbus-rtu')
      .describe('A Modbus RTU master polling registers of devices on a serial line (RS-485)'),
    ...SerialPortSettings,
    asset: AssetName.optional().describe('Asset of every register that does not name one'),
    unitId: z
      .number()
      .int()
      .min(1)
      .max(247)
      .default(1)
      .describe('Modbus unit (slave) address polled unless a register names another'),
    pollIntervalMs: z
      .number()
      .int()
      .min(10)
      .default(1000)
      .describe('Every register is read once per interval'),
    timeoutMs: z
      .number()
      .int()
      .min(10)
      .default(500)
      .describe('A request without an answer in this time is counted as a timeout'),
    maxRegistersPerRead: z
      .number()
      .int()
      .min(1)
      .max(125)
      .default(125)
      .describe(
        'Contiguous registers are read together up to this many per request; lower it for devices with small buffers',
      ),
    registers: z
      .array(ModbusRegister)
      .min(1)
      .describe(
        'The values to poll, at least one; each asset/tag only once. Neighbouring registers of the same unit and table are read in one request',
      ),
  })
  .superRefine((c, ctx) => {
    c.registers.forEach((r, i) => {
      if (r.asset === undefined && c.asset === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['registers', i, 'asset'],
          message: 'set `asset` on the register or on the source',
        });
      }
    });
    const seen = new Set<string>();
    c.registers.forEach((r, i) => {
      const key = `${r.asset ?? c.asset}/${r.tag}`;
      if (seen.has(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['registers', i, 'tag'],
          message: `${key} is mapped twice`,
        });
      }
      seen.add(key);
    });
  })
  .describe('Modbus RTU master polling holding and input registers on a serial line');
export type ModbusRtuSource = z.infer<typeof ModbusRtuSource>;
