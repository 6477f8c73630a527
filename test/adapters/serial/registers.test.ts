import { describe, expect, it } from 'vitest';
import {
  decodeRegister,
  planReads,
  rawValue,
  resolveRegisters,
  type RegisterSpec,
} from '../../../adapters/serial/registers.js';
import { ModbusRtuSource } from '../../../runtime/config/sources/serial.js';
import { crc16, encode, withCrc } from '../../../simulator/serial/modbus-device.js';
import { parseStty, uartBits, uartReceive, type UartFraming } from '../../../simulator/serial/uart.js';

function specs(registers: unknown[], extra: Record<string, unknown> = {}): RegisterSpec[] {
  return resolveRegisters(
    ModbusRtuSource.parse({ type: 'modbus-rtu', path: '/dev/null', asset: 'm', registers, ...extra }),
  );
}

describe('register decoding', () => {
  it('decodes 16- and 32-bit types in both word orders', () => {
    expect(rawValue([0xfb2e], 0, { type: 'int16', wordOrder: 'big' })).toBe(-1234);
    expect(rawValue([0xfb2e], 0, { type: 'uint16', wordOrder: 'big' })).toBe(64302);
    expect(rawValue([0x0001, 0x1170], 0, { type: 'uint32', wordOrder: 'big' })).toBe(70000);
    expect(rawValue([0x1170, 0x0001], 0, { type: 'uint32', wordOrder: 'little' })).toBe(70000);
    expect(rawValue([0xfffe, 0xee90], 0, { type: 'int32', wordOrder: 'big' })).toBe(-70000);
    expect(rawValue([0x4148, 0x0000], 0, { type: 'float32', wordOrder: 'big' })).toBe(12.5);
    expect(rawValue([0x0000, 0x4148], 0, { type: 'float32', wordOrder: 'little' })).toBe(12.5);
    expect(rawValue([0x7fc0, 0x0000], 0, { type: 'float32', wordOrder: 'big' })).toBeNaN();
    expect(() => rawValue([1], 0, { type: 'uint32', wordOrder: 'big' })).toThrow(RangeError);
  });

  it('applies scale and offset', () => {
    const [r] = specs([{ tag: 't', table: 'holding', address: 0, type: 'int16', scale: 0.1, offset: -40 }]);
    expect(decodeRegister([0xfb2e], 0, r!)).toBeCloseTo(-163.4, 10);
  });

  it('round-trips through the simulator encoding', () => {
    for (const type of ['uint16', 'int16', 'uint32', 'int32', 'float32'] as const)
      for (const wordOrder of ['big', 'little'] as const) {
        const [r] = specs([
          { tag: 't', table: 'input', address: 0, type, wordOrder, scale: 0.5, offset: 10 },
        ]);
        const words = encode(123.5, { type, wordOrder, scale: 0.5, offset: 10 });
        expect(decodeRegister(words, 0, r!)).toBeCloseTo(123.5, 6);
      }
  });
});

