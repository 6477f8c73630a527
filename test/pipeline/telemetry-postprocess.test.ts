import { describe, expect, it } from 'vitest';
import type { TensorMap } from '../../runtime/engines/engine.js';
import { VigilError } from '../../runtime/errors.js';
import type { AlertHysteresis, TelemetryPostprocessing } from '../../runtime/model/manifest.js';
import { Hysteresis, effectiveHysteresis } from '../../runtime/pipeline/hysteresis.js';
import { scoreTelemetry } from '../../runtime/pipeline/telemetry-postprocess.js';
import { topTags } from '../../runtime/pipeline/telemetry-pipeline.js';

const alert: AlertHysteresis = { direction: 'below', raise: 30, clear: 40, consecutive: 1 };

function out(name: string, values: number[]): TensorMap {
  return { [name]: { dtype: 'float32', shape: [1, values.length], data: Float32Array.from(values) } };
}

describe('scoreTelemetry', () => {
  const rul: TelemetryPostprocessing = {
    type: 'rul',
    output: 'rul',
    cap: 125,
    unit: 'cycles',
    alert,
    alertKind: 'failure_risk',
  };

  it('clips a RUL to [0, cap]', () => {
    expect(scoreTelemetry(out('rul', [87.5]), rul)).toEqual({
      label: 'rul',
      score: 87.5,
      outputs: { rul: 87.5 },
    });
    expect(scoreTelemetry(out('rul', [-3]), rul).score).toBe(0);
    expect(scoreTelemetry(out('rul', [400]), rul).score).toBe(125);
  });

  it('reads a failure probability at its index, clipped to [0, 1]', () => {
    const pp: TelemetryPostprocessing = {
      type: 'failure_probability',
      output: 'probs',
      index: 1,
      horizon: 24,
      unit: 'hours',
      alert: { direction: 'above', raise: 0.7, clear: 0.5, consecutive: 2 },
      alertKind: 'failure_risk',
    };
    expect(scoreTelemetry(out('probs', [0.25, 0.75]), pp)).toEqual({
      label: 'risk',
      score: 0.75,
      outputs: { 'probs[0]': 0.25, 'probs[1]': 0.75 },
    });
    expect(scoreTelemetry(out('probs', [-0.01, 1.02]), pp).score).toBe(1);
  });

  it('turns an anomaly score so that higher is more unusual', () => {
    const pp: TelemetryPostprocessing = {
      type: 'anomaly',
      output: 'scores',
      index: 0,
      higherIsAnomalous: false,
      alert: { direction: 'above', raise: 0.1, clear: 0.05, consecutive: 1 },
      alertKind: 'anomaly',
    };
    expect(scoreTelemetry(out('scores', [-0.25]), pp).score).toBeCloseTo(0.25, 6);
    expect(scoreTelemetry(out('scores', [-0.25]), { ...pp, higherIsAnomalous: true }).score).toBeCloseTo(
      -0.25,
      6,
    );
  });

  it('refuses a missing output, a short one and a non-finite value', () => {
    expect(() => scoreTelemetry(out('other', [1]), rul)).toThrow(/no output named 'rul'/);
    const pp: TelemetryPostprocessing = {
      type: 'anomaly',
      output: 'scores',
      index: 3,
      higherIsAnomalous: true,
      alert: { direction: 'above', raise: 0.1, clear: 0.05, consecutive: 1 },
      alertKind: 'anomaly',
    };
    expect(() => scoreTelemetry(out('scores', [1, 2]), pp)).toThrow(
      /has 2 values; postprocessing reads value 3/,
    );
    expect(() => scoreTelemetry(out('rul', [Number.NaN]), rul)).toThrow(VigilError);
  });
});

describe('Hysteresis', () => {
  it('raises once when RUL falls below raise, and clears once when it is back above clear', () => {
    const h = new Hysteresis(alert);
    const seen = [100, 50, 31, 30, 25, 20, 28, 35, 39, 40, 41, 45, 60].map((s) => h.observe(s));
    expect(seen).toEqual([
      undefined,
      undefined,
      undefined,
      'raised', // 30 <= raise
      undefined,
      undefined,
      undefined,
      undefined, // 35 is between raise and clear: still raised
      undefined,
      undefined, // 40 is not past clear (> 40)
      'cleared',
      undefined,
      undefined,
    ]);
  });

  it('does not flap for a score hovering at the threshold', () => {
    const h = new Hysteresis({ direction: 'above', raise: 0.7, clear: 0.5, consecutive: 1 });
    const scores: number[] = [];
    for (let i = 0; i < 200; i++) scores.push(0.7 + (i % 2 === 0 ? 0.01 : -0.01) + 0.005 * Math.sin(i));
    const transitions = scores.map((s) => h.observe(s)).filter((t) => t !== undefined);
    expect(transitions).toEqual(['raised']);
    expect(h.active).toBe(true);
  });

  it('waits for `consecutive` windows in a row, both ways', () => {
    const h = new Hysteresis({ direction: 'above', raise: 0.7, clear: 0.5, consecutive: 3 });
    const seq = [0.8, 0.8, 0.2, 0.8, 0.8, 0.8, 0.4, 0.4, 0.6, 0.4, 0.4, 0.4];
    expect(seq.map((s) => h.observe(s))).toEqual([
      undefined,
      undefined,
      undefined, // broken streak
      undefined,
      undefined,
      'raised',
      undefined,
      undefined,
      undefined, // 0.6 breaks the clearing streak
      undefined,
      undefined,
      'cleared',
    ]);
  });

  it('can put back a decision that could not be stored', () => {
    const h = new Hysteresis({ direction: 'above', raise: 1, clear: 0, consecutive: 1 });
    const before = h.state();
    expect(h.observe(2)).toBe('raised');
    h.restore(before);
    expect(h.active).toBe(false);
    expect(h.observe(2)).toBe('raised');
  });
});

describe('effectiveHysteresis', () => {
  it('applies the pipeline threshold as raise and moves clear with it', () => {
    expect(effectiveHysteresis(alert, {}, 'p')).toEqual(alert);
    expect(effectiveHysteresis(alert, { threshold: 50 }, 'p')).toEqual({ ...alert, raise: 50, clear: 60 });
    expect(effectiveHysteresis(alert, { threshold: 50, alert: { raise: 20, consecutive: 3 } }, 'p')).toEqual({
      direction: 'below',
      raise: 20,
      clear: 30,
      consecutive: 3,
    });
    expect(effectiveHysteresis(alert, { alert: { clear: 45 } }, 'p')).toMatchObject({ raise: 30, clear: 45 });
  });

  it('refuses a clear beyond raise, saying which way it must go', () => {
    expect(() => effectiveHysteresis(alert, { alert: { clear: 20 } }, 'pipelines.engine')).toThrow(
      /pipelines\.engine: alert clear 20 is below raise 30.*at least raise/,
    );
  });
});

describe('topTags', () => {
  it('names the three tags deviating most, either way', () => {
    expect(topTags(['a', 'b', 'c', 'd'], Float32Array.from([0.5, -3, 2, -0.1]))).toEqual([
      { tag: 'b', z: -3 },
      { tag: 'c', z: 2 },
      { tag: 'a', z: 0.5 },
    ]);
  });
});
