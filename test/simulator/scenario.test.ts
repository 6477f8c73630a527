import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualTime, SimClock } from '../../simulator/machines/clock.js';
import { CmapssEngine } from '../../simulator/machines/cmapss.js';
import { SimError } from '../../simulator/machines/errors.js';
import { FaultyMachine } from '../../simulator/machines/faults.js';
import { RotatingMachine } from '../../simulator/machines/rotating.js';
import {
  ScenarioError,
  loadScenarioFile,
  loadScenarioText,
  parseScenario,
  shippedScenario,
} from '../../simulator/scenario/load.js';
import { runTimeline, type ProtocolFaultEvent } from '../../simulator/scenario/timeline.js';

const SCENARIOS = path.resolve(import.meta.dirname, '../../simulator/scenarios');

/** The issues a bad scenario is refused with, as `path: message` lines. */
function problems(text: string): string[] {
  try {
    loadScenarioText(text, 'bad.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ScenarioError);
    expect((err as ScenarioError).code).toBe('SIM_ERR_SCENARIO_INVALID');
    expect((err as Error).message).toMatch(/^scenario bad.yaml: \d+ problems?\n/);
    return (err as ScenarioError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('the scenario was accepted');
}

const PUMP = `
version: 1
machines:
  pump-1:
    kind: pump
    expose: { opcua: {} }
`;

describe('scenario files', () => {
  const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.yaml'));

  it('ships the default, fault, engine fleet and run-to-failure scenarios', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'default.yaml',
        'factory-faults.yaml',
        'engine-fleet.yaml',
        'pump-run-to-failure.yaml',
      ]),
    );
  });

  it.each(files)('accepts and builds %s', (file) => {
    const scenario = loadScenarioFile(path.join(SCENARIOS, file));
    const built = scenario.build({
      clock: new SimClock({ acceleration: scenario.spec.acceleration, now: () => 0 }),
    });
    expect(built.machines.map((m) => m.asset)).toEqual(scenario.assets);
    for (const { machine } of built.machines) {
      const snap = machine.snapshot();
      expect(Object.keys(snap.values)).toEqual(machine.tags.map((t) => t.name));
    }
  });

  it('default: a pump on OPC-UA, a spindle on serial CSV, an engine on Sparkplug; the pump fails within minutes', () => {
    expect(shippedScenario('default')).toBe(path.join(SCENARIOS, 'default.yaml'));
    const scenario = loadScenarioFile(shippedScenario('default'));
    const time = new ManualTime(0);
    const built = scenario.build({
      clock: new SimClock({ acceleration: scenario.spec.acceleration, now: time.now }),
    });
    const by = Object.fromEntries(built.machines.map((m) => [m.asset, m]));
    expect(by['pump-1']!.machine).toBeInstanceOf(RotatingMachine);
    expect(by['pump-1']!.expose.opcua).toBeDefined();
    expect(by['spindle-1']!.expose.serial?.format).toBe('csv');
    expect(by['engine-1']!.machine).toBeInstanceOf(CmapssEngine);
    expect(by['engine-1']!.expose.mqtt?.format).toBe('sparkplug');
    const failsAtMs = by['pump-1']!.machine.truth().failureAtWallMs!;
    expect(failsAtMs).toBeGreaterThan(60_000);
    expect(failsAtMs).toBeLessThan(5 * 60_000);
  });

  it('factory-faults: wraps machines with their value faults and lists every fault as ground truth', () => {
    const scenario = loadScenarioFile(path.join(SCENARIOS, 'factory-faults.yaml'));
    const built = scenario.build({
      clock: new SimClock({ acceleration: 600, now: () => 5000, startWallMs: 0 }),
    });
    for (const m of built.machines) expect(m.machine).toBeInstanceOf(FaultyMachine);
    const truth = built.injectedFaults();
    const kinds = new Set(truth.map((t) => t.kind));
    for (const k of [
      'spike',
      'stuck',
      'drift',
      'dropout',
      'status',
      'server-restart',
      'cable-pull',
      'broker-disconnect',
    ])
      expect(kinds).toContain(k);
    expect(truth.find((t) => t.kind === 'server-restart')).toEqual({
      asset: 'pump-1',
      tag: '*',
      kind: 'server-restart',
      from: 60_000,
      to: 65_000,
      atSeconds: 60,
      untilSeconds: 65,
    });
  });
});

