import net from 'node:net';

/**
 * A TCP relay between a client under test and its broker that a test can cut and restore, as a
 * network outage would: cut() drops every open connection and refuses new ones (accepted, then
 * dropped at once) while the port stays ours, so the client keeps retrying at the same address.
 */
/** An MQTT control packet the client sent towards the broker, as the link relayed it. */
export interface ClientPacket {
  /** 1 CONNECT, 3 PUBLISH, 4 PUBACK, 8 SUBSCRIBE, 12 PINGREQ, 14 DISCONNECT, ... */
  type: number;
  /** The packet id of a PUBACK. */
  messageId?: number;
  /** Which relayed connection carried it, counting from 1. */
  connection: number;
}

export const PUBACK = 4;

export interface TcpLink {
  port: number;
  url: string;
  /** Connections accepted and relayed so far. */
  readonly relayed: number;
  /** What the client sent to the broker, packet by packet: how a test sees when a PUBACK goes out. */
  readonly clientPackets: readonly ClientPacket[];
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpLink(targetPort: number): Promise<TcpLink> {
  const sockets = new Set<net.Socket>();
  let open = true;
  let relayed = 0;
  const clientPackets: ClientPacket[] = [];
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
    client.on(
      'data',
      packetReader(relayed, (p) => clientPackets.push(p)),
    );
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
    clientPackets,
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

/** Splits a byte stream into MQTT control packets (fixed header, variable-length remaining length). */
function packetReader(connection: number, onPacket: (p: ClientPacket) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      let length = 0;
      let i = 1;
      for (let shift = 0; ; shift += 7, i++) {
        if (i >= buf.length) return;
        length += (buf[i]! & 0x7f) << shift;
        if ((buf[i]! & 0x80) === 0) break;
      }
      const end = i + 1 + length;
      if (buf.length < end) return;
      const type = buf[0]! >> 4;
      onPacket(
        type === PUBACK ? { type, messageId: buf.readUInt16BE(i + 1), connection } : { type, connection },
      );
      buf = buf.subarray(end);
    }
  };
}
