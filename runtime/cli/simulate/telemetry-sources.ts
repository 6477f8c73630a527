import type { PlantEndpoint } from '../../../simulator/plant/plant.js';

/**
 * Turns where the simulated plant's machines can be reached into Vigil source configs, the same
 * YAML shape an integrator writes for a real plant (deploy/config/telemetry.example.yaml).
 */
export function plantSources(
  endpoints: readonly PlantEndpoint[],
  opts: { mqttUrl: string; pkiFolder: string },
): Record<string, Record<string, unknown>> {
  return plantWiring(endpoints, opts).sources;
}

/** The sources, and which source reads each asset (for the maintenance pipelines). */
export function plantWiring(
  endpoints: readonly PlantEndpoint[],
  opts: { mqttUrl: string; pkiFolder: string },
): { sources: Record<string, Record<string, unknown>>; assetSource: Record<string, string> } {
  const sources: Record<string, Record<string, unknown>> = {};
  const assetSource: Record<string, string> = {};
  const read = (source: string, assets: readonly string[]) => {
    for (const a of assets) assetSource[a] = source;
  };
  endpoints.forEach((e, i) => {
    switch (e.protocol) {
      case 'opcua':
        read(i === 0 ? 'opcua' : `opcua-${i}`, [...new Set(e.nodes.map((n) => n.asset))]);
        sources[i === 0 ? 'opcua' : `opcua-${i}`] = {
          type: 'opcua',
          endpoint: e.endpointUrl,
          pkiFolder: opts.pkiFolder,
          subscription: { publishingIntervalMs: 500 },
          items: e.nodes.map((n) => ({
            nodeId: n.nodeId,
            asset: n.asset,
            tag: n.tag,
            samplingIntervalMs: 500,
          })),
        };
        break;
      case 'serial-line':
        read(`serial-${e.asset}`, [e.asset]);
        sources[`serial-${e.asset}`] = {
          type: 'serial-line',
          path: e.hostPath,
          baudRate: 9600,
          format: e.format === 'csv' ? { type: 'csv', columns: e.columns } : { type: 'kv' },
        };
        break;
      case 'modbus-rtu':
        read(`modbus-${e.asset}`, [e.asset]);
        sources[`modbus-${e.asset}`] = {
          type: 'modbus-rtu',
          path: e.hostPath,
          baudRate: 9600,
          asset: e.asset,
          unitId: e.unitId,
          pollIntervalMs: 500,
          registers: e.registers.map((r) => ({
            tag: r.tag,
            table: r.table,
            address: r.address,
            type: r.type,
            wordOrder: r.wordOrder ?? 'big',
            // The device stores raw = (value - offset) / scale; Vigil reads raw * scale + offset.
            scale: r.scale ?? 1,
            offset: r.offset ?? 0,
          })),
        };
        break;
      case 'mqtt-json':
        read('mqtt-json', e.assets);
        sources['mqtt-json'] ??= {
          type: 'mqtt-json',
          url: opts.mqttUrl,
          subscriptions: [
            {
              topic: `${e.topicPrefix}/+/telemetry`,
              asset: '{1}',
              allNumericFields: true,
              timestampField: 'ts',
            },
          ],
        };
        break;
      case 'sparkplug-b':
        read('sparkplug', e.assets);
        sources['sparkplug'] ??= { type: 'sparkplug-b', url: opts.mqttUrl, groupId: e.groupId };
        break;
    }
  });
  return { sources, assetSource };
}