describe('scenario validation', () => {
  it('names the path of an unknown key, a bad value and a missing field', () => {
    expect(
      problems(`
version: 1
acceleration: -5
machines:
  pump-1:
    kind: pump
    failur: { mode: random }
  engine-1:
    kind: cmapss-engine
    expose: { mqtt: { format: xml } }
`),
    ).toEqual([
      expect.stringMatching(/^acceleration: .*>0/),
      "machines.pump-1: unknown key 'failur' (check the spelling; see docs/SIMULATOR.md)",
      expect.stringMatching(/^machines.engine-1.dataset: /),
      expect.stringMatching(/^machines.engine-1.expose.mqtt.format: .*"json"\|"sparkplug"/),
    ]);
    expect(problems('machines: {}\n')).toEqual([
      expect.stringMatching(/^version: /),
      'machines: a scenario needs at least one machine',
    ]);
  });

  it('names the kinds it knows when one is unknown', () => {
    expect(problems('version: 1\nmachines:\n  m: { kind: turbine }\n')).toEqual([
      'machines.m.kind: unknown kind; use one of pump, spindle, cmapss-engine',
    ]);
    expect(problems(`${PUMP}faults:\n  - { kind: earthquake, at: 1 }\n`)).toEqual([
      'faults.0.kind: unknown kind; use one of spike, stuck, drift, dropout, status, server-restart, cable-pull, broker-disconnect',
    ]);
  });

  it('checks the references between faults and machines', () => {
    const text = `${PUMP}
  engine-1:
    kind: cmapss-engine
    dataset: FD003
    units: [0]
faults:
  - { kind: spike, asset: pump-9, tag: speed, at: 1, factor: 2 }
  - { kind: stuck, asset: pump-1, tag: s4, at: 1, durationSeconds: 3 }
  - { kind: spike, asset: pump-1, tag: speed, at: 1 }
  - { kind: status, asset: pump-1, at: 1, durationSeconds: 3, status: Broken }
  - { kind: cable-pull, asset: pump-1, at: 1, downSeconds: 3 }
  - { kind: broker-disconnect, at: 1, downSeconds: 3 }
`;
    expect(problems(text)).toEqual([
      expect.stringMatching(/^machines.engine-1.units.0: /),
      'faults.2.factor: a spike needs a factor, an offset or both',
      expect.stringMatching(/^faults.3.status: an OPC-UA status name/),
    ]);
    const fixed = text
      .replace('units: [0]', 'units: [1]')
      .replace('\n  - { kind: spike, asset: pump-1, tag: speed, at: 1 }', '');
    expect(problems(fixed.replace('status: Broken', 'status: BadSensorFailure'))).toEqual([
      "faults.0.asset: no machine 'pump-9' in this scenario (machines: pump-1, engine-1)",
      "faults.1.tag: a pump has no tag 's4' (tags: temperature, vibration_rms, current, speed, pressure, mode, hours)",
      "faults.3.asset: 'pump-1' is not exposed over serial, so a cable-pull cannot hit it",
      'faults.4: no machine is exposed over mqtt, so a broker-disconnect hits nothing',
    ]);
  });

  it('refuses contradictory settings', () => {
    expect(
      problems(`
version: 1
machines:
  s1:
    kind: spindle
    failure: { mode: seal_leak, atHours: 10, degradationHours: 20 }
    expose: { opcua: { port: 4840 } }
  s2:
    kind: spindle
    expose: { opcua: { port: 4840 } }
  s3:
    kind: spindle
    expose: { opcua: {} }
faults:
  - { kind: server-restart, asset: s3, at: 10, downSeconds: 5 }
  - { kind: server-restart, asset: s2, at: 12, downSeconds: 5 }
  - { kind: server-restart, asset: s1, at: 16, downSeconds: 5 }
`),
    ).toEqual([
      "machines.s1.failure.mode: a spindle has no failure mode 'seal_leak'; use one of bearing_wear, overheating, imbalance or random",
      'machines.s1.failure.degradationHours: must be shorter than atHours (10): the damage starts that long before the failure',
      // s1 and s2 share the server on port 4840: restarting it for s1 while it is down for s2 clashes.
      'faults.2.at: overlaps faults.1 on the same opcua link; let one outage end before the next starts',
    ]);
  });

  it('groups machines by OPC-UA server, and a server restart hits every machine on it', () => {
    const s = loadScenarioText(`
version: 1
machines:
  a: { kind: pump, expose: { opcua: {} } }
  b: { kind: pump, expose: { opcua: { port: 4841 } } }
  c: { kind: pump, expose: { opcua: {} } }
faults:
  - { kind: server-restart, asset: c, at: 1, downSeconds: 1 }
  - { kind: server-restart, asset: b, at: 1, downSeconds: 1 }
`);
    expect(s.opcuaServers()).toEqual([
      { port: 0, assets: ['a', 'c'] },
      { port: 4841, assets: ['b'] },
    ]);
    expect(
      s
        .timeline()
        .filter((e) => e.action === 'down')
        .map((e) => e.assets),
    ).toEqual([['a', 'c'], ['b']]);
  });

  it('reports YAML syntax errors with their line, and a missing file plainly', () => {
    expect(problems('version: 1\nmachines:\n  pump-1: { kind: pump\n')[0]).toMatch(/^line \d+, column \d+: /);
    expect(() => loadScenarioFile('/nonexistent/scenario.yaml')).toThrow(SimError);
    expect(() => loadScenarioFile('/nonexistent/scenario.yaml')).toThrow(
      /scenario file \/nonexistent\/scenario.yaml does not exist/,
    );
  });

  it('fills in defaults and derives a stable seed per machine', () => {
    const s = parseScenario({
      version: 1,
      machines: { 'pump-1': { kind: 'pump' }, 'pump-2': { kind: 'pump', seed: 5 } },
    });
    expect(s.spec.seed).toBe(1);
    expect(s.spec.acceleration).toBe(3600);
    const m = s.machine('pump-1');
    expect(m).toMatchObject({ stepSeconds: 10, failure: { mode: 'random', repairHours: 8 }, expose: {} });
    expect(s.machineSeed('pump-1')).toBe(parseScenario(s.spec).machineSeed('pump-1'));
    const other = parseScenario({ version: 1, machines: { 'pump-3': { kind: 'pump' } } });
    expect(other.machineSeed('pump-3')).not.toBe(s.machineSeed('pump-1'));
    expect(parseScenario({ ...s.spec, seed: 2 }).machineSeed('pump-1')).not.toBe(s.machineSeed('pump-1'));
    expect(s.machineSeed('pump-2')).toBe(5);
    const withPort = parseScenario({
      version: 1,
      machines: { e: { kind: 'pump', expose: { serial: { format: 'modbus' } } } },
    });
    expect(withPort.spec.machines['e']!.expose.serial).toEqual({ format: 'modbus', rateHz: 2, unitId: 1 });
  });
});

