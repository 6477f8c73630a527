import { afterEach, describe, expect, it } from 'vitest';
import { ModbusRtuPoller } from '../../../adapters/serial/modbus-source.js';
import { ModbusRtuSource } from '../../../runtime/config/sources/serial.js';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { SimModbusDevice, type SimRegister } from '../../../simulator/serial/modbus-device.js';
import type { PtyPair } from '../../../simulator/serial/pty-pair.js';
import type { ReadPlan } from '../../../adapters/serial/registers.js';
import type { Reading } from '../../../runtime/telemetry/reading.js';
import { Recorder } from '../recorder.js';
import { Cleanup, delay, FAST_RECONNECT, loggingRecorder } from './helpers.js';

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
  beforeStart: (source: ModbusRtuPoller) => void = () => undefined,
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
  beforeStart(source);
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

  it('keeps polling when a register cannot be decoded, and hands over the registers that can', async () => {
    const pair = await cleanup.pair();
    await slave(pair, drive());
    const rec = new Recorder();
    // The device answers every request correctly, so the only way to get an answer shorter than a
    // register needs is a read that asks for too few words: shorten the first one (holding 0..4)
    // by a word, which leaves energy_total (uint32 at 3..4) half outside it.
    const source = await poller(pair, rec, MAP, {}, (s) => {
      const plans = (s as unknown as { plans: ReadPlan[] }).plans;
      expect(plans[0]).toMatchObject({ table: 'holding', start: 0, count: 5 });
      plans[0]!.count = 4;
    });
    const broken = () =>
      rec.rejections.filter((r) => r.reason === 'malformed' && r.message.includes('drive-1/energy_total:'));
    await rec.until(
      () => broken().length >= 3 && rec.series('drive-1', 'energy').length >= 3,
      'three polls past the broken register',
    );
    expect(broken()[0]!.message).toContain(`holding register 3 (uint32) on ${pair.hostPath}`);
    expect(broken()[0]!.origin).toBe(pair.hostPath);
    expect(rec.series('drive-1', 'energy_total')).toEqual([]);
    for (const tag of Object.keys(VALUES).filter((t) => t !== 'energy_total')) {
      expect(latest(rec, tag), tag).toBeCloseTo(VALUES[tag]!, 4);
    }
    expect(source.state()).toBe('up');
  });

  it('hands over the registers already read when the line goes away in the middle of a poll', async () => {
    const pair = await cleanup.pair();
    await slave(pair, drive());
    const rec = new Recorder();
    const batches: Reading[][] = [];
    const record = rec.readings;
    rec.readings = (batch) => {
      batches.push([...batch]);
      record(batch);
    };
    // Nobody answers unit 8, so every poll reads unit 7's holding registers, waits a full timeout
    // for unit 8, and only then reads unit 7's input registers.
    // (Reads go out in the order the registers are first mentioned, per unit and table.)
    const registers = [
      ...MAP.filter((r) => r.table === 'holding'),
      { tag: 'ghost', unitId: 8, table: 'holding', address: 0 },
      ...MAP.filter((r) => r.table === 'input'),
    ];
    const source = await poller(pair, rec, registers, { timeoutMs: 1000 });
    await rec.until(() => batches.length >= 1, 'a first poll');
    // A new poll began as the batch was handed over; its holding reads take a few ms.
    await delay(300);
    const before = batches.length;
    await pair.unplug();
    await rec.until(() => batches.length > before, 'the readings of the interrupted poll', 5000);
    const last = batches.at(-1)!.map((r) => r.tag);
    expect(last).toEqual(expect.arrayContaining(['speed', 'energy', 'energy_total', 'temperature']));
    expect(last).not.toContain('current');
    expect(last).not.toContain('pressure');
    expect(source.state()).toBe('down');
  });
});