describe('read planning', () => {
  it('groups touching registers per unit and table, never across gaps or the size limit', () => {
    const regs = specs(
      [
        { tag: 'a', table: 'holding', address: 0 },
        { tag: 'b', table: 'holding', address: 1, type: 'float32' },
        { tag: 'c', table: 'holding', address: 3 },
        { tag: 'd', table: 'holding', address: 10 },
        { tag: 'e', table: 'input', address: 0 },
        { tag: 'f', table: 'holding', address: 0, unitId: 2 },
        { tag: 'g', table: 'holding', address: 4, type: 'uint32' },
      ],
      { maxRegistersPerRead: 5 },
    );
    const plans = planReads(regs, 5).map((p) => ({
      unit: p.unitId,
      table: p.table,
      start: p.start,
      count: p.count,
      tags: p.registers.map((r) => r.tag),
    }));
    expect(plans).toEqual([
      { unit: 1, table: 'holding', start: 0, count: 4, tags: ['a', 'b', 'c'] },
      { unit: 1, table: 'holding', start: 4, count: 2, tags: ['g'] },
      { unit: 1, table: 'holding', start: 10, count: 1, tags: ['d'] },
      { unit: 1, table: 'input', start: 0, count: 1, tags: ['e'] },
      { unit: 2, table: 'holding', start: 0, count: 1, tags: ['f'] },
    ]);
  });

  it('refuses registers without an asset and duplicates', () => {
    const bad = ModbusRtuSource.safeParse({
      type: 'modbus-rtu',
      path: '/dev/ttyUSB0',
      registers: [{ tag: 't', table: 'holding', address: 0 }],
    });
    expect(bad.error?.issues[0]?.path).toEqual(['registers', 0, 'asset']);
    const dup = ModbusRtuSource.safeParse({
      type: 'modbus-rtu',
      path: '/dev/ttyUSB0',
      asset: 'm',
      registers: [
        { tag: 't', table: 'holding', address: 0 },
        { tag: 't', table: 'input', address: 0 },
      ],
    });
    expect(dup.success).toBe(false);
  });
});

describe('simulator: CRC and UART emulation', () => {
  it('computes the Modbus CRC (spec example)', () => {
    // Read 3 holding registers from 0x006B of unit 0x11: CRC 0x8776, sent 76 87.
    expect(crc16(Buffer.from([0x11, 0x03, 0x00, 0x6b, 0x00, 0x03]))).toBe(0x8776);
    expect([...withCrc(Buffer.from([0x11, 0x03, 0x00, 0x6b, 0x00, 0x03])).subarray(6)]).toEqual([0x76, 0x87]);
  });

  const f = (baudRate: number, extra: Partial<UartFraming> = {}): UartFraming => ({
    baudRate,
    dataBits: 8,
    parity: 'none',
    stopBits: 1,
    ...extra,
  });

  it('passes bytes unchanged when both ends agree', () => {
    const text = Buffer.from('pump-1,1718000000000,21.5,3.25\n');
    expect(uartReceive(text, f(9600), f(9600)).toString()).toBe(text.toString());
    expect(uartReceive(text, f(9600, { parity: 'even' }), f(9600, { parity: 'even' })).toString()).toBe(
      text.toString(),
    );
    expect(uartBits(Buffer.from([0x41]), f(9600))).toEqual(Uint8Array.from([0, 1, 0, 0, 0, 0, 0, 1, 0, 1]));
  });

  it('turns a line into delimiter-free noise when the baud rates differ', () => {
    const text = Buffer.from('pump-1,1718000000000,21.5,3.25\n'.repeat(4));
    for (const [tx, rx] of [
      [9600, 115200],
      [115200, 9600],
      [9600, 19200],
    ] as const) {
      const got = uartReceive(text, f(tx), f(rx));
      expect(got.equals(text)).toBe(false);
      expect(got.toString('latin1')).not.toContain('pump-1');
    }
    expect(uartReceive(text, f(9600), f(115200)).includes(0x0a)).toBe(false);
  });

  it('reads speed, stop bits and whether a program set the line up from stty output', () => {
    expect(parseStty('speed 115200 baud; rows 0;\n-parenb -parodd cs8 hupcl cstopb cread clocal')).toEqual({
      baudRate: 115200,
      stopBits: 2,
      configured: true,
    });
    expect(parseStty('speed 9600 baud; line = 0;\n-parenb cs8 -cstopb cread clocal\n-crtscts')).toEqual({
      baudRate: 9600,
      stopBits: 1,
      configured: true,
    });
    // A fresh pty, as socat makes it: the kernel's default speed, nobody's choice.
    expect(
      parseStty('speed 38400 baud; line = 0;\n-parenb cs8 -hupcl -cstopb cread -clocal -crtscts'),
    ).toEqual({
      baudRate: 38400,
      stopBits: 1,
      configured: false,
    });
    expect(parseStty('stty: /dev/x: Inappropriate ioctl')).toBeUndefined();
  });
});
