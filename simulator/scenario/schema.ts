import { z } from 'zod';
import { CMAPSS_TAGS } from '../machines/cmapss.js';
import { CMAPSS_DATASETS } from '../machines/cmapss-data.js';
import { FAILURE_MODES } from '../machines/failure.js';
import { VALUE_FAULT_KINDS } from '../machines/faults.js';
import { PROFILES } from '../machines/profiles.js';

/**
 * The scenario file: which machines the simulator runs, how fast time goes, how each machine is
 * exposed (OPC-UA, serial, MQTT) and which faults happen when. Strict: an unknown key is an error,
 * so that a misspelt setting never falls back to a default silently. docs/SIMULATOR.md describes it.
 *
 * Time bases: failure times are simulated hours (physics); fault times (`at`, `durationSeconds`,
 * `downSeconds`) are wall-clock seconds since the scenario started.
 */

const AssetId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/,
    'an asset id: letters, digits, dot, colon, dash and underscore, starting with a letter or digit',
  );
const Seed = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 1);
const RateHz = z.number().positive().max(100);
const Port = z.number().int().min(0).max(65535);
const Seconds = z.number().min(0);

export const OpcuaExpose = z
  .strictObject({
    port: Port.default(0).describe(
      'TCP port of the OPC-UA server; machines with the same port share one server; 0: the shared server on a free port',
    ),
  })
  .describe('Expose the machine as variables of an OPC-UA server');

export const SerialExpose = z
  .strictObject({
    format: z
      .enum(['csv', 'kv', 'modbus'])
      .describe('csv lines, key=value lines, or Modbus RTU holding registers'),
    rateHz: RateHz.default(2).describe(
      'Lines per second (csv, kv) or register refreshes per second (modbus)',
    ),
    unitId: z.number().int().min(1).max(247).default(1).describe('Modbus slave id (modbus only)'),
  })
  .describe('Expose the machine as a serial device on a pseudo-terminal');

export const MqttExpose = z
  .strictObject({
    format: z.enum(['json', 'sparkplug']).describe('JSON messages or Sparkplug B payloads'),
    rateHz: RateHz.default(2).describe('Messages per second'),
  })
  .describe('Publish the machine to the MQTT broker');

export const Expose = z
  .strictObject({
    opcua: OpcuaExpose.optional(),
    serial: SerialExpose.optional(),
    mqtt: MqttExpose.optional(),
  })
  .describe('The protocols the machine is reachable through; none: it runs headless');
export type Expose = z.infer<typeof Expose>;
export type Protocol = keyof Expose;
export const PROTOCOLS: readonly Protocol[] = ['opcua', 'serial', 'mqtt'];

export const FailureSpec = z
  .strictObject({
    mode: z
      .enum([...FAILURE_MODES, 'random'])
      .default('random')
      .describe(
        'bearing_wear, seal_leak (pump), overheating, imbalance (spindle), or random: one drawn per run',
      ),
    atHours: z
      .number()
      .positive()
      .optional()
      .describe('Simulated hours from the start to the first failure; drawn from the seed when absent'),
    meanLifeHours: z
      .number()
      .positive()
      .optional()
      .describe('Mean life of the drawn failure times (Weibull); 400 for a pump, 250 for a spindle'),
    degradationHours: z
      .number()
      .positive()
      .optional()
      .describe('How long before a failure the damage starts; 30–50 % of the life when absent'),
    repairHours: z
      .number()
      .min(0)
      .nullable()
      .default(8)
      .describe('After a failure, the machine restarts as new after this long; null: it stays failed'),
  })
  .describe('The planned failures; null: the machine never fails');

const rotatingFields = {
  seed: Seed.optional().describe(
    "The machine's seed; derived from the scenario seed and the asset id when absent",
  ),
  stepSeconds: z
    .number()
    .positive()
    .max(600)
    .default(10)
    .describe('Simulated seconds per physics step; results depend on it, not on how often values are read'),
  modeDwellScale: z
    .number()
    .positive()
    .default(1)
    .describe('Multiplies the mean time spent in each operating mode'),
  failure: FailureSpec.nullable().prefault({}),
  expose: Expose.prefault({}),
};

export const PumpSpec = z
  .strictObject({ kind: z.literal('pump'), ...rotatingFields })
  .describe('A centrifugal pump: temperature, vibration_rms, current, speed, pressure, mode, hours');
export const SpindleSpec = z
  .strictObject({ kind: z.literal('spindle'), ...rotatingFields })
  .describe('A machine-tool spindle: temperature, vibration_rms, current, speed, load, mode, hours');
export const EngineSpec = z
  .strictObject({
    kind: z.literal('cmapss-engine'),
    dataset: z.enum(CMAPSS_DATASETS).describe('The C-MAPSS training set replayed'),
    units: z
      .array(z.number().int().min(1).max(100))
      .min(1)
      .optional()
      .describe('Units (engines) replayed in order, 1–100; all of them when absent'),
    cycleSeconds: z
      .number()
      .positive()
      .default(3600)
      .describe('Simulated seconds per operating cycle (one flight)'),
    replacementCycles: z
      .number()
      .int()
      .min(0)
      .default(1)
      .describe('Cycles the failed engine stays down before the replacement starts'),
    replace: z
      .boolean()
      .default(true)
      .describe('Whether a replacement (the next unit) follows a failure; false: it stays failed'),
    expose: Expose.prefault({}),
  })
  .describe('An aircraft engine replaying NASA C-MAPSS run-to-failure data');

