import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { SimulateReport } from '../../runtime/cli/simulate/report.js';
import { CLI } from '../helpers/daemon.js';

const run = promisify(execFile);

async function simulate(
  seed: number,
  seconds: number,
  extra: string[] = [],
): Promise<{ report: SimulateReport; stdout: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-simulate-'));
  const file = path.join(dir, 'report.json');
  const { stdout } = await run(
    process.execPath,
    [
      CLI,
      'simulate',
      '--duration',
      String(seconds),
      '--seed',
      String(seed),
      '--report',
      file,
      '--mqtt-port',
      '0',
      '--http-port',
      '0',
      '--data-dir',
      dir,
      ...extra,
    ],
    { timeout: 60_000 },
  );
  return { report: JSON.parse(await readFile(file, 'utf8')) as SimulateReport, stdout };
}

describe('vigil simulate', () => {
  it('writes a report whose counts agree with each other, with MQTT and with the truth', async () => {
    const a = await simulate(11, 6);
    const p = a.report.pipelines.inspection!;
    expect(p.samples.seen).toBeGreaterThan(30);
    const sent = Object.values(a.report.cameras).reduce((s, c) => s + c.framesSent, 0);
    expect(p.samples.seen).toBe(sent);
    expect(p.samples.processed + p.samples.dropped).toBe(p.samples.seen);
    expect(p.latencyMs?.p50).toBeGreaterThan(0);
    for (const k of ['p50', 'p95', 'p99'] as const) expect(p.latencyMs![k]).toBeGreaterThan(0);
    for (const stage of ['decode', 'preprocess', 'inference', 'postprocess', 'store'])
      expect(p.stagesMs[stage]?.count).toBe(p.samples.processed);
    const alerts = Object.values(p.alerts).reduce((s, n) => s + n, 0);
    expect(p.truth.truePositives + p.truth.falsePositives).toBe(alerts);
    expect(a.report.mqtt.alertsReceivedBySubscriber).toBe(alerts);
    expect(p.truth.framesSent).toBe(sent);
    expect(p.truth.defective).toBeGreaterThan(0);
    expect(p.truth.recall).not.toBeNull();
    expect(a.report.peakRssMb).toBeGreaterThan(0);
    expect(a.stdout).toMatch(/ALERT defect\//);
    expect(a.stdout).toMatch(/Summary after/);
    // Telemetry next to the cameras: the default scenario's machines over their real protocols.
    const t = a.report.telemetry!;
    expect(Object.keys(t.machines).sort()).toEqual(['engine-1', 'pump-1', 'spindle-1']);
    expect(Object.keys(t.sources).sort()).toEqual(['opcua', 'serial-spindle-1', 'sparkplug']);
    for (const [name, s] of Object.entries(t.sources)) {
      expect(s.readings.good, name).toBeGreaterThan(0);
      expect(s.state, name).toBe('up');
    }
    // Everything counted as accepted is in the store; the plant keeps sending while the report is
    // written, so a few more may have arrived since the counts were read.
    expect(t.storedReadings).toBeGreaterThanOrEqual(
      Object.values(t.sources).reduce(
        (n, s) => n + s.readings.good + s.readings.uncertain + s.readings.bad,
        0,
      ),
    );
    expect(a.stdout).toMatch(/\[telemetry\] opcua up/);
    expect(a.stdout).toMatch(/telemetry: \d+ readings stored/);
  });

  it('is exactly repeatable for a seed: the same frames, truth and verdicts', async () => {
    const args = ['--frames', '25', '--http-fps', '0', '--fps', '10', '--no-telemetry'];
    const a = (await simulate(5, 30, args)).report.pipelines.inspection!;
    const b = (await simulate(5, 30, args)).report.pipelines.inspection!;
    expect(a.samples.seen).toBe(25);
    expect(a.samples.dropped).toBe(0);
    expect(b.truth).toEqual(a.truth);
    expect(b.alerts).toEqual(a.alerts);
    const c = (await simulate(6, 30, args)).report.pipelines.inspection!;
    expect(c.truth.framesSent).toBe(25);
    expect(c.truth).not.toEqual(a.truth);
  });

  it('runs cameras only with --no-telemetry', async () => {
    const a = await simulate(3, 3, ['--no-telemetry', '--http-fps', '0']);
    expect(a.report.telemetry).toBeUndefined();
    expect(a.stdout).not.toMatch(/\[telemetry\]/);
  });
});
