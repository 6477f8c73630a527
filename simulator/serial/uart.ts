import { execFile } from 'node:child_process';

/**
 * An EMULATION of what a real UART receives when the two ends of a serial line disagree about
 * the line settings. A pseudo-terminal passes bytes through whatever baud rate either side sets,
 * so a test of "the integrator typed the wrong baud rate" needs the simulated device to do what
 * the wire would have done: serialise its bytes into bits at its own rate and framing, and
 * sample those bits the way a receiver at the host's rate would.
 */

export interface UartFraming {
  baudRate: number;
  dataBits: 7 | 8;
  parity: 'none' | 'even' | 'odd';
  stopBits: 1 | 2;
}

/** The line level of each bit time, idle (1) included neither before nor after. */
export function uartBits(bytes: Uint8Array, f: UartFraming): Uint8Array {
  const perChar = 1 + f.dataBits + (f.parity === 'none' ? 0 : 1) + f.stopBits;
  const bits = new Uint8Array(bytes.length * perChar);
  let n = 0;
  for (const byte of bytes) {
    bits[n++] = 0; // start bit
    let ones = 0;
    for (let i = 0; i < f.dataBits; i++) {
      const b = (byte >> i) & 1; // least significant bit first
      ones += b;
      bits[n++] = b;
    }
    if (f.parity !== 'none') bits[n++] = f.parity === 'even' ? ones & 1 : (ones + 1) & 1;
    for (let i = 0; i < f.stopBits; i++) bits[n++] = 1;
  }
  return bits;
}

/**
 * The bytes a receiver with framing `rx` takes from the bits a transmitter with framing `tx`
 * sends. Like a 16550-style UART it waits for the line to go low, checks the middle of the
 * start bit, samples each data bit in its middle at its own rate, and checks the stop bit.
 * Characters with a framing error (stop bit low) are dropped, as Linux does with IGNPAR, which
 * the serialport bindings set; parity is not checked (they leave INPCK off). When the settings
 * match, the output is the input.
 */
export function uartReceive(bytes: Uint8Array, tx: UartFraming, rx: UartFraming): Buffer {
  const bits = uartBits(bytes, tx);
  const n = bits.length;
  const level = (t: number): number => (t < n ? bits[Math.floor(t)]! : 1);
  const h = tx.baudRate / rx.baudRate; // one receiver bit, in transmitter bit times
  const parityBits = rx.parity === 'none' ? 0 : 1;
  const out: number[] = [];
  let t = 0;
  while (t < n) {
    if (level(t) === 1) {
      // Idle or a high data bit: the next start can only be at the next low bit.
      let k = Math.floor(t) + 1;
      while (k < n && bits[k] === 1) k++;
      if (k >= n) break;
      t = k;
    }
    if (level(t + h / 2) !== 0) {
      t += h / 2; // a glitch shorter than half a bit is not a start bit
      continue;
    }
    let byte = 0;
    for (let i = 0; i < rx.dataBits; i++) if (level(t + (1.5 + i) * h) === 1) byte |= 1 << i;
    const stopAt = t + (1.5 + rx.dataBits + parityBits) * h;
    if (level(stopAt) === 1) out.push(byte);
    // The receiver looks for the next start bit from the middle of the stop bit on.
    t = stopAt;
  }
  return Buffer.from(out);
}

/** The line settings a pty end currently has, as far as a pty keeps them. */
export interface PtySettings {
  baudRate: number;
  stopBits: 1 | 2;
  /**
   * Whether a serial program has set the line up: they all set CLOCAL (ignore modem lines), which
   * a fresh pty lacks. Until then its speed is the kernel's default, not anybody's choice.
   */
  configured: boolean;
}

/** Parses `stty -a` output; undefined when it has no speed (not a tty). */
export function parseStty(output: string): PtySettings | undefined {
  const speed = /speed (\d+) baud/.exec(output);
  if (!speed) return undefined;
  const flag = (name: string) => new RegExp(`(?:^|\\s)${name}(?:\\s|$)`, 'm').test(output);
  return { baudRate: Number(speed[1]), stopBits: flag('cstopb') ? 2 : 1, configured: flag('clocal') };
}

/**
 * Reads the settings the host applied to its end of the pair (`stty -F`, which works while the
 * host holds the port: bindings-cpp locks with flock(), not TIOCEXCL). The Linux pty driver
 * forces 8 data bits and no parity on every pty, so only the speed and the stop bits can be
 * seen; data bits and parity are not part of this emulation.
 */
export function readPtySettings(ptyPath: string): Promise<PtySettings | undefined> {
  return new Promise((resolve) => {
    execFile('stty', ['-F', ptyPath, '-a'], { timeout: 2000 }, (err, stdout) =>
      resolve(err ? undefined : parseStty(stdout)),
    );
  });
}
