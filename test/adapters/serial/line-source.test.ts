import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { GARBAGE_RUN_HINT, SerialLineReader } from '../../../adapters/serial/line-source.js';
import { SerialLineSource } from '../../../runtime/config/sources/serial.js';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { SimLineDevice, type SimLineDeviceOptions } from '../../../simulator/serial/line-device.js';
import { PtyPair } from '../../../simulator/serial/pty-pair.js';
import { Recorder } from '../recorder.js';
import { Cleanup, delay, FAST_RECONNECT, loggingRecorder } from './helpers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

function pump(): ScriptedMachine {
  const m = new ScriptedMachine('pump-1', [{ name: 'temperature' }, { name: 'pressure' }]);
  m.set('temperature', 21.5);
  m.set('pressure', 3.25);
  return m;
}

async function device(
  pair: PtyPair,
  machine: ScriptedMachine,
  extra: Partial<SimLineDeviceOptions> = {},
): Promise<SimLineDevice> {
  const d = new SimLineDevice({
    path: pair.devicePath,
    hostPath: pair.hostPath,
    machine,
    format: 'csv',
    rateHz: 20,
    ...extra,
  });
  await d.start();
  return cleanup.add(d);
}

async function reader(
  pair: PtyPair,
  rec: Recorder,
  config: Record<string, unknown>,
  name = 'line1',
): Promise<SerialLineReader> {
  const cfg = SerialLineSource.parse({
    type: 'serial-line',
    path: pair.hostPath,
    reconnect: FAST_RECONNECT,
    format: { type: 'csv', columns: ['asset', 'time', 'temperature', 'pressure'] },
    ...config,
  });
  const source = cleanup.add(new SerialLineReader(name, cfg, rec));
  await source.start(new AbortController().signal);
  return source;
}

