import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, VigilError, type Issue } from '../errors.js';
import { zodIssues } from '../validation.js';
import { VigilConfig, referenceIssues } from './schema.js';

export interface LoadedConfig {
  config: VigilConfig;
  /** Absolute path of the file, or '(embedded)'. */
  file: string;
  /** Folder that relative paths in the config are resolved against. */
  baseDir: string;
}

/** Validates a parsed config object; throws ConfigError listing every problem as `path: message`. */
export function parseConfig(raw: unknown, file: string, baseDir: string): LoadedConfig {
  const parsed = VigilConfig.safeParse(raw ?? {});
  const issues = [...(parsed.success ? [] : zodIssues(parsed.error)), ...referenceIssues(raw)];
  if (!parsed.success || issues.length > 0) throw new ConfigError(file, issues);
  return { config: Object.freeze(parsed.data) as VigilConfig, file, baseDir };
}

/** Reads and validates a YAML config file. YAML syntax errors are reported with line and column. */
export async function loadConfigFile(file: string): Promise<LoadedConfig> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VigilError(
      'VIGIL_ERR_CONFIG_READ',
      code === 'ENOENT'
        ? `config file ${abs} does not exist`
        : `cannot read config file ${abs}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const issues: Issue[] = doc.errors.map((e) => ({
      path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(yaml)',
      message: e.message.split('\n')[0] ?? e.message,
    }));
    throw new ConfigError(abs, issues);
  }
  return parseConfig(doc.toJS(), abs, path.dirname(abs));
}

/** The folder that relative `vigil-data/...` paths (the data defaults) name. */
export const DATA_PREFIX = 'vigil-data';

/**
 * Resolves a path from the config against the config file's folder, except `vigil-data/...`
 * (the defaults of the store, the model store and the OPC-UA PKI) under systemd: there the config
 * lives in read-only /etc/vigil, and they go to the unit's state directory instead
 * ($STATE_DIRECTORY, /var/lib/vigil with StateDirectory=vigil).
 */
export function resolvePath(loaded: LoadedConfig, p: string): string {
  if (path.isAbsolute(p)) return p;
  const state = process.env.STATE_DIRECTORY?.split(':')[0];
  const parts = path.normalize(p).split(path.sep);
  if (state && parts[0] === DATA_PREFIX) return path.join(state, ...parts.slice(1));
  return path.resolve(loaded.baseDir, p);
}
