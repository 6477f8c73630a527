import { read } from 'node:fs';
import { promisify } from 'node:util';
import {
  autoDetect,
  type AutoDetectTypes,
  type LinuxBindingInterface,
  type LinuxOpenOptions,
} from '@serialport/bindings-cpp';
import { unixRead } from '@serialport/bindings-cpp/dist/unix-read.js';

const readAsync = promisify(read);

/**
 * The native serial binding for the simulated devices' ends. Like the adapter's own (the simulator
 * imports nothing from Vigil), it turns the 0-byte reads of a hung-up tty into a disconnect:
 * bindings-cpp 13 would otherwise spin on them for ever once the pair's cable is pulled.
 */
let binding: AutoDetectTypes | undefined;

export function deviceBinding(): AutoDetectTypes {
  if (binding) return binding;
  const unix = autoDetect() as LinuxBindingInterface;
  const patched: LinuxBindingInterface = {
    list: () => unix.list(),
    async open(options: LinuxOpenOptions) {
      const port = await unix.open(options);
      port.read = (buffer, offset, length) =>
        unixRead({ binding: port, buffer, offset, length, fsReadAsync: readOrHangUp as typeof readAsync });
      return port;
    },
  };
  return (binding = patched);
}

async function readOrHangUp(fd: number, buffer: Buffer, offset: number, length: number, position: null) {
  const result = await readAsync(fd, buffer, offset, length, position);
  if (result.bytesRead === 0) throw Object.assign(new Error('pty hung up'), { code: 'ENXIO' });
  return result;
}
