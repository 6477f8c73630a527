import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataQualityPolicy } from '../../runtime/quality/config.js';
import { MAX_FLAG_VIOLATIONS, flagOf } from '../../runtime/quality/policy.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import {
  jsonSource,
  reading,
  startPolicyPipelines,
  startQualityRig,
  type PolicyPipelines,
  type QualityRig,
} from './support.js';

// What the model sees of a reading that broke an expectation, per pipeline policy, with
// everything real: readings through the ingest (expectations after the gate), handed on with
// their flags to a TelemetryPipeline, windowed and scored by the mean-rul fixture model in its
// worker thread (RUL = the mean of the 4-cycle window of tags a, b, c: the score shows exactly
// which values went in). Every value is 50 except tag a in cycle 6: 86, out of its range.

const SOURCE = 'engines';
const ASSET = 'unit-1';
const T0 = Date.now() - 3_600_000;
const FLAGGED_CYCLE = 6;
const CYCLES = 12;

let rig: QualityRig;
let policies: PolicyPipelines;

function cycle(c: number): Reading[] {
  const t = T0 + c * 1000;
  const a = c === FLAGGED_CYCLE ? 86 : 50;
  return [
    reading(SOURCE, ASSET, 'cycle', c, t),
    reading(SOURCE, ASSET, 'a', a, t),
    reading(SOURCE, ASSET, 'b', 50, t),
    reading(SOURCE, ASSET, 'c', 50, t),
  ];
}

beforeAll(async () => {
  rig = await startQualityRig({
    sources: {
      [SOURCE]: jsonSource(
        { topic: 'engines/+', asset: '{1}', allNumericFields: true },
        { expectations: { tags: { a: { range: { min: 0, max: 60 } } } } },
      ),
    },
    onAccepted: (_source, readings) => policies.offer(readings),
  });
  policies = await startPolicyPipelines(rig, SOURCE);
  for (let c = 1; c <= CYCLES; c++) {
    rig.accept(SOURCE, cycle(c));
    await policies.idle();
  }
});

afterAll(async () => {
  await policies?.close();
  await rig?.close();
});

const results = (policy: DataQualityPolicy) => policies.results.get(policy)!;
const inputs = (policy: DataQualityPolicy) => policies.inputs.get(policy)!;

const windowMean = (t: Float32Array) => t.reduce((s, x) => s + x, 0) / t.length;
/** Windows of 4 cycles ending at 4..12; those ending at 6..9 hold cycle 6. */
const withFlagged = (end: number) => end >= FLAGGED_CYCLE && end < FLAGGED_CYCLE + 4;

describe('the flagged reading itself', () => {
  it('is accepted, stored with its flag and handed to the pipelines with it', () => {
    const flagged = rig.accepted.filter((r) => r.flags !== undefined);
    expect(flagged).toHaveLength(1);
    expect(flagged[0]).toMatchObject({ asset: ASSET, tag: 'a', value: 86, flags: ['range'] });
    expect(rig.storedFlags('a').filter((f) => f !== null)).toEqual(['["range"]']);
  });
});

describe('dataQuality.policy', () => {
  it('skip: windows with the flagged reading are not scored (skip reason data_quality); the model never sees it', async () => {
    const got = results('skip');
    expect(got.map((r) => r.details!.axisEnd)).toEqual([4, 5, 10, 11, 12]);
    expect(got.every((r) => r.score === 50)).toBe(true);
    expect(inputs('skip').every((t) => !t.includes(86))).toBe(true);
    const snap = policies.pipelines.get('skip')!.snapshot();
    expect(snap.windowsSkipped).toEqual({ data_quality: 4 });
    expect(
      await rig.metric('vigil_windows_skipped_total', { pipeline: 'p-skip', reason: 'data_quality' }),
    ).toBe(4);
    expect(got.every((r) => r.dataQuality === undefined)).toBe(true);
  });

  it('hold: the flagged reading is dropped, tag a keeps its last good value, every window is scored', async () => {
    const got = results('hold');
    expect(got.map((r) => r.details!.axisEnd)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(got.every((r) => r.score === 50)).toBe(true);
    expect(inputs('hold').every((t) => !t.includes(86))).toBe(true);
    const snap = policies.pipelines.get('hold')!.snapshot();
    expect(snap.windowsSkipped).toEqual({});
    expect(snap.readingsDropped).toEqual({ data_quality: 1 });
    expect(
      await rig.metric('vigil_window_readings_dropped_total', {
        pipeline: 'p-hold',
        reason: 'data_quality',
      }),
    ).toBe(1);
  });

  it('flag: every window is scored; those with the flagged value say so in dataQuality', () => {
    const got = results('flag');
    expect(got.map((r) => r.details!.axisEnd)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const r of got) {
      const end = r.details!.axisEnd;
      if (withFlagged(end)) {
        expect(r.score).toBeCloseTo((11 * 50 + 86) / 12, 3);
        expect(r.dataQuality).toEqual({
          flagged: true,
          violations: [
            {
              source: SOURCE,
              asset: ASSET,
              tag: 'a',
              rule: 'range',
              message: 'unit-1/a = 86 is outside the expected range [0, 60]',
            },
          ],
        });
      } else {
        expect(r.score).toBe(50);
        expect(r.dataQuality).toBeUndefined();
      }
    }
    // The model did see the value: flag scores it, and says so.
    expect(inputs('flag').filter((t) => t.includes(86))).toHaveLength(4);
    expect(windowMean(inputs('flag')[0]!)).toBe(50);
  });

  it('flag: the stored result carries the flag too', () => {
    const flagged = results('flag').filter((r) => r.dataQuality);
    expect(flagged).toHaveLength(4);
    for (const r of flagged) {
      const stored = rig.store.getResultBySampleId(r.sampleId);
      expect(stored?.dataQuality).toEqual(r.dataQuality);
    }
  });
});

describe('flagOf', () => {
  it('lists at most 16 violations, newest first, explained without bounds when none are given', () => {
    // 10 readings of 2 broken rules each: 20 violations, of which the 16 newest are listed.
    const readings = Array.from({ length: 10 }, (_, i) =>
      reading(SOURCE, ASSET, `t${i}`, i, T0 + i * 1000, { flags: ['range', 'schema_drift'] }),
    );
    const flag = flagOf(readings);
    expect(flag.violations).toHaveLength(MAX_FLAG_VIOLATIONS);
    expect(flag.violations[0]).toEqual({
      source: SOURCE,
      asset: ASSET,
      tag: 't9',
      rule: 'range',
      message: 'unit-1/t9 = 9 broke range',
    });
    expect(flag.violations[1]!.message).toBe('unit-1/t9 = 9 came in a payload whose fields changed shape');
    expect(flag.violations.at(-1)!.tag).toBe('t2');
  });
});
