import type { Logger } from '../log.js';

/**
 * Vigil needs no privileges: its ports are above 1024, serial ports come through the dialout
 * group and its files through its own user. Running it as root turns any bug in a parser of
 * frames, payloads or model files into a bug with root's reach, so it says so once at start.
 * Returns whether it warned.
 */
export function warnIfRoot(log: Logger, uid: number | undefined = process.getuid?.()): boolean {
  if (uid !== 0) return false;
  log.warn(
    { uid },
    'running as root (uid 0): Vigil needs no privileges; run it as an unprivileged user such as vigil, as the packaged systemd unit and container image do (docs/SECURITY.md)',
  );
  return true;
}
