import path from 'node:path';
import type { SimMachine } from '../machines/types.js';
import { SimJsonPublisher } from '../mqtt/json-publisher.js';
import { SimSparkplugNode } from '../mqtt/sparkplug-node.js';
import { SimOpcUaServer, simNodeId } from '../opcua/server.js';
import type { BuiltScenario, Scenario } from '../scenario/scenario.js';
import { runTimeline, type ProtocolFaultEvent, type TimelineRun } from '../scenario/timeline.js';
import { PtyPair, SimLineDevice, SimModbusDevice, type SimRegister } from '../serial/index.js';

/**
 * The simulated plant: a scenario's machines, each behind the real protocol servers the
 * scenario names (an OPC-UA server, a serial device on a socat pty pair, an MQTT publisher), and
 * the scenario's protocol faults played against them (a server restart, a cable pull, a broker
 * connection lost). It reports where each machine can be reached, in protocol terms only: the
 * simulator knows nothing of Vigil; the composition root turns endpoints into Vigil sources.
 */

export type PlantEndpoint =
  | { protocol: 'opcua'; endpointUrl: string; nodes: Array<{ asset: string; tag: string; nodeId: string }> }
  | { protocol: 'serial-line'; asset: string; format: 'csv' | 'kv'; hostPath: string; columns: string[] }
  | { protocol: 'modbus-rtu'; asset: string; hostPath: string; unitId: number; registers: SimRegister[] }
  | { protocol: 'mqtt-json'; topicPrefix: string; assets: string[] }
  | { protocol: 'sparkplug-b'; groupId: string; edgeNodeId: string; assets: string[] };

export interface PlantOptions {
  scenario: Scenario;
  /** Broker the MQTT publishers connect to; needed when a machine is exposed over MQTT. */
  mqttUrl?: string;
  /** Folder for the OPC-UA server's PKI and the serial links. */
  workDir: string;
  cmapssDir?: string;
  /** One line per notable event (a server restart, a cable pull). */
  log?: (line: string) => void;
  /**
   * When given, a serial exposure that cannot be set up (socat missing) is reported here and
   * skipped instead of failing the whole plant: a demo on a bare machine still shows the rest.
   */
  onSerialUnavailable?: (asset: string, err: unknown) => void;
}

/** Sparkplug group of the simulated edge nodes; JSON topics start with this prefix. */
export const SPARKPLUG_GROUP = 'plant';
export const JSON_TOPIC_PREFIX = 'plant';

interface SerialLink {
  asset: string;
  pty: PtyPair;
  device: SimLineDevice | SimModbusDevice;
}

interface MqttLink {
  assets: string[];
  publisher: SimJsonPublisher | SimSparkplugNode;
}

export class Plant {
  readonly endpoints: PlantEndpoint[] = [];
  private readonly opcua: Array<{ assets: string[]; server: SimOpcUaServer }> = [];
  private readonly serial: SerialLink[] = [];
  private readonly mqtt: MqttLink[] = [];
  private timeline: TimelineRun | undefined;
  private readonly log: (line: string) => void;

  private constructor(
    private readonly options: PlantOptions,
    readonly built: BuiltScenario,
  ) {
    this.log = options.log ?? (() => undefined);
  }

  /** Builds the machines and starts every protocol server; the scenario clock starts once all are up. */
  static async start(options: PlantOptions): Promise<Plant> {
    const built = options.scenario.build(options.cmapssDir ? { cmapssDir: options.cmapssDir } : {});
    const plant = new Plant(options, built);
    try {
      await plant.startAll();
    } catch (err) {
      await plant.stop();
      throw err;
    }
    return plant;
  }

  get machines(): SimMachine[] {
    return this.built.machines.map((m) => m.machine);
  }

