import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { SimCamera } from '../../simulator/camera/camera.js';
import { renderFrame } from '../../simulator/camera/render.js';
import type { OutgoingFrame } from '../../simulator/camera/sinks.js';
import { ManualTime, SimClock } from '../../simulator/machines/clock.js';
import { FaultyMachine } from '../../simulator/machines/faults.js';
import { parseScenario } from '../../simulator/scenario/load.js';

// The simulator's drift injection: a lighting change of the camera and a sensor offset fault,
// both off by default, so that undrifted runs render and measure exactly as before.

async function meanPixel(data: Buffer): Promise<number> {
  const { channels } = await sharp(data).greyscale().stats();
  return channels[0]!.mean;
}

describe('camera lighting', () => {
  it('leaves frames untouched by default and scales the light when changed', async () => {
    const base = { width: 320, height: 240, label: 'ok' as const, seed: 42, format: 'png' as const };
    const plain = await renderFrame(base);
    expect((await renderFrame({ ...base, lighting: { gain: 1, offset: 0 } })).data.equals(plain.data)).toBe(
      true,
    );
    const dim = await renderFrame({ ...base, lighting: { gain: 0.5 } });
    const ratio = (await meanPixel(dim.data)) / (await meanPixel(plain.data));
    // Half the light; the conveyor's offset and the sensor noise do not scale with it.
    expect(ratio).toBeGreaterThan(0.4);
    expect(ratio).toBeLessThan(0.6);
    const brighter = await renderFrame({ ...base, lighting: { gain: 1, offset: 30 } });
    expect((await meanPixel(brighter.data)) - (await meanPixel(plain.data))).toBeGreaterThan(25);
  });

  it('changes from the next frame on with setLighting, and refuses a gain of 0', async () => {
    const got: OutgoingFrame[] = [];
    const camera = new SimCamera({
      name: 'c',
      fps: 200,
      width: 160,
      height: 120,
      defectRate: 0,
      seed: 3,
      format: 'png',
      maxInFlight: 1,
      render: renderFrame,
      sink: {
        target: 'memory',
        async deliver(f) {
          got.push(f);
          if (got.length === 2) camera.setLighting({ gain: 0.5 });
          return { ok: true };
        },
      },
      maxFrames: 6,
    });
    expect(() => camera.setLighting({ gain: 0 })).toThrow(/gain must be above 0/);
    camera.start();
    await camera.finished;
    const means = await Promise.all(got.map((f) => meanPixel(f.data)));
    expect(got).toHaveLength(6);
    // Frames rendered after the change (the third on, or the fourth if the third was already rendering) are darker.
    expect(Math.max(...means.slice(4))).toBeLessThan(Math.min(...means.slice(0, 2)) * 0.75);
  });
});

describe('sensor offset fault', () => {
  it('adds a constant to one tag, with good quality, for the scenario window only', () => {
    const scenario = parseScenario({
      version: 1,
      acceleration: 3600,
      machines: { 'pump-1': { kind: 'pump', failure: null } },
      faults: [
        { kind: 'offset', asset: 'pump-1', tag: 'pressure', at: 100, durationSeconds: 50, offset: 0.8 },
      ],
    });
    const time = new ManualTime(0);
    const { machines } = scenario.build({
      clock: new SimClock({ acceleration: 3600, now: time.now, startWallMs: 0 }),
    });
    const faulty = machines[0]!.machine as FaultyMachine;
    const diff = (s: number) => {
      time.set(s * 1000);
      const off = faulty.snapshot().values;
      const honest = faulty.machine.snapshot().values;
      return {
        pressure: off['pressure']!.value - honest['pressure']!.value,
        quality: off['pressure']!.quality,
        temp: off['temperature']!.value - honest['temperature']!.value,
      };
    };
    expect(diff(99)).toEqual({ pressure: 0, quality: 'good', temp: 0 });
    expect(diff(100).pressure).toBeCloseTo(0.8, 9);
    expect(diff(149)).toMatchObject({ quality: 'good', temp: 0 });
    expect(diff(149).pressure).toBeCloseTo(0.8, 9);
    expect(diff(150).pressure).toBe(0);
  });

  it('needs a tag and an offset', () => {
    const spec = (fault: Record<string, unknown>) => ({
      version: 1,
      machines: { 'pump-1': { kind: 'pump' } },
      faults: [{ kind: 'offset', asset: 'pump-1', at: 1, durationSeconds: 5, ...fault }],
    });
    expect(() => parseScenario(spec({ offset: 1 }))).toThrow(/tag/);
    expect(() => parseScenario(spec({ tag: 'pressure' }))).toThrow(/offset/);
    expect(() => parseScenario(spec({ tag: 'nope', offset: 1 }))).toThrow(/no tag 'nope'/);
  });
});
