import { describe, expect, it } from 'vitest';
import { exitCodeOf, type CheckResult } from '../../runtime/doctor/check.js';
import { clockStepCheck, peerSkewCheck, wallClockCheck } from '../../runtime/doctor/clock.js';
import { providerReason } from '../../runtime/doctor/engines.js';
import { formatReport } from '../../runtime/doctor/report.js';
import type { DoctorReport } from '../../runtime/doctor/runner.js';
import { nodeCheck } from '../../runtime/doctor/system.js';

/** The verdicts of doctor's checks that do not need the machine: clocks, versions, messages. */

describe('clock checks', () => {
  const at = Date.parse('2026-03-01T12:00:00Z');
  const peer = (receivedAt: number, date = at) => ({
    from: 'registry https://mlflow.plant:5000',
    date,
    receivedAt,
  });

  it('counts the Date header’s whole-second rounding as no skew', () => {
    expect(peerSkewCheck(peer(at + 999)).status).toBe('ok');
    expect(peerSkewCheck(peer(at + 999)).data?.skewMs).toBe(0);
  });

  it('warns past 5 s and fails past 60 s, ahead or behind', () => {
    expect(peerSkewCheck(peer(at + 7_000)).status).toBe('warn');
    expect(peerSkewCheck(peer(at + 7_000)).detail).toBe(
      'this clock is 6.0 s ahead of registry https://mlflow.plant:5000',
    );
    expect(peerSkewCheck(peer(at - 7_000)).status).toBe('warn');
    expect(peerSkewCheck(peer(at - 7_000)).detail).toMatch(/7\.0 s behind/);
    expect(peerSkewCheck(peer(at + 62_000)).status).toBe('fail');
    expect(peerSkewCheck(peer(at - 61_000)).status).toBe('fail');
  });

  it('refuses a clock in 1970 or far in the future', () => {
    expect(wallClockCheck(new Date('1970-01-01T00:00:42Z')).status).toBe('fail');
    expect(wallClockCheck(new Date('2150-01-01T00:00:00Z')).status).toBe('fail');
    expect(wallClockCheck(new Date('2026-06-01T00:00:00Z')).status).toBe('ok');
  });

  it('notices a wall clock stepped during the run', () => {
    const now = performance.now();
    expect(clockStepCheck({ startedWall: Date.now() - 5_000, startedMono: now }).status).toBe('warn');
    expect(clockStepCheck({ startedWall: Date.now(), startedMono: now }).status).toBe('ok');
  });
});

describe('node version', () => {
  it('fails below 20, warns on odd or untested majors, passes LTS lines', () => {
    expect(nodeCheck('v18.20.4').status).toBe('fail');
    expect(nodeCheck('v21.7.3').status).toBe('warn');
    expect(nodeCheck('v21.7.3').detail).toMatch(/odd, short-lived release/);
    expect(nodeCheck('v26.0.0').status).toBe('warn');
    expect(nodeCheck('v20.19.5').status).toBe('ok');
    expect(nodeCheck('v22.12.0').status).toBe('ok');
  });
});

describe('provider reasons', () => {
  it("keeps onnxruntime's own reason without its source location, and names a missing Vulkan loader", () => {
    const message =
      'cannot load ONNX model /m/model.onnx: no execution provider could load the model (webgpu: ' +
      '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(' +
      'const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success ' +
      'was false. Failed to get a WebGPU adapter: No supported adapters)';
    const stderr =
      "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory | at operator()";
    expect(providerReason('webgpu', { ok: false, message, stderr, ms: 1 })).toBe(
      'Failed to get a WebGPU adapter: No supported adapters (Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory)',
    );
  });

  it('says a crash as such', () => {
    expect(
      providerReason('cuda', {
        ok: false,
        crashed: 'SIGSEGV',
        message: 'crashed the process (SIGSEGV)',
        stderr: '',
        ms: 1,
      }),
    ).toBe('crashed the process (SIGSEGV)');
  });
});

describe('report', () => {
  const checks: CheckResult[] = [
    { group: 'system', name: 'node', status: 'ok', detail: 'Node.js v20.19.5' },
    {
      group: 'network',
      name: 'mqtt broker',
      status: 'fail',
      detail: 'mqtt://10.0.0.9:1883: connection refused: nothing listens at 10.0.0.9:1883',
      fix: 'start the server there, or correct mqtt.url',
    },
    { group: 'clock', name: 'time sync', status: 'warn', detail: 'not synchronised', fix: 'enable NTP' },
  ];
  const report: DoctorReport = {
    config: '/etc/vigil/vigil.yaml',
    startedAt: '2026-03-01T12:00:00.000Z',
    durationMs: 1234,
    summary: { ok: 1, warn: 1, fail: 1, skip: 0 },
    exitCode: exitCodeOf(checks),
    checks,
  };

  it('exits 1 only when something failed', () => {
    expect(report.exitCode).toBe(1);
    expect(exitCodeOf(checks.filter((c) => c.status !== 'fail'))).toBe(0);
  });

  it('prints one row per check with its fix, and the verdict', () => {
    const text = formatReport(report, '1.2.3');
    expect(text.split('\n')).toEqual([
      'vigil doctor 1.2.3: config /etc/vigil/vigil.yaml',
      '',
      'GROUP    CHECK        STATUS  DETAIL',
      'system   node         ok      Node.js v20.19.5',
      'network  mqtt broker  fail    mqtt://10.0.0.9:1883: connection refused: nothing listens at 10.0.0.9:1883',
      '                              fix: start the server there, or correct mqtt.url',
      'clock    time sync    warn    not synchronised',
      '                              fix: enable NTP',
      '',
      '1 ok, 1 warn, 1 fail, 0 skipped in 1.2 s: network/mqtt broker failed (exit 1)',
      '',
    ]);
  });

  it('wraps long details to the terminal width', () => {
    const lines = formatReport(report, '1.2.3', 60).split('\n');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(60);
    expect(lines.slice(4, 9)).toEqual([
      'network  mqtt broker  fail    mqtt://10.0.0.9:1883:',
      '                              connection refused: nothing',
      '                              listens at 10.0.0.9:1883',
      '                              fix: start the server there,',
      '                                   or correct mqtt.url',
    ]);
  });
});
