import { loadConfigFile } from '../config/load.js';
import { Daemon } from '../daemon.js';
import { ConfigError, VigilError, errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { SystemdNotifier } from '../ops/sd-notify.js';

/** `vigil run --config FILE`: the daemon, until SIGTERM or SIGINT. */
export async function runCommand(file: string): Promise<void> {
  let loaded;
  try {
    loaded = await loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
    console.error(
      err instanceof ConfigError ? `${file}: invalid configuration, not starting` : errorMessage(err),
    );
    process.exit(2);
  }
  const log = createLogger({ level: loaded.config.log.level });
  // A stray rejection in some listener is a bug to log, not a reason to stop inspecting parts.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: errorMessage(reason) }, `unhandled promise rejection: ${errorMessage(reason)}`);
  });
  // After an uncaught exception the process state is unknown: log, and exit for the supervisor
  // (systemd) to restart us; the store is consistent because every write is a transaction.
  process.on('uncaughtException', (err) => {
    log.fatal({ err: errorMessage(err), stack: err.stack }, `uncaught exception: ${errorMessage(err)}`);
    log.flush();
    process.exit(1);
  });
  // Under systemd (Type=notify, WatchdogSec): ready once started, then a watchdog ping that only
  // a turning event loop sends; a no-op anywhere else.
  const notifier = new SystemdNotifier({ log: log.child({ component: 'systemd' }) });
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(loaded, log);
    notifier.ready(`${Object.keys(loaded.config.pipelines).length} pipelines running`);
  } catch (err) {
    log.fatal(
      { code: err instanceof VigilError ? err.code : undefined, err: errorMessage(err) },
      errorMessage(err),
    );
    log.flush();
    console.error(`vigil could not start: ${errorMessage(err)}`);
    process.exit(1);
  }
  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'stopping');
    notifier.stopping();
    // The daemon bounds each step; this is the backstop should one of them not return at all.
    // Everything accepted is already committed, so exiting here loses nothing stored.
    const bound = loaded.config.shutdown.timeoutSeconds * 1000;
    setTimeout(() => {
      log.error(
        { signal, timeoutSeconds: loaded.config.shutdown.timeoutSeconds },
        'shutdown did not finish in time; exiting now',
      );
      log.flush();
      process.exit(1);
    }, bound + 1_000).unref();
    daemon.stop().then(
      async () => {
        await notifier.close();
        log.flush();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
