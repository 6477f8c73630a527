import path from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import { loadConfigFile, resolvePath, type LoadedConfig } from '../config/load.js';
import { readSecretFile } from '../config/secrets.js';
import { ConfigError, errorMessage } from '../errors.js';
import { createLogger, silentLogger } from '../log.js';
import { loadPublicKeys } from '../model/signature.js';
import { ModelStore } from '../modelstore/store.js';
import { verifyPackage } from '../modelstore/verify.js';
import { TOKEN_ENV, isLoopback } from '../ops/auth.js';
import { MlflowRegistryClient } from '../registry/mlflow.js';
import { storeOwner } from '../rollout/ota.js';

/**
 * `vigil models pull | promote | rollback | status`: the rollout from a terminal. promote and
 * rollback ask the running daemon (it owns the engines); pull asks the running daemon to check the
 * registry now, or, when none runs, downloads, verifies and installs the version itself, with a
 * progress bar, so that the daemon tries it at its next start; status reads the daemon, else the
 * model store on disk.
 */

export interface ModelsCommandOptions {
  config: string;
  url?: string;
  json?: boolean;
  /** pull: clear a refusal of the version and try it again. */
  retry?: boolean;
  /** File holding the ops token (--token-file); else the config's http.tokenFile, else $VIGIL_HTTP_TOKEN. */
  tokenFile?: string;
}

type Say = (line: string) => void;
const say: Say = (l) => console.log(l);

async function load(file: string): Promise<LoadedConfig | undefined> {
  try {
    return await loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
    console.error(`${file}: ${errorMessage(err)}`);
    return undefined;
  }
}

