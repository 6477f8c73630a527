import { readFileSync } from 'node:fs';
import path from 'node:path';
import { VigilError, type Issue } from '../errors.js';

/**
 * Passwords and tokens from the config, a file or the environment. Every secret of the config can
 * be written literally (allowed, but `vigil config check` warns), read from a file (`...File`:
 * the way systemd credentials, Docker secrets and Kubernetes mount them) or taken from an
 * environment variable. Read once at start: a rotated secret needs a restart.
 */

export type Env = Record<string, string | undefined>;

export interface SecretSpec {
  /** Dotted config path of the literal value, e.g. `mqtt.password`; the file variant is `<key>File`. */
  key: string;
  /** The literal value from the config. */
  value?: string | undefined;
  /** The `...File` setting as written in the config. */
  file?: string | undefined;
  /** Name of the environment variable consulted when neither value nor file is set. */
  envName?: string | undefined;
}

export interface SecretOptions {
  env?: Env | undefined;
  /** Resolves a relative file against the config file's folder; default: against the working directory. */
  resolvePath?: ((file: string) => string) | undefined;
}

/**
 * The secret: the literal value, else the file's content (surrounding white space, such as the
 * newline an editor adds, trimmed), else the environment variable; undefined when none is set.
 * A file that is set but missing, unreadable or empty is an error naming the setting and the
 * file: falling back to no password would only move the failure to a refused login later.
 */
export function readSecret(spec: SecretSpec, options: SecretOptions = {}): string | undefined {
  if (spec.value !== undefined) return spec.value;
  if (spec.file !== undefined) return readSecretFile(`${spec.key}File`, spec.file, options.resolvePath);
  if (spec.envName === undefined) return undefined;
  const fromEnv = (options.env ?? process.env)[spec.envName];
  return fromEnv === '' ? undefined : fromEnv;
}

/** Reads one secret file; `key` is the config setting that names it, for the message. */
export function readSecretFile(key: string, file: string, resolvePath?: (file: string) => string): string {
  const resolved = resolvePath ? resolvePath(file) : path.resolve(file);
  let text: string;
  try {
    text = readFileSync(resolved, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'the file does not exist: create it with the secret on one line, or correct the path'
        : code === 'EACCES' || code === 'EPERM'
          ? `permission denied for ${userName()}: make it readable by that user only (for the packaged service: chown root:vigil, chmod 0640)`
          : code === 'EISDIR'
            ? 'it is a folder, not a file'
            : `${code ?? 'error'}: ${(err as Error).message}`;
    throw new VigilError('VIGIL_ERR_CONFIG_READ', `${key}: cannot read the secret file ${resolved}: ${why}`, {
      cause: err,
      detail: { key, file: resolved },
    });
  }
  const secret = text.trim();
  if (secret === '') {
    throw new VigilError(
      'VIGIL_ERR_CONFIG_READ',
      `${key}: the secret file ${resolved} is empty; write the secret into it (one line)`,
      { detail: { key, file: resolved } },
    );
  }
  return secret;
}

function userName(): string {
  const uid = process.getuid?.();
  const name = process.env.USER ?? process.env.LOGNAME;
  return uid === undefined ? 'this user' : `uid ${uid}${name ? ` (${name})` : ''}`;
}

type Loose = Record<string, unknown>;
const isObject = (v: unknown): v is Loose => typeof v === 'object' && v !== null && !Array.isArray(v);

function urlHasPassword(url: unknown): boolean {
  if (typeof url !== 'string') return false;
  try {
    return new URL(url).password !== '';
  } catch {
    return /^[a-z]+:\/\/[^/@\s]*:[^/@\s]*@/i.test(url);
  }
}

/**
 * Secrets written in plain text in a config (a literal password, or one inside a URL), as
 * `path: message` warnings for `vigil config check`. Works on the raw or the parsed config.
 */
export function plainTextSecrets(config: unknown): Issue[] {
  const found: Issue[] = [];
  if (!isObject(config)) return found;
  const literal = (where: string, section: unknown, field = 'password') => {
    if (isObject(section) && typeof section[field] === 'string') {
      found.push({
        path: `${where}.${field}`,
        message: `the ${field} is written in plain text in the config; move it into a file readable only by the vigil user and set ${where}.${field}File instead (or use the environment variable)`,
      });
    }
  };
  const inUrl = (where: string, section: unknown) => {
    if (isObject(section) && urlHasPassword(section.url)) {
      found.push({
        path: `${where}.url`,
        message:
          'the URL carries a password (user:password@host) in plain text; put the user in username and the password in a file (passwordFile)',
      });
    }
  };
  literal('mqtt', config.mqtt);
  inUrl('mqtt', config.mqtt);
  literal('upstream', config.upstream);
  inUrl('upstream', config.upstream);
  inUrl('registry', config.registry);
  if (isObject(config.sources)) {
    for (const [name, source] of Object.entries(config.sources)) {
      literal(`sources.${name}`, source);
      inUrl(`sources.${name}`, source);
      if (isObject(source)) literal(`sources.${name}.auth`, source.auth);
    }
  }
  return found;
}