export const MachineSpec = z.discriminatedUnion('kind', [PumpSpec, SpindleSpec, EngineSpec]);
export type MachineSpec = z.infer<typeof MachineSpec>;
export type RotatingSpec = z.infer<typeof PumpSpec> | z.infer<typeof SpindleSpec>;
export type EngineSpec = z.infer<typeof EngineSpec>;

const valueFault = {
  asset: AssetId.describe('The machine'),
  at: Seconds.describe('Start, wall-clock seconds since the scenario started'),
};

export const SpikeFault = z
  .strictObject({
    kind: z.literal('spike'),
    ...valueFault,
    tag: z.string().min(1).describe('The tag that spikes'),
    durationSeconds: z.number().positive().default(1).describe('How long the spike lasts'),
    factor: z.number().optional().describe('The value is multiplied by this'),
    offset: z.number().optional().describe('Then this is added'),
  })
  .refine((f) => f.factor !== undefined || f.offset !== undefined, {
    message: 'a spike needs a factor, an offset or both',
    path: ['factor'],
  });
export const StuckFault = z.strictObject({
  kind: z.literal('stuck'),
  ...valueFault,
  tag: z.string().min(1).describe('The tag that freezes at its last value, with good quality'),
  durationSeconds: z.number().positive(),
});
export const DriftFault = z.strictObject({
  kind: z.literal('drift'),
  ...valueFault,
  tag: z.string().min(1),
  durationSeconds: z.number().positive(),
  offset: z.number().describe('Offset reached, linearly, at the end of the window'),
});
export const OffsetFault = z.strictObject({
  kind: z.literal('offset'),
  ...valueFault,
  tag: z.string().min(1).describe('The tag whose sensor reads off by a constant'),
  durationSeconds: z.number().positive().describe('How long the sensor stays off (until recalibrated)'),
  offset: z.number().describe("Added to every value while the fault lasts, in the tag's unit"),
});
export const DropoutFault = z.strictObject({
  kind: z.literal('dropout'),
  ...valueFault,
  tag: z.string().min(1).optional().describe('The tag; every tag of the machine when absent'),
  durationSeconds: z.number().positive(),
});
export const StatusFault = z.strictObject({
  kind: z.literal('status'),
  ...valueFault,
  tag: z.string().min(1).optional().describe('The tag; every tag of the machine when absent'),
  durationSeconds: z.number().positive(),
  status: z
    .string()
    .regex(
      /^(Bad|Uncertain)[A-Za-z]+$/,
      'an OPC-UA status name such as BadSensorFailure or UncertainLastUsableValue',
    )
    .describe('Bad...: the value is lost; Uncertain...: kept but flagged'),
});

const protocolFault = <K extends string, P extends Protocol>(kind: K, protocol: P, what: string) =>
  z
    .strictObject({
      kind: z.literal(kind),
      protocol: z
        .literal(protocol)
        .default(protocol as never)
        .describe(`Always ${protocol}`),
      asset: AssetId.optional().describe(
        `The machine whose ${protocol} link is hit; all of them when absent`,
      ),
      at: Seconds.describe('Start, wall-clock seconds since the scenario started'),
      downSeconds: z.number().positive().describe('How long it stays down'),
    })
    .describe(what);

export const ServerRestartFault = protocolFault(
  'server-restart',
  'opcua',
  'The OPC-UA server stops and restarts',
);
export const CablePullFault = protocolFault(
  'cable-pull',
  'serial',
  'The serial line goes dead, then comes back',
);
export const BrokerDisconnectFault = protocolFault(
  'broker-disconnect',
  'mqtt',
  'The MQTT publisher drops its broker connection, then reconnects',
);

export const FaultSpec = z.discriminatedUnion('kind', [
  SpikeFault,
  StuckFault,
  DriftFault,
  OffsetFault,
  DropoutFault,
  StatusFault,
  ServerRestartFault,
  CablePullFault,
  BrokerDisconnectFault,
]);
export type FaultSpec = z.infer<typeof FaultSpec>;
export type ProtocolFaultSpec =
  z.infer<typeof ServerRestartFault> | z.infer<typeof CablePullFault> | z.infer<typeof BrokerDisconnectFault>;
export type ValueFaultSpec = Exclude<FaultSpec, ProtocolFaultSpec>;

export function isValueFault(f: FaultSpec): f is ValueFaultSpec {
  return (VALUE_FAULT_KINDS as readonly string[]).includes(f.kind);
}

