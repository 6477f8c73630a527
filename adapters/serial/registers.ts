import type { ModbusRegister, ModbusRtuSource } from '../../runtime/config/sources/serial.js';

/**
 * Pure Modbus register arithmetic: which reads cover the configured registers, and how the
 * 16-bit words of an answer become values. Bytes inside a word are always big-endian (the
 * Modbus spec); only the order of the two words of a 32-bit value varies between devices.
 */

/** A configured register with the source's defaults filled in. */
export interface RegisterSpec extends Omit<ModbusRegister, 'asset' | 'unitId'> {
  asset: string;
  unitId: number;
}

/** One request: `count` registers from `start` of one table of one unit. */
export interface ReadPlan {
  unitId: number;
  table: RegisterSpec['table'];
  start: number;
  count: number;
  registers: RegisterSpec[];
}

export function registerWidth(type: RegisterSpec['type']): 1 | 2 {
  return type === 'uint16' || type === 'int16' ? 1 : 2;
}

/** Fills in the source-level asset and unit id of each register. */
export function resolveRegisters(
  config: Pick<ModbusRtuSource, 'asset' | 'unitId' | 'registers'>,
): RegisterSpec[] {
  return config.registers.map((r) => ({
    ...r,
    asset: (r.asset ?? config.asset)!,
    unitId: r.unitId ?? config.unitId,
  }));
}

/**
 * Groups registers into as few reads as the device allows: registers of the same unit and table
 * whose addresses touch or overlap share one read of at most `maxPerRead` registers. Gaps are
 * never bridged, because many devices answer a read that covers an unmapped address with an
 * exception instead of filler.
 */
export function planReads(registers: readonly RegisterSpec[], maxPerRead: number): ReadPlan[] {
  const byTable = new Map<string, RegisterSpec[]>();
  for (const r of registers) {
    const key = `${r.unitId}/${r.table}`;
    const list = byTable.get(key) ?? [];
    list.push(r);
    byTable.set(key, list);
  }
  const plans: ReadPlan[] = [];
  for (const list of byTable.values()) {
    const sorted = [...list].sort((a, b) => a.address - b.address);
    let current: ReadPlan | undefined;
    for (const r of sorted) {
      const end = r.address + registerWidth(r.type);
      if (current && r.address <= current.start + current.count && end - current.start <= maxPerRead) {
        current.count = Math.max(current.count, end - current.start);
        current.registers.push(r);
        continue;
      }
      current = {
        unitId: r.unitId,
        table: r.table,
        start: r.address,
        count: end - r.address,
        registers: [r],
      };
      plans.push(current);
    }
  }
  return plans;
}

const scratch = Buffer.alloc(4);

/** The raw (unscaled) value of a register from the words of its read, `at` its offset in them. */
export function rawValue(
  words: readonly number[],
  at: number,
  r: Pick<RegisterSpec, 'type' | 'wordOrder'>,
): number {
  const w0 = words[at];
  if (w0 === undefined) throw new RangeError(`no word at ${at} in an answer of ${words.length}`);
  switch (r.type) {
    case 'uint16':
      return w0 & 0xffff;
    case 'int16':
      return ((w0 & 0xffff) << 16) >> 16;
  }
  const w1 = words[at + 1];
  if (w1 === undefined) throw new RangeError(`no word at ${at + 1} in an answer of ${words.length}`);
  const [hi, lo] = r.wordOrder === 'big' ? [w0, w1] : [w1, w0];
  scratch.writeUInt16BE(hi & 0xffff, 0);
  scratch.writeUInt16BE(lo & 0xffff, 2);
  switch (r.type) {
    case 'uint32':
      return scratch.readUInt32BE(0);
    case 'int32':
      return scratch.readInt32BE(0);
    case 'float32':
      return scratch.readFloatBE(0);
  }
}

/** The engineering value: raw × scale + offset. NaN or ±Infinity when a float32 register holds one. */
export function decodeRegister(words: readonly number[], at: number, r: RegisterSpec): number {
  return rawValue(words, at, r) * r.scale + r.offset;
}
