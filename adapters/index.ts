import { VigilError } from '../runtime/errors.js';
import type { SourceConfig } from '../runtime/config/schema.js';
import type { Source, SourceContext } from '../runtime/pipeline/source.js';
import { FolderCameraSource } from './camera/folder.js';
import { HttpCameraSource } from './camera/http.js';
import { MqttJsonSource } from './mqtt/json-source.js';
import { SparkplugSource } from './mqtt/sparkplug-source.js';
import { ModbusRtuPoller, SerialLineReader } from './serial/index.js';

export { FolderCameraSource, type CameraFolderConfig, type FolderCameraOptions } from './camera/folder.js';
export { HttpCameraSource, type CameraHttpConfig } from './camera/http.js';

/**
 * Builds the adapter for one configured source (`sources.<name>`), chosen by its `type`. The
 * config must already have been parsed by the schema, so that defaults are filled in.
 */
export async function createSource(name: string, cfg: SourceConfig, ctx: SourceContext): Promise<Source> {
  switch (cfg.type) {
    case 'camera-folder':
      return new FolderCameraSource(name, cfg, ctx);
    case 'camera-http':
      return new HttpCameraSource(name, cfg, ctx);
    case 'mqtt-json':
      return new MqttJsonSource(name, cfg, ctx);
    case 'sparkplug-b':
      return new SparkplugSource(name, cfg, ctx);
    case 'serial-line':
      return new SerialLineReader(name, cfg, ctx);
    case 'modbus-rtu':
      return new ModbusRtuPoller(name, cfg, ctx);
    case 'opcua': {
      // node-opcua is large and starts generating an RSA key as it loads: only configs with an
      // OPC-UA source pay for it.
      const { OpcUaSource } = await import('./opcua/source.js');
      return new OpcUaSource(name, cfg, ctx);
    }
    default: {
      // A new type in the schema must get an adapter here; the compiler says so.
      const unknown: never = cfg;
      throw new VigilError(
        'VIGIL_ERR_CONFIG_INVALID',
        `sources.${name}: no adapter for type '${(unknown as { type: string }).type}' in this build of Vigil`,
      );
    }
  }
}
