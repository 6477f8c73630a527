export { PtyPair } from './pty-pair.js';
export { SimLineDevice, type SimLineDeviceOptions } from './line-device.js';
export { SimModbusDevice, type SimModbusDeviceOptions, type SimRegister } from './modbus-device.js';
