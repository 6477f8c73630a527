import net from 'node:net';

/** Whether a TCP port can be bound on host right now. */
export function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A free port chosen by the OS. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ host, port: 0 }, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The preferred port when free, else a free one; `moved` says which happened. */
export async function preferredOrFreePort(
  host: string,
  preferred: number,
): Promise<{ port: number; moved: boolean }> {
  if (preferred !== 0 && (await portIsFree(host, preferred))) return { port: preferred, moved: false };
  return { port: await freePort(host), moved: preferred !== 0 };
}
