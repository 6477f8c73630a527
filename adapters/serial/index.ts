export { SerialLineReader, GARBAGE_RUN_HINT, type SerialLineConfig } from './line-source.js';
export { ModbusRtuPoller, SILENT_POLLS_DOWN, type ModbusRtuConfig } from './modbus-source.js';
