import net from 'node:net';

/**
 * A TCP relay between the forwarder and the broker that can stall (bytes are held, nothing is
 * answered, as with a broker frozen by SIGSTOP or a link that silently drops packets) or be cut.
 */
export interface Link {
  port: number;
  url: string;
  stall(): void;
  resume(): void;
  /** Bytes held back by the stall so far. */
  heldBytes(): number;
  /** Drops every connection (the broker keeps running). */
  cut(): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  server: net.Socket;
  held: { to: net.Socket; data: Buffer }[];
}

export async function startLink(targetPort: number): Promise<Link> {
  const pairs = new Set<Pair>();
  let stalled = false;
  const relay = (pair: Pair, from: net.Socket, to: net.Socket) => {
    from.on('data', (data: Buffer) => {
      if (stalled) pair.held.push({ to, data });
      else to.write(data);
    });
  };
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair: Pair = { client, server: upstream, held: [] };
    pairs.add(pair);
    relay(pair, client, upstream);
    relay(pair, upstream, client);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', drop);
      s.on('close', drop);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const cut = () => {
    for (const p of [...pairs]) {
      p.client.destroy();
      p.server.destroy();
    }
    pairs.clear();
  };
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    stall: () => {
      stalled = true;
    },
    resume: () => {
      stalled = false;
      for (const p of pairs) {
        for (const h of p.held.splice(0)) h.to.write(h.data);
      }
    },
    heldBytes: () => {
      let n = 0;
      for (const p of pairs) for (const h of p.held) n += h.data.length;
      return n;
    },
    cut,
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
