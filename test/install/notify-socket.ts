import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * A stand-in for systemd's end of the notification protocol: a unix datagram socket (NOTIFY_SOCKET)
 * whose receiver, a small Python program since Node.js has no unix datagram sockets, records
 * every message with its arrival time.
 */

export interface Datagram {
  /** Wall-clock ms when the receiver read it. */
  at: number;
  fields: string[];
}

const RECEIVER = `
import json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)  # an unprivileged daemon (the vigil user) must be able to send
print(json.dumps({"listening": True}), flush=True)
while True:
    data = s.recv(4096)
    print(json.dumps({"at": time.time() * 1000, "fields": data.decode().strip().split("\\n")}), flush=True)
`;

export class NotifySocket {
  readonly datagrams: Datagram[] = [];
  private constructor(
    readonly path: string,
    private readonly proc: ChildProcess,
  ) {}

  /** Binds a receiver at `socketPath` (which must not exist) and waits until it listens. */
  static async start(socketPath: string): Promise<NotifySocket> {
    const proc = spawn('python3', ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const receiver = new NotifySocket(socketPath, proc);
    await new Promise<void>((resolve, reject) => {
      proc.once('error', (err) => reject(new Error(`python3 is needed for this test: ${err.message}`)));
      proc.once('exit', (code) =>
        reject(new Error(`the notify socket receiver exited (${code}): ${stderr}`)),
      );
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as { listening?: boolean } & Datagram;
        if (msg.listening) resolve();
        else receiver.datagrams.push({ at: msg.at, fields: msg.fields });
      });
    });
    return receiver;
  }

  /** The datagrams that carry `field` (e.g. `READY=1`). */
  with(field: string): Datagram[] {
    return this.datagrams.filter((d) => d.fields.includes(field));
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGKILL');
    await exited;
  }
}
