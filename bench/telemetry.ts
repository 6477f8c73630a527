/**
 * Telemetry ingest benchmark (issue 3). Measures, never asserts:
 *  1. the raw better-sqlite3 batched insert rate into the readings table, next to Vigil's own
 *     ingest path (checks + batching + the same table) in the same process and run;
 *  2. the sustained ingest rate of `vigil run` (its own process) from each source type, fed by
 *     the simulator's real protocol servers and a Mosquitto broker;
 *  3. the daemon's CPU and RSS at offered loads of 1k and 10k readings/s (MQTT JSON);
 *  4. the time from a server restart to the first new stored reading (OPC-UA server, MQTT
 *     broker, serial cable pull).
 * Run: npm run build && node dist/bench/telemetry.js [--seconds N] [--out FILE] [--store-only]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { silentLogger } from '../runtime/log.js';
import { Metrics } from '../runtime/ops/metrics.js';
import { StoreConfig } from '../runtime/config/schema.js';
import { Store } from '../runtime/store/store.js';
import { MIGRATIONS } from '../runtime/store/schema.js';
import { ReadingGate } from '../runtime/telemetry/gate.js';
import { TelemetryIngest } from '../runtime/telemetry/ingest.js';
import type { Reading } from '../runtime/telemetry/reading.js';
import type { MachineSnapshot, SimMachine, SimTag, TagValue } from '../simulator/machines/types.js';
import { SimSparkplugNode } from '../simulator/mqtt/sparkplug-node.js';
import { SimOpcUaServer, simNodeId } from '../simulator/opcua/server.js';
import { PtyPair, SimLineDevice, SimModbusDevice } from '../simulator/serial/index.js';
import { modbusRegisterMap } from '../simulator/plant/plant.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist/runtime/cli/main.js');
const say = (l: string) => process.stdout.write(l + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A machine whose every tag changes on every read, so that OPC-UA reports every sample. */
class BusyMachine implements SimMachine {
  readonly kind = 'scripted' as const;
  readonly tags: SimTag[];
  private n = 0;
  constructor(
    readonly asset: string,
    tagCount: number,
  ) {
    this.tags = Array.from({ length: tagCount }, (_, i) => ({
      name: `t${i}`,
      unit: '',
      description: '',
      min: -1e6,
      max: 1e6,
    }));
  }
  snapshot(): MachineSnapshot {
    this.n += 1;
    const values: Record<string, TagValue> = {};
    for (const [i, t] of this.tags.entries()) values[t.name] = { value: this.n + i / 100, quality: 'good' };
    return { asset: this.asset, time: Date.now(), simSeconds: this.n, values };
  }
  truth() {
    return { state: 'healthy' as const, failureAtSimSeconds: null, failureAtWallMs: null, failureMode: null };
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function startMosquitto(
  dir: string,
  port?: number,
): Promise<{ url: string; port: number; proc: ChildProcess }> {
  const p = port ?? (await freePort());
  const conf = path.join(dir, `mosquitto-${p}.conf`);
  await writeFile(conf, `listener ${p} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n`);
  const bin = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';
  const proc = spawn(bin, ['-c', conf], { stdio: 'ignore' });
  const url = `mqtt://127.0.0.1:${p}`;
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((res) => {
      const c = net.connect(p, '127.0.0.1', () => (c.destroy(), res(true)));
      c.once('error', () => res(false));
    });
    if (ok) return { url, port: p, proc };
    await sleep(50);
  }
  throw new Error('mosquitto did not start (apt-get install mosquitto)');
}

interface DaemonProc {
  proc: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

async function startVigil(dir: string, name: string, sources: Record<string, unknown>): Promise<DaemonProc> {
  const httpPort = await freePort();
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(
    file,
    stringify({
      version: 1,
      device: { id: 'bench' },
      log: { level: 'warn' },
      http: { port: httpPort },
      mqtt: { url: 'mqtt://127.0.0.1:1' },
      store: { path: path.join(dir, `${name}.db`) },
      models: {},
      sources,
      pipelines: {},
    }),
  );
  const proc = spawn(process.execPath, [CLI, 'run', '--config', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${httpPort}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`vigil run exited: ${err}`);
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      /* not yet */
    }
    if (i > 300) throw new Error(`vigil run not ready: ${err}`);
    await sleep(100);
  }
  return {
    proc,
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      sum += Number(line.split(' ').pop());
  }
  return sum;
}

/** CPU seconds (user + system) of a process so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
}

interface Window {
  stored: number;
  seconds: number;
  rate: number;
  cpuPercent: number;
  rssMiB: number;
  peakRssMiB: number;
  refused: number;
}

/** Measures the daemon over `seconds` once readings flow: stored/s, CPU share of one core, RSS. */
async function measure(d: DaemonProc, seconds: number): Promise<Window> {
  const pid = d.proc.pid!;
  const s0 = await metric(d.url, 'vigil_readings_stored_total');
  const r0 = await metric(d.url, 'vigil_input_errors_total');
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const s1 = await metric(d.url, 'vigil_readings_stored_total');
  const r1 = await metric(d.url, 'vigil_input_errors_total');
  const c1 = cpuSeconds(pid);
  const dt = (performance.now() - t0) / 1000;
  const mem = rssMiB(pid);
  return {
    stored: s1 - s0,
    seconds: Math.round(dt * 10) / 10,
    rate: Math.round((s1 - s0) / dt),
    cpuPercent: Math.round(((c1 - c0) / dt) * 100),
    rssMiB: mem.rss,
    peakRssMiB: mem.peak,
    refused: r1 - r0,
  };
}

async function waitStored(d: DaemonProc, atLeast: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await metric(d.url, 'vigil_readings_stored_total')) < atLeast) {
    if (Date.now() > deadline) throw new Error(`no readings stored within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * 1. Raw better-sqlite3 next to Vigil's ingest (gate + batches + Store), same table, same
 * pragmas, alternating five times on fresh files: the disk is shared and noisy, so medians.
 */
function storeBaseline(dir: string, rows: number): { rawPerSecond: number; vigilPerSecond: number } {
  const raw: number[] = [];
  const vigil: number[] = [];
  for (let round = 0; round < 5; round++) {
    const r = storeRound(path.join(dir, `round-${round}-`), rows);
    raw.push(r.rawPerSecond);
    vigil.push(r.vigilPerSecond);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { rawPerSecond: median(raw), vigilPerSecond: median(vigil) };
}

function storeRound(prefix: string, rows: number): { rawPerSecond: number; vigilPerSecond: number } {
  const now = Date.now();
  const make = (i: number): Reading => ({
    source: 'bench',
    asset: `pump-${i % 10}`,
    tag: `t${i % 20}`,
    value: i / 7,
    quality: 'good',
    sourceTime: now,
    serverTime: null,
    receivedAt: now,
  });
  const data = Array.from({ length: rows }, (_, i) => make(i));

  const raw = new Database(`${prefix}raw.db`);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  for (const m of MIGRATIONS) raw.exec(m.sql);
  const insert = raw.prepare(
    'INSERT INTO readings (source, asset, tag, value, quality, status, source_time, server_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const tx = raw.transaction((batch: Reading[]) => {
    for (const r of batch)
      insert.run(r.source, r.asset, r.tag, r.value, r.quality, null, r.sourceTime, null, r.receivedAt);
  });
  let t0 = performance.now();
  for (let i = 0; i < rows; i += 1000) tx(data.slice(i, i + 1000));
  const rawPerSecond = Math.round(rows / ((performance.now() - t0) / 1000));
  raw.close();

  const store = Store.open(
    `${prefix}vigil.db`,
    StoreConfig.parse({ path: 'x', retentionHours: 1e6, maxRows: 1e9, maxReadings: 1e9 }),
    silentLogger(),
  );
  const ingest = new TelemetryIngest({
    sink: store,
    metrics: new Metrics({ processMetrics: false }),
    log: silentLogger(),
    batchSize: 1000,
    flushIntervalMs: 100,
  });
  const gate = new ReadingGate({}, { maxClockSkewSeconds: 300, maxAgeSeconds: 86_400 });
  const log = silentLogger();
  t0 = performance.now();
  // Messages of 10 readings, as a JSON or Sparkplug message would bring them.
  for (let i = 0; i < rows; i += 10) ingest.accept('bench', data.slice(i, i + 10), gate, log);
  ingest.close();
  const vigilPerSecond = Math.round(rows / ((performance.now() - t0) / 1000));
  store.close();
  return { rawPerSecond, vigilPerSecond };
}

/** Publishes JSON messages of `tags` readings at `messagesPerSecond` until stopped. */
function jsonLoad(url: string, messagesPerSecond: number, tags: number): { stop: () => Promise<void> } {
  const client = mqtt.connect(url, { clientId: `bench-json-${process.pid}` });
  let stopped = false;
  const perTick = Math.max(1, Math.round(messagesPerSecond / 100));
  const timer = setInterval(() => {
    if (stopped || !client.connected) return;
    for (let k = 0; k < perTick; k++) {
      const msg: Record<string, number> = { ts: Date.now() };
      for (let i = 0; i < tags; i++) msg[`t${i}`] = Math.random() * 100;
      client.publish(`bench/m${k % 10}/telemetry`, JSON.stringify(msg), { qos: 0 });
    }
  }, 10);
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await client.endAsync();
    },
  };
}

const jsonSource = (url: string) => ({
  type: 'mqtt-json',
  url,
  qos: 0,
  subscriptions: [{ topic: 'bench/+/telemetry', asset: '{1}', allNumericFields: true, timestampField: 'ts' }],
});

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string, dflt: string) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
  };
  const seconds = Number(arg('--seconds', '10'));
  const out = args.includes('--out') ? arg('--out', '') : undefined;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-bench-telemetry-'));
  const report: Record<string, unknown> = {
    machine: `${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    seconds,
  };
  say(`vigil telemetry bench on ${String(report.machine)}; ${seconds} s windows`);
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const base = storeBaseline(dir, 100_000);
    report.store = base;
    say(
      `store: raw better-sqlite3 batched insert ${base.rawPerSecond}/s; Vigil ingest (checks + batches + store) ${base.vigilPerSecond}/s (${(base.vigilPerSecond / base.rawPerSecond).toFixed(2)}x)`,
    );

    if (args.includes('--store-only')) return;
    const broker = await startMosquitto(dir);
    cleanups.push(async () => broker.proc.kill());

    // 2. Sustained rate per source, each offered more than it can take where the protocol allows.
    const sustained: Record<string, Window & { offered: string }> = {};
    {
      const d = await startVigil(dir, 'mqtt-json', { json: jsonSource(broker.url) });
      const load = jsonLoad(broker.url, 5000, 10);
      await waitStored(d, 1);
      sustained['mqtt-json'] = { offered: '50,000/s (5,000 msgs of 10)', ...(await measure(d, seconds)) };
      await load.stop();
      await d.stop();
    }
    {
      const machines = Array.from({ length: 10 }, (_, i) => new BusyMachine(`dev-${i}`, 20));
      const node = new SimSparkplugNode({
        url: broker.url,
        groupId: 'bench',
        edgeNodeId: 'edge',
        machines,
        rateHz: 0,
      });
      const d = await startVigil(dir, 'sparkplug', {
        sp: { type: 'sparkplug-b', url: broker.url, groupId: 'bench' },
      });
      await node.start();
      let stop = false;
      const pump = (async () => {
        while (!stop) {
          for (let i = 0; i < 10; i++) node.tick();
          await sleep(2);
        }
      })();
      await waitStored(d, 1);
      sustained['sparkplug-b'] = {
        offered: 'as fast as the node ticks (10 devices x 20 metrics)',
        ...(await measure(d, seconds)),
      };
      stop = true;
      await pump;
      await node.stop();
      await d.stop();
    }
    {
      const machines = Array.from({ length: 10 }, (_, i) => new BusyMachine(`plc-${i}`, 100));
      const server = new SimOpcUaServer({
        port: 0,
        machines,
        pkiFolder: path.join(dir, 'opcua-pki'),
        minimumSamplingIntervalMs: 50,
      });
      const { endpointUrl } = await server.start();
      cleanups.push(() => server.stop());
      const items = machines.flatMap((m) =>
        m.tags.map((t) => ({
          nodeId: simNodeId(m.asset, t.name),
          asset: m.asset,
          tag: t.name,
          samplingIntervalMs: 50,
          queueSize: 10,
        })),
      );
      const d = await startVigil(dir, 'opcua', {
        opc: {
          type: 'opcua',
          endpoint: endpointUrl,
          pkiFolder: path.join(dir, 'client-pki'),
          subscription: { publishingIntervalMs: 100 },
          items,
        },
      });
      await waitStored(d, 1);
      sustained.opcua = {
        offered: '20,000/s (1,000 nodes sampled every 50 ms)',
        ...(await measure(d, seconds)),
      };

      // 4a. Reconnect time after an OPC-UA server restart (default back-off).
      await server.stop();
      await sleep(2000);
      const before = await metric(d.url, 'vigil_readings_stored_total');
      await server.start();
      const t0 = performance.now();
      await waitStored(d, before + 1, 60_000);
      report.reconnectOpcuaMs = Math.round(performance.now() - t0);
      await d.stop();
      await server.stop();
    }
    {
      const machine = new BusyMachine('line-0', 10);
      const pty = await PtyPair.create();
      cleanups.push(() => pty.stop());
      const device = new SimLineDevice({
        path: pty.devicePath,
        machine,
        format: 'csv',
        rateHz: 1000,
        baudRate: 115200,
      });
      await device.start();
      const d = await startVigil(dir, 'serial', {
        line: {
          type: 'serial-line',
          path: pty.hostPath,
          baudRate: 115200,
          format: { type: 'csv', columns: SimLineDevice.csvColumns(machine) },
        },
      });
      await waitStored(d, 1);
      sustained['serial-line'] = {
        offered: '10,000/s (1,000 lines of 10 values; a pty has no baud limit)',
        ...(await measure(d, seconds)),
      };
      // 4c. Cable pull: the pty disappears for 2 s.
      await pty.unplug();
      await sleep(2000);
      const before = await metric(d.url, 'vigil_readings_stored_total');
      await pty.replug();
      const t0 = performance.now();
      await waitStored(d, before + 1, 60_000);
      report.reconnectSerialMs = Math.round(performance.now() - t0);
      await device.stop();
      await d.stop();
    }
    {
      const machine = new BusyMachine('drive-0', 20);
      const pty = await PtyPair.create();
      cleanups.push(() => pty.stop());
      const registers = modbusRegisterMap(machine);
      const device = new SimModbusDevice({ path: pty.devicePath, unitId: 1, machine, registers });
      await device.start();
      const d = await startVigil(dir, 'modbus', {
        rtu: {
          type: 'modbus-rtu',
          path: pty.hostPath,
          baudRate: 115200,
          asset: 'drive-0',
          pollIntervalMs: 10,
          registers: registers.map((r) => ({ tag: r.tag, table: r.table, address: r.address, type: r.type })),
        },
      });
      await waitStored(d, 1);
      sustained['modbus-rtu'] = {
        offered: 'polls every 10 ms, 20 float32 registers in one read',
        ...(await measure(d, seconds)),
      };
      await device.stop();
      await d.stop();
    }
    report.sustained = sustained;

    // 3. CPU and RSS at offered 1k and 10k readings/s (MQTT JSON, 10 readings per message).
    const load: Record<string, Window> = {};
    for (const perSecond of [1_000, 10_000]) {
      const d = await startVigil(dir, `load-${perSecond}`, { json: jsonSource(broker.url) });
      const gen = jsonLoad(broker.url, perSecond / 10, 10);
      await waitStored(d, 1);
      await sleep(2000);
      load[String(perSecond)] = await measure(d, seconds);
      await gen.stop();
      await d.stop();
    }
    report.load = load;

    // 4b. Reconnect time after the MQTT broker restarts on the same port.
    {
      const d = await startVigil(dir, 'broker-restart', { json: jsonSource(broker.url) });
      const gen = jsonLoad(broker.url, 100, 10);
      await waitStored(d, 1);
      broker.proc.kill();
      await sleep(2000);
      const before = await metric(d.url, 'vigil_readings_stored_total');
      const again = await startMosquitto(dir, broker.port);
      cleanups.push(async () => again.proc.kill());
      const t0 = performance.now();
      await waitStored(d, before + 1, 60_000);
      report.reconnectMqttMs = Math.round(performance.now() - t0);
      await gen.stop();
      await d.stop();
    }

    say(
      '\n| source | offered | stored readings/s | daemon CPU (one core = 100%) | RSS MiB (peak) | refused |',
    );
    say('|---|---|---|---|---|---|');
    for (const [name, w] of Object.entries(sustained))
      say(
        `| ${name} | ${w.offered} | ${w.rate} | ${w.cpuPercent}% | ${w.rssMiB} (${w.peakRssMiB}) | ${w.refused} |`,
      );
    say('\n| offered (MQTT JSON) | stored readings/s | daemon CPU | RSS MiB (peak) |');
    say('|---|---|---|---|');
    for (const [rate, w] of Object.entries(load))
      say(`| ${rate}/s | ${w.rate} | ${w.cpuPercent}% | ${w.rssMiB} (${w.peakRssMiB}) |`);
    say(
      `\nreconnect to first new stored reading: OPC-UA server restart ${String(report.reconnectOpcuaMs)} ms, MQTT broker restart ${String(report.reconnectMqttMs)} ms, serial re-plug ${String(report.reconnectSerialMs)} ms`,
    );
    if (out) await writeFile(out, JSON.stringify(report, null, 2) + '\n');
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
