import { afterEach, describe, expect, it } from 'vitest';
import { ModbusRtuPoller } from '../../../adapters/serial/modbus-source.js';
import { ModbusRtuSource } from '../../../runtime/config/sources/serial.js';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { SimModbusDevice, type SimRegister } from '../../../simulator/serial/modbus-device.js';
import type { PtyPair } from '../../../simulator/serial/pty-pair.js';
import { Recorder } from '../recorder.js';
import { Cleanup, FAST_RECONNECT, loggingRecorder } from './helpers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** One map for both sides: what the device keeps where, and what the source reads. */
const MAP: SimRegister[] = [
  { table: 'holding', address: 0, tag: 'speed', type: 'int16', scale: 0.1 },
  { table: 'holding', address: 1, tag: 'energy', type: 'uint32', wordOrder: 'big', scale: 0.5 },
  { table: 'holding', address: 3, tag: 'energy_total', type: 'uint32', wordOrder: 'little' },
  { table: 'holding', address: 10, tag: 'temperature', type: 'float32', wordOrder: 'big' },
  {
    table: 'holding',
    address: 12,
    tag: 'temperature_2',
    type: 'float32',
    wordOrder: 'little',
    offset: -273.15,
  },
  { table: 'input', address: 0, tag: 'current', type: 'int16', offset: 100 },
  { table: 'input', address: 1, tag: 'pressure', type: 'int32', wordOrder: 'little', scale: 0.001 },
];

const VALUES: Record<string, number> = {
  speed: -123.4,
  energy: 123456.5,
  energy_total: 4_000_000_000,
  temperature: 21.25,
  temperature_2: 20.5,
  current: 95,
  pressure: -1234.567,
};

function drive(): ScriptedMachine {
  const m = new ScriptedMachine(
    'drive-1',
    MAP.map((r) => ({ name: r.tag })),
  );
  for (const [tag, v] of Object.entries(VALUES)) m.set(tag, v);
  return m;
}

async function slave(pair: PtyPair, machine: ScriptedMachine, registers = MAP): Promise<SimModbusDevice> {
  const d = new SimModbusDevice({ path: pair.devicePath, unitId: 7, machine, registers });
  await d.start();
  return cleanup.add(d);
}

async function poller(
  pair: PtyPair,
  rec: Recorder,
  registers: unknown[] = MAP,
  extra: Record<string, unknown> = {},
): Promise<ModbusRtuPoller> {
  const cfg = ModbusRtuSource.parse({
    type: 'modbus-rtu',
    path: pair.hostPath,
    baudRate: 19200,
    parity: 'even',
    asset: 'drive-1',
    unitId: 7,
    pollIntervalMs: 50,
    timeoutMs: 150,
    reconnect: FAST_RECONNECT,
    registers,
    ...extra,
  });
  const source = cleanup.add(new ModbusRtuPoller('rtu1', cfg, rec));
  await source.start(new AbortController().signal);
  return source;
}

const latest = (rec: Recorder, tag: string) => rec.series('drive-1', tag).at(-1)?.value;

describe('Modbus RTU source through a socat pty pair', () => {
  it('reads holding and input registers of every type, word order and scaling', async () => {
    const pair = await cleanup.pair();
    const machine = drive();
    await slave(pair, machine);
    const rec = new Recorder();
    const source = await poller(pair, rec);
    expect(source.state()).toBe('up');

    await rec.until(() => MAP.every((r) => rec.series('drive-1', r.tag).length >= 2), 'every register');
    // float32 keeps about 7 significant digits: 20.5 + 273.15 arrives as 20.49999...
    for (const [tag, v] of Object.entries(VALUES)) expect(latest(rec, tag), tag).toBeCloseTo(v, 4);
    expect(rec.series('drive-1', 'speed').at(-1)).toMatchObject({ source: 'rtu1', quality: 'good' });
    expect(rec.rejections).toEqual([]);

    machine.set('speed', 42.1);
    machine.set('temperature_2', -40.25);
    await rec.until(
      () =>
        Math.abs(latest(rec, 'speed')! - 42.1) < 1e-9 &&
        Math.abs(latest(rec, 'temperature_2')! + 40.25) < 1e-4,
      'changed values',
    );
  });

  it('counts CRC errors, timeouts and exceptions and keeps polling', async () => {
    const pair = await cleanup.pair();
    const machine = drive();
    const dev = await slave(pair, machine);
    const rec = new Recorder();
    const source = await poller(pair, rec, [...MAP, { tag: 'not_mapped', table: 'holding', address: 200 }]);
    await rec.until(() => rec.received.length >= MAP.length * 2, 'first readings');
    const count = (reason: string) => rec.rejections.filter((r) => r.reason === reason).length;
    expect(count('device_error')).toBeGreaterThan(0);
    expect(rec.rejections.find((r) => r.reason === 'device_error')?.message).toContain(
      'holding registers 200..200 of unit 7',
    );

    dev.corruptCrc(2);
    await rec.until(() => count('crc_error') >= 2, 'two CRC errors');
    dev.dropResponses(2);
    await rec.until(() => count('timeout') >= 2, 'two timeouts');
    expect(rec.rejections.find((r) => r.reason === 'timeout')?.message).toContain('no answer within 150 ms');
    expect(rec.rejections.every((r) => r.origin === pair.hostPath)).toBe(true);

    const before = rec.received.length;
    await rec.until(() => rec.received.length >= before + MAP.length * 3, 'readings after the faults');
    expect(count('crc_error')).toBe(2);
    expect(count('timeout')).toBe(2);
    expect(source.state()).toBe('up');

    // A dead sensor: an integer register answers exception 4, a float register NaN.
    machine.set('speed', Number.NaN, 'bad');
    machine.set('temperature', Number.NaN, 'bad');
    await rec.until(
      () =>
        rec.rejections.some((r) => r.reason === 'not_finite' && r.message.includes('drive-1/temperature:')),
      'NaN refused',
    );
    await rec.until(
      () => rec.rejections.some((r) => r.reason === 'device_error' && r.message.includes('exception 4')),
      'exception 4',
    );
    expect(rec.received.every((r) => r.value !== null && Number.isFinite(r.value))).toBe(true);
  });

  it('goes down when the line is unplugged and polls again when it is back', async () => {
    const pair = await cleanup.pair();
    await slave(pair, drive());
    const { rec, logs } = loggingRecorder();
    const source = await poller(pair, rec);
    await rec.until(() => rec.received.length >= MAP.length, 'first readings');

    await pair.unplug();
    await rec.until(() => source.state() === 'down', "state 'down'");
    const during = rec.received.length;
    await pair.replug();
    await rec.until(
      () => source.state() === 'up' && rec.reconnects === 1 && rec.received.length >= during + MAP.length * 2,
      'readings after re-plugging',
    );
    expect(logs.some((l) => l.msg === 'serial port open again')).toBe(true);
  });

  it('says so when no device answers at all', async () => {
    const pair = await cleanup.pair();
    const { rec, logs } = loggingRecorder();
    const source = await poller(pair, rec, MAP, { unitId: 9, timeoutMs: 50 }); // nobody has unit 9
    await rec.until(() => source.state() === 'down', "state 'down' with the port open");
    expect(rec.rejections.every((r) => r.reason === 'timeout')).toBe(true);
    expect(logs.some((l) => l.level === 40 && l.msg.includes('answered 3 polls in a row'))).toBe(true);
  });
});
