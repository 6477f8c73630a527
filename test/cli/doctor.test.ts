import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { PtyPair } from '../../simulator/serial/pty-pair.js';
import { CLI, ROOT, metricValue, startDaemon } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';

/**
 * `vigil doctor` as an integrator runs it on a gateway: the compiled CLI against this machine,
 * a real Mosquitto (anonymous, and one that demands a password), a serial port made of a socat
 * pty pair, ports where nothing listens, the shipped models with CPU and WebGPU asked for, and
 * a TFLite delegate library that is not a delegate.
 */

const execFileAsync = promisify(execFile);

interface Row {
  group: string;
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
  data?: Record<string, unknown>;
}

interface JsonReport {
  vigil: string;
  config: string | null;
  exitCode: number;
  summary: Record<string, number>;
  checks: Row[];
}

async function doctor(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, 'doctor', ...args], {
      maxBuffer: 8 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function doctorJson(...args: string[]): Promise<{ code: number; report: JsonReport }> {
  const { code, stdout, stderr } = await doctor('--json', ...args);
  try {
    return { code, report: JSON.parse(stdout) as JsonReport };
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${code}):\n${stdout}\n${stderr}`);
  }
}

function row(report: JsonReport, group: string, name: string): Row {
  const found = report.checks.find((c) => c.group === group && c.name === name);
  if (!found) {
    const names = report.checks.map((c) => `${c.group}/${c.name}`).join(', ');
    throw new Error(`no check ${group}/${name}; the report has ${names}`);
  }
  return found;
}

const DEFECT_ONNX = path.join(ROOT, 'models/defect/packages/defect-int8-onnx');
const DEFECT_TFLITE = path.join(ROOT, 'models/defect/packages/defect-int8-tflite');
const CSV = { type: 'csv', columns: ['asset', 'temp'] };

let dir: string;
let open: RunningMosquitto | undefined;
let locked: RunningMosquitto | undefined;
let pty: PtyPair | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-doctor-'));
  [open, locked, pty] = await Promise.all([
    startMosquitto(),
    startMosquitto({ users: { vigil: 'right-password' } }),
    PtyPair.create(),
  ]);
});

afterAll(async () => {
  await Promise.all([open?.stop(), locked?.stop(), pty?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, config: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, stringify({ device: { id: 'doctor-gw' }, pipelines: {}, ...config }));
  return file;
}

describe('vigil doctor without a config', () => {
  it('checks this machine and the shipped models: native modules load, the CPU runs them, WebGPU is named as missing', async () => {
    const { code, report } = await doctorJson();
    expect(code).toBe(0);
    expect(report.exitCode).toBe(0);
    expect(report.config).toBeNull();
    for (const m of [
      'better-sqlite3',
      'sharp',
      'onnxruntime-node',
      'tfjs-tflite-node',
      '@serialport/bindings-cpp',
    ]) {
      expect(row(report, 'native', m).status, `${m}: ${row(report, 'native', m).detail}`).toBe('ok');
    }
    expect(row(report, 'native', 'tfjs-tflite-node').data?.inference).toBe(true);
    const cpu = row(report, 'engines', 'defect-int8-onnx onnx/cpu');
    expect(cpu.status).toBe('ok');
    expect(cpu.detail).toMatch(/^in use: loads and runs the model/);
    // This machine has no GPU: WebGPU is reported with onnxruntime's reason, CPU named as used.
    const webgpu = row(report, 'engines', 'defect-int8-onnx onnx/webgpu');
    expect(webgpu.status).toBe('warn');
    expect(webgpu.detail).toMatch(/not available here: .*adapter.*\('cpu' is used\)/);
    expect(row(report, 'engines', 'defect-int8-tflite tflite').status).toBe('ok');
    expect(row(report, 'network', 'network').status).toBe('skip');
    // Every group is there, and every row is complete.
    expect(new Set(report.checks.map((c) => c.group))).toEqual(
      new Set(['system', 'native', 'engines', 'serial', 'network', 'disk', 'clock']),
    );
    for (const c of report.checks) {
      expect(c.detail.length, `${c.group}/${c.name}`).toBeGreaterThan(0);
      if (c.status === 'warn' || c.status === 'fail') expect(c.fix, `${c.group}/${c.name}`).toBeTruthy();
    }
    expect(report.summary.fail).toBe(0);
  });

  it('prints a table with a fix under each warning and says the exit code', async () => {
    const { code, stdout } = await doctor();
    expect(code).toBe(0);
    expect(stdout).toMatch(/^GROUP\s+CHECK\s+STATUS\s+DETAIL$/m);
    expect(stdout).toMatch(/^native\s+better-sqlite3\s+ok\s+\S+ \(SQLite [\d.]+\)/m);
    expect(stdout).toMatch(/^engines\s+defect-int8-onnx onnx\/webgpu\s+warn\s+not available here/m);
    expect(stdout).toMatch(/^\s+fix: WebGPU needs a GPU/m);
    expect(stdout).toMatch(/\d+ ok, \d+ warn, 0 fail, \d+ skipped in [\d.]+ s: .*\(exit 0\)$/m);
  });
});

describe('vigil doctor --config', () => {
  it('passes a gateway whose broker answers, whose serial port is there, and that falls back from WebGPU to the CPU', async () => {
    const config = await writeConfig('good.yaml', {
      http: { port: await freePort() },
      mqtt: { url: open!.url },
      store: { path: path.join(dir, 'data/vigil.db') },
      models: { defect: { package: DEFECT_ONNX, onnx: { executionProviders: ['webgpu', 'cpu'] } } },
      sources: { spindle: { type: 'serial-line', path: pty!.hostPath, format: CSV } },
    });
    const { code, report } = await doctorJson('--config', config, '--timeout-ms', '3000');
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(code).toBe(0);
    expect(report.config).toBe(config);

    const broker = row(report, 'network', 'mqtt broker');
    expect(broker.status).toBe('ok');
    expect(broker.detail).toBe(`${open!.url}: CONNACK 0 (accepted) in ${String(broker.data?.ms)} ms`);

    const serial = row(report, 'serial', `spindle ${pty!.hostPath}`);
    expect(serial.status).toBe('ok');
    expect(serial.detail).toMatch(/is a serial device, readable and writable/);

    // Asked for WebGPU first: reported as not available with the reason, CPU named as the fallback.
    const webgpu = row(report, 'engines', 'defect onnx/webgpu');
    expect(webgpu.status).toBe('warn');
    expect(webgpu.detail).toMatch(
      /^not available: Failed to get a WebGPU adapter: .*; the daemon falls back to 'cpu'$/,
    );
    expect(webgpu.fix).toMatch(/remove webgpu from models\.defect\.onnx\.executionProviders/);
    const cpu = row(report, 'engines', 'defect onnx/cpu');
    expect(cpu.status).toBe('ok');
    expect(cpu.detail).toMatch(/^in use: .*asked: webgpu, cpu$/);
    expect(cpu.data).toMatchObject({ asked: ['webgpu', 'cpu'], used: 'cpu', backend: 'onnxruntime-node' });

    expect(row(report, 'disk', 'store').status).toBe('ok');
    expect(row(report, 'network', 'ops http port').status).toBe('ok');
  });

  it('says the same provider is in use as the daemon then reports on /readyz and /metrics', async () => {
    const httpPort = await freePort();
    const config = await writeConfig('daemon.yaml', {
      http: { port: httpPort },
      mqtt: { url: open!.url },
      store: { path: path.join(dir, 'daemon/vigil.db') },
      models: {
        defect: { package: DEFECT_ONNX, onnx: { executionProviders: ['webgpu', 'cpu'] } },
        npu: { package: DEFECT_TFLITE, tflite: { threads: 2 } },
      },
      sources: {},
    });
    const { report } = await doctorJson('--config', config);
    const inUse = report.checks.find(
      (c) => c.group === 'engines' && c.detail.startsWith('in use') && c.name.startsWith('defect '),
    );
    expect(inUse?.data?.used).toBe('cpu');
    expect(row(report, 'engines', 'npu tflite').data?.provider).toBe('cpu');

    const daemon = await startDaemon(config, httpPort);
    try {
      const readyz = (await (await fetch(`${daemon.url}/readyz`)).json()) as {
        models: Array<{ name: string; backend: string; provider: string }>;
      };
      expect(readyz.models.map((m) => [m.name, m.backend, m.provider])).toEqual([
        ['defect', 'onnxruntime-node', 'cpu'],
        ['npu', 'tflite', 'cpu'],
      ]);
      const status = (await (await fetch(`${daemon.url}/api/v1/status`)).json()) as {
        models: Array<{ name: string; provider: string }>;
      };
      expect(status.models.find((m) => m.name === 'defect')?.provider).toBe('cpu');
      const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
      for (const backend of ['onnxruntime-node', 'tflite']) {
        expect(metricValue(metrics, 'vigil_model_info', { backend, provider: 'cpu' }), backend).toBe(1);
      }
      expect(metrics).not.toMatch(/vigil_model_info\{[^}]*provider="webgpu"/);
      // The fallback is said once, in the daemon's log, with what was asked for.
      const fallback = daemon
        .logs()
        .split('\n')
        .filter((l) => l.includes('"requested":["webgpu","cpu"]'));
      expect(fallback).toHaveLength(1);
      expect(fallback[0]).toMatch(/execution provider 'webgpu' is not available .*using 'cpu' instead/);
    } finally {
      await daemon.stop();
    }
  });

  it('fails, naming each problem, on a refused login, a closed port, a missing serial port and a delegate that is not one', async () => {
    // Any shared library without the external-delegate entry points: loading it as a delegate
    // would crash the daemon (see runtime/engines/tflite.ts).
    const bogus = path.join(dir, 'libbogus_delegate.so');
    await copyFile(
      path.join(
        ROOT,
        `node_modules/tfjs-tflite-node/cc_deps/linux_${process.arch === 'arm64' ? 'arm64' : 'amd64'}/libexternal_delegate_obj.so`,
      ),
      bogus,
    );
    const closed = await freePort();
    const config = await writeConfig('bad.yaml', {
      http: { port: await freePort() },
      mqtt: { url: locked!.url, username: 'vigil', password: 'wrong-password' },
      upstream: { url: `mqtt://127.0.0.1:${closed}` },
      store: { path: path.join(dir, 'data/vigil.db') },
      models: { npu: { package: DEFECT_TFLITE, tflite: { delegate: { library: bogus } } } },
      sources: { gone: { type: 'serial-line', path: '/dev/ttyUSB97', format: CSV } },
    });
    const { code, report } = await doctorJson('--config', config, '--timeout-ms', '3000');
    expect(code).toBe(1);
    expect(report.exitCode).toBe(1);

    const login = row(report, 'network', 'mqtt broker');
    expect(login.status).toBe('fail');
    expect(login.detail).toBe(`${locked!.url}: CONNACK 5 (not authorized) as vigil`);
    expect(login.fix).toMatch(/check mqtt\.username and its password/);
    expect(JSON.stringify(report)).not.toContain('wrong-password');

    const upstream = row(report, 'network', 'upstream broker');
    expect(upstream.status).toBe('fail');
    expect(upstream.detail).toBe(
      `mqtt://127.0.0.1:${closed}: connection refused: nothing listens at 127.0.0.1:${closed}`,
    );
    expect(upstream.fix).toMatch(/correct upstream\.url/);

    const serial = row(report, 'serial', 'gone /dev/ttyUSB97');
    expect(serial.status).toBe('fail');
    expect(serial.detail).toBe('sources.gone.path: /dev/ttyUSB97 does not exist');

    const npu = row(report, 'engines', 'npu tflite/delegate');
    expect(npu.status).toBe('fail');
    expect(npu.detail).toContain(`TFLite delegate library ${bogus} cannot be used`);
    expect(npu.fix).toMatch(/remove models\.npu\.tflite\.delegate to run on the CPU/);

    const { stdout } = await doctor('--config', config, '--timeout-ms', '3000');
    expect(stdout).toMatch(
      /^network\s+upstream broker\s+fail\s+mqtt:\/\/127\.0\.0\.1:\d+: connection refused/m,
    );
    expect(stdout).toMatch(/\d+ fail, \d+ skipped in [\d.]+ s: .* failed \(exit 1\)$/m);
  });

  it('exits 2 with every problem of an invalid config, before checking anything', async () => {
    const config = await writeConfig('invalid.yaml', {
      mqtt: { url: 'http://nope' },
      models: {},
      sources: {},
      bogus: 1,
    });
    const { code, stdout, stderr } = await doctor('--config', config);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^mqtt\.url: an MQTT URL/m);
    expect(stderr).toMatch(/bogus/);
  });

  it('exits 2 on a bad option value', async () => {
    const { code, stderr } = await doctor('--timeout-ms', 'soon');
    expect(code).toBe(2);
    expect(stderr).toMatch(/--timeout-ms must be an integer >= 100/);
  });
});