describe('fault timeline', () => {
  const scenario = loadScenarioText(`
version: 1
machines:
  pump-1: { kind: pump, expose: { opcua: {}, mqtt: { format: json } } }
  pump-2: { kind: pump, expose: { opcua: {}, serial: { format: kv } } }
faults:
  - { kind: cable-pull, at: 0.15, downSeconds: 0.05 }
  - { kind: server-restart, at: 0.02, downSeconds: 0.1 }
  - { kind: spike, asset: pump-1, tag: speed, at: 0.01, factor: 2 }
  - { kind: broker-disconnect, asset: pump-1, at: 0.12, downSeconds: 0.03 }
`);

  it('lists protocol faults as down/up events in time order with the machines they hit', () => {
    const events = scenario.timeline();
    expect(events.map((e) => [e.atSeconds, e.action, e.kind, e.assets.join('+')])).toEqual([
      [0.02, 'down', 'server-restart', 'pump-1+pump-2'],
      [0.12, 'up', 'server-restart', 'pump-1+pump-2'],
      [0.12, 'down', 'broker-disconnect', 'pump-1'],
      [0.15, 'up', 'broker-disconnect', 'pump-1'],
      [0.15, 'down', 'cable-pull', 'pump-2'],
      [0.2, 'up', 'cable-pull', 'pump-2'],
    ]);
    expect(events.map((e) => e.fault)).toEqual([1, 1, 3, 3, 0, 0]);
    expect(events[0]!.protocol).toBe('opcua');
  });

  it('calls back at each event on the wall clock, in order, and can be stopped', async () => {
    const clock = new SimClock({ acceleration: 3600 });
    const seen: string[] = [];
    const errors: string[] = [];
    const run = runTimeline(
      scenario.timeline(),
      clock,
      (e) => {
        // Never early: the event is due when the handler runs.
        expect(clock.wallSeconds()).toBeGreaterThanOrEqual(e.atSeconds - 0.002);
        seen.push(`${e.kind}:${e.action}`);
        if (e.kind === 'broker-disconnect' && e.action === 'down') throw new Error('handler failed');
      },
      { onError: (err, e) => errors.push(`${e.kind}:${(err as Error).message}`) },
    );
    await run.done;
    expect(seen).toEqual(scenario.timeline().map((e) => `${e.kind}:${e.action}`));
    expect(errors).toEqual(['broker-disconnect:handler failed']);

    const stopped: ProtocolFaultEvent[] = [];
    const ctl = new AbortController();
    const second = runTimeline(
      scenario.timeline(),
      new SimClock({ acceleration: 1 }),
      (e) => void stopped.push(e),
      {
        signal: ctl.signal,
      },
    );
    setTimeout(() => ctl.abort(), 60);
    await second.done;
    expect(stopped.map((e) => e.action)).toEqual(['down']);
  });
});
