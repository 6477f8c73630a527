import net from 'node:net';
import { Aedes } from 'aedes';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * An in-process MQTT broker (aedes) for `vigil simulate` / `npm start`, so that the demo needs no
 * broker installed and anyone can watch alerts with `mosquitto_sub -h 127.0.0.1 -p <port> -t 'vigil/#'`.
 * Not for production: retained messages and sessions live in memory only.
 */

export interface EmbeddedBrokerOptions {
  host: string;
  /** Preferred port; when it is taken the broker takes a free one and says so. */
  port: number;
  log: Logger;
  /** Upper bound on close(). */
  closeTimeoutMs?: number;
}

export interface EmbeddedBroker {
  host: string;
  port: number;
  url: string;
  close(): Promise<void>;
}

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { host, log } = options;
  const closeTimeoutMs = options.closeTimeoutMs ?? 3_000;
  const aedes = await Aedes.createBroker();
  aedes.on('clientError', (client, err) =>
    log.debug({ clientId: client.id, err: err.message }, 'embedded broker client error'),
  );
  const server = net.createServer(aedes.handle);
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  let port: number;
  try {
    port = await listen(server, host, options.port);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || options.port === 0) {
      aedes.close();
      throw err;
    }
    port = await listen(server, host, 0);
    log.warn(
      { requestedPort: options.port, port, host },
      `port ${options.port} on ${host} is already in use (another MQTT broker?); the embedded broker listens on ${host}:${port} instead`,
    );
  }
  const url = `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info({ url }, 'embedded MQTT broker listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve();
      };
      // Connections that do not go away in time are cut, so shutdown never hangs on a client.
      const timer = setTimeout(() => {
        log.warn({ url }, 'embedded broker did not close in time; dropping its connections');
        for (const socket of sockets) socket.destroy();
        finish();
      }, closeTimeoutMs);
      aedes.close(() => {
        server.close((err) => {
          if (err) log.debug({ err: errorMessage(err) }, 'embedded broker server close');
          finish();
        });
      });
    });
    return closing;
  };

  return { host, port, url, close };
}
