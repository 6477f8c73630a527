import { afterEach, describe, expect, it } from 'vitest';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { DEFAULT_SETTINGS_POLL_MS, SimLineDevice } from '../../../simulator/serial/line-device.js';
import { Recorder } from '../recorder.js';
import { Cleanup } from './helpers.js';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe('simulated line device', () => {
  it("runs stty for the host's settings once a second, and never without a host path", async () => {
    const machine = new ScriptedMachine('pump-1', [{ name: 'temperature' }]);
    machine.set('temperature', 21.5);
    const watched = await cleanup.pair();
    const unwatched = await cleanup.pair();
    const started = Date.now();
    const watching = cleanup.add(
      new SimLineDevice({
        path: watched.devicePath,
        hostPath: watched.hostPath,
        machine,
        format: 'csv',
        rateHz: 5,
      }),
    );
    const blind = cleanup.add(
      new SimLineDevice({ path: unwatched.devicePath, machine, format: 'csv', rateHz: 5 }),
    );
    await watching.start();
    await blind.start();
    expect(watching.settingsReads).toBe(1); // before the first line goes out

    await new Recorder().until(() => watching.settingsReads >= 2, 'a second look at the host settings');
    // Timers never fire early; the old 250 ms poll made its second look well before this.
    expect(Date.now() - started).toBeGreaterThanOrEqual(DEFAULT_SETTINGS_POLL_MS - 50);
    expect(DEFAULT_SETTINGS_POLL_MS).toBe(1000);
    expect(blind.settingsReads).toBe(0);
    expect(blind.linesSent).toBeGreaterThan(0);
  });
});
