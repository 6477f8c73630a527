import net from 'node:net';

/**
 * A TCP relay between a client under test and its broker that a test can cut and restore, as a
 * network outage would: cut() drops every open connection and refuses new ones (accepted, then
 * dropped at once) while the port stays ours, so the client keeps retrying at the same address.
 */
export interface TcpLink {
  port: number;
  url: string;
  /** Connections accepted and relayed so far. */
  readonly relayed: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpLink(targetPort: number): Promise<TcpLink> {
  const sockets = new Set<net.Socket>();
  let open = true;
  let relayed = 0;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (!open) {
      client.destroy();
      return;
    }
    relayed += 1;
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    get relayed() {
      return relayed;
    },
    cut() {
      open = false;
      dropAll();
    },
    restore() {
      open = true;
    },
    async close() {
      open = false;
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