function daemonUrl(loaded: LoadedConfig, url?: string): string {
  if (url) return url.replace(/\/$/, '');
  const { host, port } = loaded.config.http;
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

/**
 * The ops token the daemon wants on promote, rollback and check: --token-file, else the file
 * named by the config's http.tokenFile, else $VIGIL_HTTP_TOKEN (the daemon's own order, so that
 * both pick the same one when both are set); undefined when none is
 * set (the daemon then answers with what to do). Prints the problem and returns null when a named
 * file cannot be read.
 */
function opsToken(loaded: LoadedConfig, opts: ModelsCommandOptions): string | undefined | null {
  try {
    if (opts.tokenFile !== undefined) return readSecretFile('--token-file', opts.tokenFile);
    const file = loaded.config.http.tokenFile;
    if (file !== undefined) return readSecretFile('http.tokenFile', file, (f) => resolvePath(loaded, f));
    return process.env[TOKEN_ENV] || undefined;
  } catch (err) {
    console.error(errorMessage(err));
    return null;
  }
}

async function ask(
  url: string,
  method: 'GET' | 'POST',
  route: string,
  token?: string,
): Promise<{ status: number; body: unknown } | undefined> {
  try {
    const u = new URL(url);
    if (token !== undefined && method === 'POST' && u.protocol === 'http:' && !isLoopback(u.hostname))
      console.error(
        `warning: the ops token goes to ${u.host} over plain HTTP, readable by anyone on the way`,
      );
    const res = await fetch(`${url}${route}`, {
      method,
      signal: AbortSignal.timeout(60_000),
      ...(token !== undefined && method === 'POST' ? { headers: { authorization: `Bearer ${token}` } } : {}),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  } catch {
    return undefined;
  }
}

/** Models of the config that follow the registry: the one named, or all. */
function followed(loaded: LoadedConfig, model?: string): string[] | undefined {
  const names = Object.entries(loaded.config.models)
    .filter(([, mc]) => mc.registry)
    .map(([n]) => n);
  if (model === undefined) return names;
  if (!names.includes(model)) {
    console.error(
      `model '${model}' does not follow the registry in this config (models with a registry: setting: ${names.join(', ') || 'none'})`,
    );
    return undefined;
  }
  return [model];
}

/** promote | rollback: the running daemon does it; exit 0 when it did. */
export async function modelsActionCommand(
  action: 'promote' | 'rollback',
  model: string,
  opts: ModelsCommandOptions,
): Promise<number> {
  const loaded = await load(opts.config);
  if (!loaded) return 2;
  if (!followed(loaded, model)) return 2;
  const url = daemonUrl(loaded, opts.url);
  const token = opsToken(loaded, opts);
  if (token === null) return 2;
  const answer = await ask(url, 'POST', `/api/v1/models/${encodeURIComponent(model)}/${action}`, token);
  if (!answer) {
    console.error(
      `no Vigil daemon answers at ${url}: ${action} needs the running daemon (it owns the engines).`,
    );
    return 1;
  }
  const body = answer.body as { message?: string; error?: string };
  if (opts.json) say(JSON.stringify(answer.body, null, 2));
  else say(body.message ?? body.error ?? JSON.stringify(answer.body));
  return answer.status === 200 ? 0 : 1;
}

/** pull: through the running daemon, else here with a progress bar. */
export async function modelsPullCommand(
  model: string | undefined,
  opts: ModelsCommandOptions,
): Promise<number> {
  const loaded = await load(opts.config);
  if (!loaded) return 2;
  const registry = loaded.config.registry;
  const models = followed(loaded, model);
  if (!models) return 2;
  if (!registry || models.length === 0) {
    console.error(
      `${opts.config}: no model follows a registry (add a registry: section and models.<name>.registry)`,
    );
    return 2;
  }
  const url = daemonUrl(loaded, opts.url);
  let code = 0;
  if (await ask(url, 'GET', '/healthz')) {
    const token = opsToken(loaded, opts);
    if (token === null) return 2;
    for (const m of models) {
      const answer = await ask(url, 'POST', `/api/v1/models/${encodeURIComponent(m)}/check`, token);
      const body = answer?.body as { version?: string | null; alias?: string; error?: string } | undefined;
      if (answer?.status === 200)
        say(
          `${m}: the running daemon checked the registry: ${body?.alias} is version ${body?.version ?? 'unset'}; it downloads, verifies and tries a new one itself (vigil models status)`,
        );
      else {
        console.error(`${m}: ${body?.error ?? `the daemon answered ${answer?.status}`}`);
        code = 1;
      }
    }
    return code;
  }

  const owner = storeOwner(resolvePath(loaded, registry.storeDir));
  if (owner !== undefined) {
    console.error(
      `a Vigil daemon (pid ${owner}) owns the model store but does not answer at ${url}: pull through it (check http: in the config, or pass --url), or stop it first`,
    );
    return 1;
  }
  const baseDir = path.dirname(loaded.file);
  const log = opts.json ? silentLogger() : createLogger({ level: 'warn' });
  const client = new MlflowRegistryClient(registry, { baseDir, log });
  const store = await ModelStore.open(resolvePath(loaded, registry.storeDir), log);
  const publicKeys = await loadPublicKeys(registry.signatures.publicKeys, baseDir);
  for (const m of models) {
    const source = loaded.config.models[m]!.registry!;
    const group = loaded.config.device.group;
    const alias = (group && source.aliasByGroup[group]) || source.alias;
    try {
      const info = await client.versionByAlias(source.name, alias);
      const refused = store.rejection(m, info.version);
      if (refused && !opts.retry) {
        console.error(
          `${m}: ${source.name}@${alias} is version ${info.version}, which this gateway refused (${refused.reason}); pass --retry to try it again`,
        );
        code = 1;
        continue;
      }
      if (refused) await store.clearRejected(m, info.version);
      if (store.isInstalled(m, info.version)) {
        say(`${m}: ${source.name}@${alias} is version ${info.version}, already installed`);
        continue;
      }
      const bar = new SingleBar(
        {
          format: `${m} v${info.version} [{bar}] {percentage}% {value}/{total} KiB {file}`,
          hideCursor: true,
        },
        Presets.shades_classic,
      );
      let started = false;
      const staging = store.stagingDir(m, info.version);
      const got = await client.downloadVersion(info, staging, {
        onProgress: (p) => {
          const total = Math.max(1, Math.round((p.totalBytes ?? p.doneBytes) / 1024));
          if (!started && !opts.json) {
            bar.start(total, 0, { file: p.file });
            started = true;
          }
          bar.setTotal(total);
          bar.update(Math.round(p.doneBytes / 1024), { file: p.file });
        },
      });
      if (started) bar.stop();
      await store.install(m, info.version, staging, async (dir) => {
        await verifyPackage(dir, { policy: registry.signatures.policy, publicKeys });
      });
      say(
        `${m}: version ${info.version} of ${source.name} downloaded (${got.files.length} files, ${got.bytes} bytes${got.resumedBytes ? `, ${got.resumedBytes} resumed` : ''}), verified and installed; the daemon tries it in shadow at its next start`,
      );
    } catch (err) {
      console.error(`${m}: ${errorMessage(err)}`);
      code = 1;
    }
  }
  return code;
}

/** status: the daemon's rollout view, else the model store on disk. */
export async function modelsStatusCommand(opts: ModelsCommandOptions): Promise<number> {
  const loaded = await load(opts.config);
  if (!loaded) return 2;
  const url = daemonUrl(loaded, opts.url);
  const answer = await ask(url, 'GET', '/api/v1/status');
  const rollout = (answer?.body as { rollout?: Record<string, RolloutView> } | undefined)?.rollout;
  if (answer && answer.status === 200) {
    if (opts.json) say(JSON.stringify(rollout ?? {}, null, 2));
    else if (!rollout || Object.keys(rollout).length === 0) say('no model follows the registry');
    else for (const [m, r] of Object.entries(rollout)) printRollout(m, r);
    return 0;
  }
  const registry = loaded.config.registry;
  if (!registry) {
    console.error(`no Vigil daemon answers at ${url}, and the config has no registry: section`);
    return 1;
  }
  const owner = storeOwner(resolvePath(loaded, registry.storeDir));
  if (owner !== undefined) {
    console.error(
      `a Vigil daemon (pid ${owner}) owns the model store but does not answer at ${url}; pass --url`,
    );
    return 1;
  }
  const store = await ModelStore.open(resolvePath(loaded, registry.storeDir), silentLogger());
  const snapshots = Object.fromEntries((followed(loaded) ?? []).map((m) => [m, store.snapshot(m)] as const));
  if (opts.json) say(JSON.stringify({ daemon: 'not running', store: snapshots }, null, 2));
  else {
    say(`daemon: not answering at ${url}; from the model store ${resolvePath(loaded, registry.storeDir)}`);
    for (const [m, s] of Object.entries(snapshots)) say(`${m}: ${JSON.stringify(s)}`);
  }
  return 0;
}

interface RolloutView {
  state: string;
  active?: { version?: string };
  candidate?: { version?: string };
  shadow?: { samples?: number; target?: number; agreement?: number | null; p95Ms?: number | null };
  lastDecision?: { state: string; to: string; reason?: string; message: string; at: string };
  acceptance?: { version: string; outcome: string; summary: string };
  registry?: {
    registered: string;
    alias: string;
    aliasVersion?: string;
    installedVersion?: string;
    poll: string;
  };
}

function printRollout(model: string, r: RolloutView): void {
  const reg = r.registry;
  say(
    `${model}: ${r.state} · serving ${r.active?.version ?? '-'}${r.candidate?.version ? ` · candidate ${r.candidate.version}` : ''}` +
      (reg
        ? ` · follows ${reg.registered}@${reg.alias} (registry version ${reg.aliasVersion ?? '?'}, installed ${reg.installedVersion ?? 'none'}, poll ${reg.poll})`
        : ''),
  );
  if (r.shadow)
    say(
      `  shadow: ${r.shadow.samples ?? 0}/${r.shadow.target ?? '?'} inputs, agreement ${r.shadow.agreement ?? '-'}, p95 ${r.shadow.p95Ms ?? '-'} ms`,
    );
  if (r.lastDecision)
    say(
      `  last decision: ${r.lastDecision.state} ${r.lastDecision.to}${r.lastDecision.reason ? ` (${r.lastDecision.reason})` : ''} at ${r.lastDecision.at}: ${r.lastDecision.message}`,
    );
  if (r.acceptance)
    say(`  acceptance tests of ${r.acceptance.version}: ${r.acceptance.outcome}: ${r.acceptance.summary}`);
}