describe('serial line source through a socat pty pair', () => {
  it('reads csv lines as readings with the asset, tags, values and the device time', async () => {
    const pair = await cleanup.pair();
    const machine = pump();
    await device(pair, machine);
    const rec = new Recorder();
    const started = Date.now();
    const source = await reader(pair, rec, {});
    expect(source.state()).toBe('up');

    await rec.until(() => rec.series('pump-1', 'temperature').length >= 3, 'csv readings');
    const t = rec.series('pump-1', 'temperature').at(-1)!;
    expect(t).toMatchObject({ source: 'line1', asset: 'pump-1', value: 21.5, quality: 'good' });
    expect(t.sourceTime).toBeGreaterThanOrEqual(started);
    expect(t.sourceTime).toBeLessThanOrEqual(t.receivedAt);
    expect(rec.series('pump-1', 'pressure').at(-1)?.value).toBe(3.25);

    machine.set('temperature', -4.75);
    machine.set('pressure', Number.NaN, 'bad', 'BadSensorFailure');
    await rec.until(() => rec.received.some((r) => r.value === -4.75), 'the new temperature');
    await rec.until(
      () => rec.series('pump-1', 'pressure').some((r) => r.quality === 'bad'),
      'an empty field',
    );
    expect(rec.series('pump-1', 'pressure').find((r) => r.quality === 'bad')).toMatchObject({
      value: null,
      status: 'NoValue',
    });
    expect(rec.received.every((r) => r.value === null || Number.isFinite(r.value))).toBe(true);
  });

  it('reads key=value lines, taking the asset from the line', async () => {
    const pair = await cleanup.pair();
    const machine = new ScriptedMachine('fan-2', [{ name: 'rpm' }, { name: 'vibration_rms' }]);
    machine.set('rpm', 1450);
    machine.set('vibration_rms', 0.125);
    await device(pair, machine, { format: 'kv', delimiter: '\r\n' });
    const rec = new Recorder();
    await reader(pair, rec, { format: { type: 'kv' }, delimiter: 'crlf' });

    await rec.until(
      () => rec.series('fan-2', 'rpm').length >= 2 && rec.series('fan-2', 'vibration_rms').length >= 2,
      'key=value readings',
    );
    expect(rec.series('fan-2', 'rpm').at(-1)).toMatchObject({ value: 1450, quality: 'good' });
    expect(rec.series('fan-2', 'vibration_rms').at(-1)?.value).toBe(0.125);
  });

  it('counts garbage, an overlong line and unusable values without stopping', async () => {
    const pair = await cleanup.pair();
    const dev = await device(pair, pump());
    const rec = new Recorder();
    const source = await reader(pair, rec, { maxLineBytes: 128 });
    await rec.until(() => rec.received.length >= 4, 'first readings');

    dev.garbage(60);
    dev.send('\n');
    dev.send(`${'x'.repeat(400)}\n`);
    dev.send(`pump-1,${Date.now()},NaN,abc\n`);
    dev.send(`pump-1,${Date.now()},-Infinity,1e999\n`);
    const has = (reason: string, text = '') =>
      rec.rejections.some((r) => r.reason === reason && r.message.includes(text));
    await rec.until(
      () =>
        has('malformed') &&
        has('too_large') &&
        has('not_finite', 'temperature') &&
        has('not_a_number', 'pressure') &&
        rec.rejections.filter((r) => r.reason === 'not_finite').length >= 3,
      'every kind of refusal',
    );
    expect(rec.rejections.every((r) => r.origin === pair.hostPath)).toBe(true);
    const nan = rec.rejections.find((r) => r.reason === 'not_finite')!;
    expect(nan.message).toContain('column 3 (temperature)');
    expect(nan.message).toContain('"NaN"');
    expect(
      rec.rejections.some(
        (r) => r.reason === 'not_finite' && r.message.startsWith('column 4 (pressure) is "1e999"'),
      ),
    ).toBe(true);

    const before = rec.received.length;
    await rec.until(() => rec.received.length >= before + 6, 'readings after the bad input');
    expect(source.state()).toBe('up');
    expect(rec.received.every((r) => r.value === null || Number.isFinite(r.value))).toBe(true);
  });

  it('shows a wrong baud rate as counted garbage and one hint, and reads once the rate is fixed', async () => {
    const pair = await cleanup.pair();
    const { rec, logs } = loggingRecorder();
    const wrong = await reader(pair, rec, { baudRate: 115200, maxLineBytes: 128 });
    // Started after the port was set up, the device sees the mismatch before its first line; it
    // looks again only once a second, so the other way round a line or two might get through.
    const dev = await device(pair, pump(), { baudRate: 9600 });
    expect(dev.mismatched).toBe(true);
    const hints = () => logs.filter((l) => l.level === 40 && l.msg.includes('baud rate'));

    await rec.until(() => hints().length > 0, 'the wrong-baud-rate hint', 20_000);
    expect(rec.received).toHaveLength(0);
    expect(rec.rejections.length).toBeGreaterThanOrEqual(GARBAGE_RUN_HINT);
    expect(rec.rejections.every((r) => r.reason === 'too_large' || r.reason === 'malformed')).toBe(true);
    expect(hints()[0]!.msg).toContain('115200 8N1');
    // One hint, not one per line, however long the garbage goes on.
    const seen = rec.rejections.length;
    await rec.until(() => rec.rejections.length >= seen + GARBAGE_RUN_HINT, 'more garbage');
    expect(hints()).toHaveLength(1);
    expect(wrong.state()).toBe('up');
    await wrong.stop();
    expect(dev.mismatched).toBe(true); // the port keeps the settings its last user gave it

    const fixed = new Recorder();
    await reader(pair, fixed, { baudRate: 9600, maxLineBytes: 128 }, 'line1-fixed');
    await rec.until(() => fixed.series('pump-1', 'temperature').length >= 3, 'readings at the right rate');
    expect(fixed.series('pump-1', 'temperature').at(-1)?.value).toBe(21.5);
    expect(dev.mismatched).toBe(false);
    expect(rec.received).toHaveLength(0);
  });

  it('goes down when the adapter is unplugged and reads again when it is back', async () => {
    const pair = await cleanup.pair();
    await device(pair, pump());
    const { rec, logs } = loggingRecorder();
    const source = await reader(pair, rec, {});
    await rec.until(() => rec.received.length >= 4, 'first readings');
    expect(rec.reconnects).toBe(0);

    await pair.unplug();
    expect(existsSync(pair.hostPath)).toBe(false);
    await rec.until(() => source.state() === 'down', "state 'down'");
    expect(logs.some((l) => l.level === 40 && l.msg.includes('went away'))).toBe(true);
    const during = rec.received.length;
    await delay(300);
    expect(rec.received.length).toBe(during);

    await pair.replug();
    await rec.until(
      () => source.state() === 'up' && rec.reconnects === 1 && rec.received.length >= during + 6,
      'readings after re-plugging',
    );
    expect(rec.series('pump-1', 'temperature').at(-1)?.value).toBe(21.5);
  });

  it('starts without the port and opens it once it appears', async () => {
    const pair = await cleanup.pair();
    await pair.unplug();
    const { rec, logs } = loggingRecorder();
    const source = await reader(pair, rec, {});
    expect(source.state()).toBe('down');
    expect(
      logs.some((l) => l.level === 40 && l.msg.includes(`cannot open serial port ${pair.hostPath}`)),
    ).toBe(true);

    await pair.replug();
    await device(pair, pump());
    await rec.until(() => rec.received.length >= 2, 'readings once the port exists');
    expect(source.state()).toBe('up');
    expect(rec.reconnects).toBe(0); // never up before: a first connection, not a re-connection
  });

  it('fails with how to install socat when it is missing', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(PtyPair.create()).rejects.toThrow(/socat is not installed.*apt-get install socat/);
    } finally {
      process.env.PATH = path;
    }
  });
});
