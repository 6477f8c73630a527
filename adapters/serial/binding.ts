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
 * On Linux a tty whose device went away (USB-serial adapter unplugged, pty master closed) is
 * hung up, and read() on it returns 0 bytes for ever. bindings-cpp 13 takes a 0-byte read as
 * "try again" and loops on it at full speed without ever reporting the disconnect, so the port
 * looks open while nothing arrives. The port is non-blocking with VMIN=1, where "no data yet"
 * is EAGAIN, so 0 bytes can only mean end of file: report it as the disconnect it is.
 */
async function readOrHangUp(
  fd: number,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number | null,
): Promise<{ bytesRead: number; buffer: Buffer }> {
  const result = await readAsync(fd, buffer, offset, length, position);
  if (result.bytesRead === 0) {
    throw Object.assign(new Error('the serial device hung up (unplugged?)'), { code: 'ENXIO' });
  }
  return result;
}

let binding: AutoDetectTypes | undefined;

/** The platform's native binding, with Unix reads that notice a hang-up. */
export function serialBinding(): AutoDetectTypes {
  if (binding) return binding;
  const base = autoDetect();
  if (process.platform === 'win32') return (binding = base);
  // Darwin's binding has the same shape and reads through the same unixRead.
  const unix = base as LinuxBindingInterface;
  const patched: LinuxBindingInterface = {
    list: () => unix.list(),
    async open(options: LinuxOpenOptions) {
      const port = await unix.open(options);
      port.read = (buffer, offset, length) =>
        unixRead({ binding: port, buffer, offset, length, fsReadAsync: readOrHangUp as typeof readAsync });
      return port;
    },
  };
  binding = patched;
  return binding;
}
