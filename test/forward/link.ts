import net from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * A TCP relay between the forwarder and the broker that can stall (bytes are held, nothing is
 * answered, as with a broker frozen by SIGSTOP or a link that silently drops packets), be cut,
 * or carry only so many bytes per second each way (a slow cellular or radio link with a deep
 * modem buffer).
 */
export interface Link {
  port: number;
  url: string;
  stall(): void;
  resume(): void;
  /** Bytes held back (by a stall, or waiting for the throttled link) so far. */
  heldBytes(): number;
  /** Drops every connection (the broker keeps running). */
  cut(): void;
  close(): Promise<void>;
}

export interface LinkOptions {
  /** Bytes per second each way; unlimited when absent. */
  bytesPerSecond?: number;
}

/** One direction of one connection: what it received and has not passed on yet. */
interface Lane {
  from: net.Socket;
  to: net.Socket;
  queue: Buffer[];
  bytes: number;
  /** Bytes the throttle allows to pass now. */
  credit: number;
}

interface Pair {
  client: net.Socket;
  server: net.Socket;
  lanes: Lane[];
}

/** Throttled bytes move in steps this often. */
const STEP_MS = 10;
/** The most the link passes at once after being idle. */
const BURST_MS = 50;
/** A modem buffer: beyond this the sender is paused (TCP back-pressure) rather than queued. */
const BUFFER_BYTES = 256 * 1024;

export async function startLink(targetPort: number, options: LinkOptions = {}): Promise<Link> {
  const rate = options.bytesPerSecond;
  const pairs = new Set<Pair>();
  let stalled = false;

  const pass = (lane: Lane, budget: number): void => {
    while (lane.queue.length > 0 && budget > 0) {
      const head = lane.queue[0]!;
      const n = Math.min(head.length, budget);
      lane.to.write(n === head.length ? head : head.subarray(0, n));
      if (n === head.length) lane.queue.shift();
      else lane.queue[0] = head.subarray(n);
      lane.bytes -= n;
      budget -= n;
      if (rate !== undefined) lane.credit -= n;
    }
    if (lane.bytes < BUFFER_BYTES && lane.from.isPaused()) lane.from.resume();
  };
  const laneOf = (from: net.Socket, to: net.Socket): Lane => {
    const lane: Lane = { from, to, queue: [], bytes: 0, credit: 0 };
    from.on('data', (data: Buffer) => {
      lane.queue.push(data);
      lane.bytes += data.length;
      if (lane.bytes >= BUFFER_BYTES) from.pause();
      if (!stalled && rate === undefined) pass(lane, Infinity);
    });
    return lane;
  };

  let last = performance.now();
  const stepper =
    rate === undefined
      ? undefined
      : setInterval(() => {
          const now = performance.now();
          const earned = ((now - last) / 1000) * rate;
          last = now;
          if (stalled) return;
          for (const p of pairs) {
            for (const lane of p.lanes) {
              // Little saving up while idle (a burst would not be a slow link), but enough that a
              // late timer on a busy machine does not slow the link down.
              lane.credit = Math.min(lane.credit + earned, Math.max(1, (rate * BURST_MS) / 1000));
              pass(lane, Math.floor(lane.credit));
            }
          }
        }, STEP_MS);

  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair: Pair = {
      client,
      server: upstream,
      lanes: [laneOf(client, upstream), laneOf(upstream, client)],
    };
    pairs.add(pair);
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
      if (rate !== undefined) return;
      for (const p of pairs) for (const lane of p.lanes) pass(lane, Infinity);
    },
    heldBytes: () => {
      let n = 0;
      for (const p of pairs) for (const lane of p.lanes) n += lane.bytes;
      return n;
    },
    cut,
    close: async () => {
      clearInterval(stepper);
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