export const ScenarioSpec = z.strictObject({
  version: z.literal(1).describe('Format version of the scenario file'),
  name: z.string().min(1).optional().describe('A short name for logs and reports'),
  description: z.string().optional(),
  seed: Seed.default(1).describe('Seed of everything random in the scenario'),
  acceleration: z
    .number()
    .positive()
    .max(1e9)
    .default(3600)
    .describe('Simulated seconds per wall-clock second (3600: one simulated hour per second)'),
  machines: z
    .record(AssetId, MachineSpec)
    .refine((m) => Object.keys(m).length > 0, 'a scenario needs at least one machine')
    .describe('The machines, by asset id'),
  faults: z.array(FaultSpec).default([]).describe('Value faults and protocol faults, in any order'),
});
export type ScenarioSpec = z.infer<typeof ScenarioSpec>;

/** The tags a machine of a kind publishes. */
export function tagsOf(kind: MachineSpec['kind']): readonly string[] {
  return (kind === 'cmapss-engine' ? CMAPSS_TAGS : PROFILES[kind].tags).map((t) => t.name);
}

/** The OPC-UA servers a scenario needs: machines grouped by port (0: the shared one on a free port). */
export function opcuaServers(spec: ScenarioSpec): Array<{ port: number; assets: string[] }> {
  const byPort = new Map<number, string[]>();
  for (const [asset, m] of Object.entries(spec.machines)) {
    const port = m.expose.opcua?.port;
    if (port === undefined) continue;
    byPort.set(port, [...(byPort.get(port) ?? []), asset]);
  }
  return [...byPort].map(([port, assets]) => ({ port, assets }));
}

/**
 * Machines a protocol fault hits: every machine exposed over the protocol when no asset is named;
 * else the named one, and for a server restart every machine on the same server.
 */
export function faultTargets(spec: ScenarioSpec, f: ProtocolFaultSpec): string[] {
  if (f.asset === undefined)
    return Object.entries(spec.machines)
      .filter(([, m]) => m.expose[f.protocol] !== undefined)
      .map(([asset]) => asset);
  if (f.protocol === 'opcua') {
    const server = opcuaServers(spec).find((s) => s.assets.includes(f.asset!));
    if (server) return server.assets;
  }
  return [f.asset];
}

/** Problems zod cannot see: references between machines and faults, and settings that contradict. */
export function crossIssues(spec: ScenarioSpec): Array<{ path: string; message: string }> {
  const issues: Array<{ path: string; message: string }> = [];
  const assets = Object.keys(spec.machines);
  for (const [asset, m] of Object.entries(spec.machines)) {
    if (m.kind === 'cmapss-engine' || !m.failure) continue;
    const modes = PROFILES[m.kind].failureModes;
    if (m.failure.mode !== 'random' && !modes.includes(m.failure.mode))
      issues.push({
        path: `machines.${asset}.failure.mode`,
        message: `a ${m.kind} has no failure mode '${m.failure.mode}'; use one of ${modes.join(', ')} or random`,
      });
    const { atHours, degradationHours } = m.failure;
    if (atHours !== undefined && degradationHours !== undefined && degradationHours >= atHours)
      issues.push({
        path: `machines.${asset}.failure.degradationHours`,
        message: `must be shorter than atHours (${atHours}): the damage starts that long before the failure`,
      });
  }
  spec.faults.forEach((f, i) => {
    const where = `faults.${i}`;
    if (f.asset !== undefined && !(f.asset in spec.machines)) {
      issues.push({
        path: `${where}.asset`,
        message: `no machine '${f.asset}' in this scenario (machines: ${assets.join(', ')})`,
      });
      return;
    }
    if (isValueFault(f)) {
      const kind = spec.machines[f.asset]!.kind;
      const tags = tagsOf(kind);
      if (f.tag !== undefined && !tags.includes(f.tag))
        issues.push({
          path: `${where}.tag`,
          message: `a ${kind} has no tag '${f.tag}' (tags: ${tags.join(', ')})`,
        });
      return;
    }
    if (f.asset !== undefined && spec.machines[f.asset]!.expose[f.protocol] === undefined)
      issues.push({
        path: `${where}.asset`,
        message: `'${f.asset}' is not exposed over ${f.protocol}, so a ${f.kind} cannot hit it`,
      });
    else if (faultTargets(spec, f).length === 0)
      issues.push({
        path: where,
        message: `no machine is exposed over ${f.protocol}, so a ${f.kind} hits nothing`,
      });
  });
  // Two outages of the same link at once would make "down" and "up" ambiguous for the wiring.
  const windows: Array<{ i: number; protocol: Protocol; assets: string[]; from: number; to: number }> = [];
  spec.faults.forEach((f, i) => {
    if (isValueFault(f)) return;
    const w = {
      i,
      protocol: f.protocol,
      assets: faultTargets(spec, f),
      from: f.at,
      to: f.at + f.downSeconds,
    };
    const clash = windows.find(
      (o) =>
        o.protocol === w.protocol &&
        o.from < w.to &&
        w.from < o.to &&
        o.assets.some((a) => w.assets.includes(a)),
    );
    if (clash)
      issues.push({
        path: `faults.${i}.at`,
        message: `overlaps faults.${clash.i} on the same ${w.protocol} link; let one outage end before the next starts`,
      });
    windows.push(w);
  });
  return issues;
}