  private async startAll(): Promise<void> {
    const { scenario, workDir } = this.options;
    const byAsset = new Map(this.built.machines.map((m) => [m.asset, m]));

    for (const [i, group] of scenario.opcuaServers().entries()) {
      const machines = group.assets.map((a) => byAsset.get(a)!.machine);
      const server = new SimOpcUaServer({
        port: group.port,
        machines,
        pkiFolder: path.join(workDir, `opcua-server-${i}`),
        log: this.log,
      });
      const { endpointUrl } = await server.start();
      this.opcua.push({ assets: group.assets, server });
      this.endpoints.push({
        protocol: 'opcua',
        endpointUrl,
        nodes: machines.flatMap((m) =>
          m.tags.map((t) => ({ asset: m.asset, tag: t.name, nodeId: simNodeId(m.asset, t.name) })),
        ),
      });
    }

    for (const { asset, machine, expose } of this.built.machines) {
      const serial = expose.serial;
      let pty: PtyPair | undefined;
      if (serial) {
        try {
          pty = await PtyPair.create();
        } catch (err) {
          if (!this.options.onSerialUnavailable) throw err;
          this.options.onSerialUnavailable(asset, err);
        }
      }
      if (serial && pty) {
        if (serial.format === 'modbus') {
          const registers = modbusRegisterMap(machine);
          const device = new SimModbusDevice({
            path: pty.devicePath,
            unitId: serial.unitId,
            machine,
            registers,
          });
          await device.start();
          this.serial.push({ asset, pty, device });
          this.endpoints.push({
            protocol: 'modbus-rtu',
            asset,
            hostPath: pty.hostPath,
            unitId: serial.unitId,
            registers,
          });
        } else {
          const device = new SimLineDevice({
            path: pty.devicePath,
            hostPath: pty.hostPath,
            machine,
            format: serial.format,
            rateHz: serial.rateHz,
          });
          await device.start();
          this.serial.push({ asset, pty, device });
          this.endpoints.push({
            protocol: 'serial-line',
            asset,
            format: serial.format,
            hostPath: pty.hostPath,
            columns: SimLineDevice.csvColumns(machine),
          });
        }
      }
      const mqtt = expose.mqtt;
      if (mqtt) {
        const url = this.options.mqttUrl;
        if (!url)
          throw new Error(
            `scenario ${scenario.file}: machine ${asset} is exposed over MQTT but no broker was given`,
          );
        if (mqtt.format === 'json') {
          const publisher = new SimJsonPublisher({
            url,
            machines: [machine],
            topicPrefix: JSON_TOPIC_PREFIX,
            rateHz: mqtt.rateHz,
          });
          await publisher.start();
          this.mqtt.push({ assets: [asset], publisher });
          this.endpoints.push({ protocol: 'mqtt-json', topicPrefix: JSON_TOPIC_PREFIX, assets: [asset] });
        } else {
          const edgeNodeId = `edge-${asset}`;
          const publisher = new SimSparkplugNode({
            url,
            groupId: SPARKPLUG_GROUP,
            edgeNodeId,
            machines: [machine],
            rateHz: mqtt.rateHz,
          });
          await publisher.start();
          this.mqtt.push({ assets: [asset], publisher });
          this.endpoints.push({
            protocol: 'sparkplug-b',
            groupId: SPARKPLUG_GROUP,
            edgeNodeId,
            assets: [asset],
          });
        }
      }
    }

    // Simulated time and the fault timeline start together, once everything listens.
    this.built.clock.start();
    this.timeline = runTimeline(scenario.timeline(), this.built.clock, (e) => this.onFault(e), {
      onError: (err, e) =>
        this.log(`fault ${e.kind} ${e.action} on ${e.assets.join(', ')} failed: ${String(err)}`),
    });
  }

  /**
   * Plays a protocol fault now rather than at a scenario time: for tests that must wait until a
   * client is connected before they take its server away.
   */
  async inject(e: Pick<ProtocolFaultEvent, 'action' | 'kind' | 'protocol' | 'assets'>): Promise<void> {
    await this.onFault({ ...e, atSeconds: this.built.clock.wallSeconds(), fault: -1 });
  }

  private async onFault(e: ProtocolFaultEvent): Promise<void> {
    const what = `${e.kind} ${e.action === 'down' ? 'begins' : 'ends'} (${e.assets.join(', ')})`;
    this.log(`fault: ${what}`);
    const hits = (assets: string[]) => assets.some((a) => e.assets.includes(a));
    if (e.protocol === 'opcua') {
      for (const o of this.opcua.filter((x) => hits(x.assets))) {
        if (e.action === 'down') await o.server.stop();
        else await o.server.start();
      }
    } else if (e.protocol === 'serial') {
      for (const s of this.serial.filter((x) => e.assets.includes(x.asset))) {
        if (e.action === 'down') await s.pty.unplug();
        else await s.pty.replug();
      }
    } else if (e.protocol === 'mqtt') {
      // The machine's gateway loses the broker: a Sparkplug node without a goodbye (the broker
      // publishes its NDEATH will), a JSON gateway simply goes quiet; both come back at `up`.
      for (const m of this.mqtt.filter((x) => hits(x.assets))) {
        if (e.action === 'up') await m.publisher.start();
        else if (m.publisher instanceof SimSparkplugNode) await m.publisher.dropConnection();
        else await m.publisher.stop();
      }
    }
  }

  /** Stops the timeline, then every device and server. Idempotent, never throws. */
  async stop(): Promise<void> {
    this.timeline?.stop();
    const quietly = async (what: string, p: Promise<unknown>) => {
      try {
        await p;
      } catch (err) {
        this.log(`stopping ${what} failed: ${String(err)}`);
      }
    };
    for (const m of this.mqtt.splice(0)) await quietly('an MQTT publisher', m.publisher.stop());
    for (const s of this.serial.splice(0)) {
      await quietly(`the serial device of ${s.asset}`, s.device.stop());
      await quietly(`the pty of ${s.asset}`, s.pty.stop());
    }
    for (const o of this.opcua.splice(0)) await quietly('an OPC-UA server', o.server.stop());
  }
}

/** Every tag as a float32 holding register pair, in the machine's tag order: exact and simple. */
export function modbusRegisterMap(machine: SimMachine): SimRegister[] {
  return machine.tags.map((t, i) => ({
    table: 'holding',
    address: i * 2,
    tag: t.name,
    type: 'float32',
    wordOrder: 'big',
  }));
}
