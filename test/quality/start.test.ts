import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonSource, startQualityRig, type QualityRig } from './support.js';

// Staleness counts from DataQuality.start(), which the daemon calls once every source has had its
// chance to connect, not from when the checks were built: a gateway whose sources take a minute
// to come up does not report its listed assets and cameras as silent the moment it starts.

const SOURCE = 'plant';
const CAMERA = 'cam';
let rig: QualityRig;
let built: number;

beforeAll(async () => {
  built = Date.now();
  rig = await startQualityRig({
    sources: {
      [SOURCE]: jsonSource(
        { topic: 'plant/+/telemetry', asset: '{1}', tags: { flow: 'flow' } },
        // A listed asset is expected to report at all: its clock runs before its first reading.
        { expectations: { tags: { flow: { staleAfterSeconds: 5 } }, assets: ['p-1'] } },
      ),
      [CAMERA]: {
        type: 'camera-http',
        listen: { port: 0 },
        expectations: { image: { staleAfterSeconds: 10 } },
      },
    },
  });
});

afterAll(async () => {
  await rig?.close();
});

const staleOf = (source: string) =>
  rig.alerts.filter((a) => a.label === 'stale' && a.source === source && a.dataQuality.state === 'raised');

describe('staleness clocks', () => {
  it('start when DataQuality starts: a minute of start-up is not a minute of silence', () => {
    // As if the sources took a minute to connect after the checks were built.
    const started = built + 60_000;
    rig.quality.start(started);
    rig.quality.tick(started + 4_000);
    expect(staleOf(SOURCE)).toEqual([]);
    expect(staleOf(CAMERA)).toEqual([]);
    rig.quality.tick(started + 6_000);
    expect(staleOf(SOURCE)).toHaveLength(1);
    expect(staleOf(SOURCE)[0]!.dataQuality).toMatchObject({ asset: 'p-1', tag: 'flow' });
    expect(staleOf(SOURCE)[0]!.dataQuality.message).toBe(
      'p-1/flow has sent no reading for 6 s (staleAfterSeconds 5)',
    );
    expect(staleOf(CAMERA)).toEqual([]);
    rig.quality.tick(started + 11_000);
    expect(staleOf(CAMERA)).toHaveLength(1);
    expect(staleOf(CAMERA)[0]!.dataQuality.message).toBe(
      'camera cam has sent no frame for 11 s (staleAfterSeconds 10)',
    );
  });
});
