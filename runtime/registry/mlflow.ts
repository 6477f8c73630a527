import { readFileSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { z } from 'zod';
import type { RegistryConfig } from '../config/registry.js';
import { readSecret } from '../config/secrets.js';
import { VigilError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { RegistryError, type DownloadProgress, type ModelVersionInfo, type RegistryClient } from './types.js';

/**
 * MLflow's model registry over its REST API (docs/REGISTRY.md), with node:http(s) rather than
 * fetch: a private CA and per-socket idle timeouts need an agent, and fetch only takes one through
 * the undici package, which Vigil does not ship.
 */

export interface MlflowRegistryClientOptions {
  /** Where the password and token variables are read from; default process.env. */
  env?: Record<string, string | undefined>;
  /** Folder that a relative tls.ca is resolved against (the config file's). */
  baseDir?: string;
  log?: Logger;
}

/** Largest JSON answer accepted; a registry answer is a few KiB, anything near this is not MLflow. */
const MAX_JSON_BYTES = 8 * 1024 * 1024;
const PART = '.part';

const TagList = z.array(z.object({ key: z.string(), value: z.string().optional() })).optional();
const ModelVersionJson = z.object({
  name: z.string(),
  version: z.string(),
  status: z.string().optional(),
  source: z.string().optional(),
  run_id: z.string().optional(),
  tags: TagList,
  aliases: z.array(z.string()).optional(),
  creation_timestamp: z.union([z.number(), z.string()]).optional(),
  last_updated_timestamp: z.union([z.number(), z.string()]).optional(),
});
const ModelVersionAnswer = z.object({ model_version: ModelVersionJson });
const DownloadUriAnswer = z.object({ artifact_uri: z.string() });
const ArtifactList = z.object({
  files: z
    .array(
      z.object({
        path: z.string(),
        is_dir: z.boolean().optional(),
        file_size: z.union([z.number(), z.string()]).optional(),
      }),
    )
    .optional(),
});

interface Artifact {
  /** Relative to the version's root, '/'-separated. */
  rel: string;
  size: number | undefined;
}

const TLS_HINT =
  "the registry's certificate does not verify: set registry.tls.ca to the PEM file of the CA that signed it";

export class MlflowRegistryClient implements RegistryClient {
  /** Requests sent and answer bytes received (headers excluded), for fleet load estimates. */
  readonly stats = { requests: 0, responseBytes: 0 };
  private readonly base: URL;
  /** Path prefix of the server (mlflow server --static-prefix), without a trailing '/'. */
  private readonly prefix: string;
  /** The URL as shown in messages: never with credentials in it. */
  private readonly shown: string;
  private readonly agent: http.Agent;
  private readonly authorization: string | undefined;
  private readonly authProblem: string | undefined;
  private readonly timeoutMs: number;
  private readonly log: Logger | undefined;

  constructor(config: RegistryConfig, options: MlflowRegistryClientOptions = {}) {
    const env = options.env ?? process.env;
    let base: URL;
    try {
      base = new URL(config.url);
    } catch (err) {
      throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `registry.url: '${config.url}' is not a URL`, {
        cause: err,
      });
    }
    const urlUser = decodeURIComponent(base.username);
    const urlPassword = decodeURIComponent(base.password);
    base.username = '';
    base.password = '';
    base.search = '';
    base.hash = '';
    this.base = base;
    this.prefix = base.pathname.replace(/\/+$/, '');
    this.shown = base.href.replace(/\/$/, '');
    this.timeoutMs = config.requestTimeoutMs;
    this.log = options.log;

    const resolve = (file: string) => path.resolve(options.baseDir ?? '.', file);
    const secret = (key: string, file: string | undefined, envName: string) =>
      readSecret({ key, file, envName }, { env, resolvePath: resolve });
    // A token file is only read when it will be used, so a stale one cannot stop a basic-auth start.
    const token =
      config.username === undefined ? secret('registry.token', config.tokenFile, config.tokenEnv) : undefined;
    if (config.username !== undefined) {
      const password = secret('registry.password', config.passwordFile, config.passwordEnv);
      if (password) this.authorization = basic(config.username, password);
      else
        this.authProblem = `registry.username is '${config.username}' but $${config.passwordEnv} is not set: set it to the user's password, or set registry.passwordFile`;
    } else if (token) {
      this.authorization = `Bearer ${token}`;
    } else if (urlUser) {
      this.authorization = basic(urlUser, urlPassword);
    }

    let ca: Buffer | undefined;
    if (config.tls?.ca !== undefined) {
      const file = path.resolve(options.baseDir ?? '.', config.tls.ca);
      try {
        ca = readFileSync(file);
      } catch (err) {
        throw new VigilError(
          'VIGIL_ERR_CONFIG_INVALID',
          `registry.tls.ca: cannot read ${file} (${errorMessage(err)}); it must be the PEM file of the CA that signed the registry's certificate`,
          { cause: err },
        );
      }
    }
    // No keep-alive: polls are minutes apart, and idle sockets would outlive the client.
    this.agent =
      base.protocol === 'https:'
        ? new https.Agent({
            keepAlive: false,
            ca,
            rejectUnauthorized: config.tls?.rejectUnauthorized ?? true,
          })
        : new http.Agent({ keepAlive: false });
  }

  async versionByAlias(name: string, alias: string): Promise<ModelVersionInfo> {
    try {
      const answer = await this.json('GET', '/api/2.0/mlflow/registered-models/alias', { name, alias });
      return toVersionInfo(this.parse(ModelVersionAnswer, answer, 'registered-models/alias').model_version);
    } catch (err) {
      // MLflow answers an unset alias with 400 INVALID_PARAMETER_VALUE, not 404.
      if (
        err instanceof RegistryError &&
        err.errorCode === 'INVALID_PARAMETER_VALUE' &&
        /alias .* not found/i.test(err.message)
      ) {
        throw new RegistryError(
          'not_found',
          `${err.message} (registered model '${name}' has no alias '${alias}': set it in MLflow)`,
          err.status,
          err.errorCode,
        );
      }
      throw err;
    }
  }

  async getVersion(name: string, version: string): Promise<ModelVersionInfo> {
    const answer = await this.json('GET', '/api/2.0/mlflow/model-versions/get', { name, version });
    return toVersionInfo(this.parse(ModelVersionAnswer, answer, 'model-versions/get').model_version);
  }

  async setVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
    await this.json('POST', '/api/2.0/mlflow/model-versions/set-tag', undefined, {
      name,
      version,
      key,
      value,
    });
  }

  /**
   * Files already complete in destDir (right size) are kept and counted as resumed: destDir must
   * hold nothing but this version's download (the model store's staging folder does).
   */
  async downloadVersion(
    version: ModelVersionInfo,
    destDir: string,
    options: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal } = {},
  ): Promise<{ files: string[]; bytes: number; resumedBytes: number }> {
    const { signal, onProgress } = options;
    const root = await this.artifactRoot(version, signal);
    const artifacts = await this.listArtifacts(root, '', signal);
    if (artifacts.length === 0) {
      throw new RegistryError(
        'invalid',
        `registry ${this.shown} lists no artifacts for ${version.name} version ${version.version} at '${root}': ` +
          'the version was registered without its package files; register it again (models/registry/register.py)',
      );
    }
    const known = artifacts.every((a) => a.size !== undefined);
    const totalBytes = known ? artifacts.reduce((sum, a) => sum + (a.size ?? 0), 0) : undefined;
    const dest = path.resolve(destDir);
    await mkdir(dest, { recursive: true });

    let doneBytes = 0;
    let resumedBytes = 0;
    for (const artifact of artifacts) {
      signal?.throwIfAborted();
      const file = path.join(dest, ...artifact.rel.split('/'));
      if (!isInside(dest, file)) throw this.traversal(artifact.rel);
      await mkdir(path.dirname(file), { recursive: true });
      const got = await this.downloadFile(`${root}/${artifact.rel}`, artifact, file, {
        signal,
        progress: (bytes) =>
          onProgress?.({
            file: artifact.rel,
            bytes,
            total: artifact.size,
            doneBytes: doneBytes + bytes,
            totalBytes,
          }),
      });
      doneBytes += got.bytes;
      resumedBytes += got.resumed;
    }
    return { files: artifacts.map((a) => a.rel), bytes: doneBytes, resumedBytes };
  }

  /** The artifact proxy path (no scheme, no leading '/') where the version's files are. */
  private async artifactRoot(version: ModelVersionInfo, signal?: AbortSignal): Promise<string> {
    let uri = version.source;
    try {
      const answer = await this.json(
        'GET',
        '/api/2.0/mlflow/model-versions/get-download-uri',
        { name: version.name, version: version.version },
        undefined,
        signal,
      );
      uri = this.parse(DownloadUriAnswer, answer, 'model-versions/get-download-uri').artifact_uri;
    } catch (err) {
      // Servers without the call (or that cannot resolve it) still give the source.
      const fallback =
        err instanceof RegistryError &&
        (err.errorCode === 'ENDPOINT_NOT_FOUND' || err.kind === 'invalid') &&
        version.source.startsWith('mlflow-artifacts:');
      if (!fallback) throw err;
    }
    const match = /^mlflow-artifacts:(?:\/\/[^/]*)?\/*(.*)$/.exec(uri);
    if (!match) {
      throw new RegistryError(
        'invalid',
        `${version.name} version ${version.version} has its artifacts at '${uri}', which the gateway cannot fetch: ` +
          `it downloads through the tracking server's artifact proxy only (mlflow-artifacts:/...). Run mlflow server ` +
          'with --serve-artifacts and register versions from runs or logged models on that server',
      );
    }
    const root = (match[1] ?? '').replace(/\/+$/, '');
    if (root.split('/').some((part) => !safeName(part))) throw this.traversal(root);
    return root;
  }

  private async listArtifacts(root: string, rel: string, signal?: AbortSignal): Promise<Artifact[]> {
    const where = rel ? `${root}/${rel}` : root;
    const answer = this.parse(
      ArtifactList,
      await this.json('GET', '/api/2.0/mlflow-artifacts/artifacts', { path: where }, undefined, signal),
      'mlflow-artifacts/artifacts',
    );
    const out: Artifact[] = [];
    for (const entry of answer.files ?? []) {
      // The proxy gives base names; anything else could climb out of the destination folder.
      if (!safeName(entry.path)) throw this.traversal(rel ? `${rel}/${entry.path}` : entry.path);
      const child = rel ? `${rel}/${entry.path}` : entry.path;
      if (entry.is_dir) {
        out.push(...(await this.listArtifacts(root, child, signal)));
      } else {
        const size = entry.file_size === undefined ? undefined : Number(entry.file_size);
        out.push({ rel: child, size: Number.isSafeInteger(size) && size! >= 0 ? size : undefined });
      }
    }
    return out;
  }

  private async downloadFile(
    remote: string,
    artifact: Artifact,
    file: string,
    options: { signal?: AbortSignal; progress: (bytes: number) => void },
  ): Promise<{ bytes: number; resumed: number }> {
    const part = file + PART;
    const size = artifact.size;
    if (size !== undefined && (await fileSize(file)) === size) {
      options.progress(size);
      return { bytes: size, resumed: size };
    }
    let offset = (await fileSize(part)) ?? 0;
    if (size !== undefined && offset > size) offset = 0;
    if (size === undefined || offset < size || size === 0) {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.Range = `bytes=${offset}-`;
      const idle = { timedOut: false };
      const res = await this.send('GET', this.artifactUrl(remote), {
        headers,
        signal: options.signal,
        userSignal: options.signal,
        idle,
      });
      try {
        if (offset > 0 && res.statusCode === 206) {
          const range = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
          if (!range || Number(range[1]) !== offset) {
            throw new RegistryError(
              'invalid',
              `registry ${this.shown} answered a range request for '${artifact.rel}' with the wrong part (${res.headers['content-range']})`,
              206,
            );
          }
        } else if (res.statusCode === 200 || (res.statusCode === 416 && offset > 0)) {
          // 200: the server ignored Range; 416: the part is stale. Either way start the file again.
          offset = 0;
          if (res.statusCode === 416) {
            res.resume();
            await rm(part, { force: true });
            return this.downloadFile(remote, artifact, file, options);
          }
        } else {
          throw await this.httpError(res, `GET ${remote}`);
        }
        try {
          await this.receive(res, part, offset, options.progress);
        } catch (err) {
          throw this.transportError(err, { timedOut: idle.timedOut, userSignal: options.signal });
        }
      } finally {
        res.destroy();
      }
    }
    const got = (await fileSize(part)) ?? 0;
    if (size !== undefined && got !== size) {
      if (got > size) await rm(part, { force: true });
      throw new RegistryError(
        got < size ? 'unavailable' : 'invalid',
        `registry ${this.shown}: '${artifact.rel}' ended after ${got} of ${size} bytes` +
          (got < size
            ? ' (the transfer was cut; the next attempt resumes it)'
            : ' (more than the registry listed)'),
      );
    }
    await rename(part, file);
    return { bytes: got, resumed: offset };
  }

  /** Streams the body onto the end of `part` (from `offset`, truncating anything after it). */
  private async receive(
    res: IncomingMessage,
    part: string,
    offset: number,
    progress: (bytes: number) => void,
  ): Promise<void> {
    // Each chunk is on disk before the next is read, so a cut transfer keeps all it received.
    const handle = await open(part, offset > 0 ? 'r+' : 'w');
    try {
      if (offset > 0) await handle.truncate(offset);
      let position = offset;
      for await (const chunk of res as AsyncIterable<Buffer>) {
        await handle.write(chunk, 0, chunk.length, position);
        position += chunk.length;
        this.stats.responseBytes += chunk.length;
        progress(position);
      }
    } finally {
      await handle.close();
    }
  }

  /** One JSON call: the whole exchange must finish within requestTimeoutMs. */
  private async json(
    method: 'GET' | 'POST',
    apiPath: string,
    query?: Record<string, string>,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const url = new URL(this.base.href);
    url.pathname = this.prefix + apiPath;
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
    const what = `${method} ${apiPath.replace('/api/2.0/mlflow/', '')}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const res = await this.send(method, url, { body, signal: combined, timeout, userSignal: signal });
    if (res.statusCode !== 200) throw await this.httpError(res, what);
    let text: string;
    try {
      text = await readText(res, MAX_JSON_BYTES);
    } catch (err) {
      throw this.transportError(err, { timeout, userSignal: signal });
    }
    this.stats.responseBytes += Buffer.byteLength(text);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RegistryError(
        'invalid',
        `registry ${this.shown} answered ${what} with something that is not JSON (${snippet(text)}): is registry.url an MLflow tracking server?`,
        res.statusCode,
      );
    }
  }

  /**
   * Sends a request and resolves with the response once its headers are in. `idle` downloads
   * time out on requestTimeoutMs without a byte rather than on the whole transfer.
   */
  private send(
    method: string,
    url: URL,
    options: {
      body?: unknown;
      headers?: Record<string, string>;
      /** Aborts the request: the caller's signal, combined with the timeout for JSON calls. */
      signal?: AbortSignal;
      timeout?: AbortSignal;
      /** The caller's own signal: its abort is passed on as is, not as a registry error. */
      userSignal?: AbortSignal;
      /** Set: time out after requestTimeoutMs without a byte, and record it here. */
      idle?: { timedOut: boolean };
    },
  ): Promise<IncomingMessage> {
    if (this.authProblem) return Promise.reject(new RegistryError('auth', this.authProblem));
    const userSignal = options.userSignal;
    userSignal?.throwIfAborted();
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    let payload: string | undefined;
    if (options.body !== undefined) {
      payload = JSON.stringify(options.body);
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }
    if (this.authorization) headers.Authorization = this.authorization;
    this.stats.requests += 1;
    const started = Date.now();
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const idle = options.idle;
      const req = lib.request(url, { method, headers, agent: this.agent, signal: options.signal }, (res) => {
        this.log?.debug(
          { method, path: url.pathname, status: res.statusCode, ms: Date.now() - started },
          'registry request',
        );
        resolve(res);
      });
      if (idle) {
        req.setTimeout(this.timeoutMs, () => {
          idle.timedOut = true;
          req.destroy(new Error('idle timeout'));
        });
      }
      req.once('error', (err) => {
        const timedOut = idle?.timedOut === true || options.timeout?.aborted === true;
        reject(this.transportError(err, { timedOut, userSignal }));
      });
      req.end(payload);
    });
  }

  private transportError(
    err: unknown,
    where: { timedOut?: boolean; timeout?: AbortSignal; userSignal?: AbortSignal },
  ): unknown {
    if (where.userSignal?.aborted) return where.userSignal.reason;
    if (err instanceof RegistryError) return err;
    if (where.timedOut || where.timeout?.aborted) {
      return new RegistryError(
        'timeout',
        `registry ${this.shown} did not answer within ${this.timeoutMs} ms (registry.requestTimeoutMs)`,
        undefined,
        undefined,
        { cause: err },
      );
    }
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const tls = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|EPROTO|SSL/.test(code);
    return new RegistryError(
      'unreachable',
      `cannot reach registry ${this.shown}: ${code ? `${code} ` : ''}${errorMessage(err)}` +
        (tls ? ` (${TLS_HINT})` : ''),
      undefined,
      undefined,
      { cause: err },
    );
  }

  private async httpError(res: IncomingMessage, what: string): Promise<RegistryError> {
    const status = res.statusCode ?? 0;
    let text = '';
    try {
      text = await readText(res, 64 * 1024);
    } catch {
      // The status alone still says what happened.
    }
    let code: string | undefined;
    let message = text;
    try {
      const parsed = JSON.parse(text) as { error_code?: unknown; message?: unknown };
      if (typeof parsed.error_code === 'string') code = parsed.error_code;
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // Plain text or HTML (auth, host check, proxy off): shown as it is, shortened.
    }
    const kind =
      status === 401 || status === 403
        ? 'auth'
        : status === 404
          ? 'not_found'
          : status === 429 || status >= 500
            ? 'unavailable'
            : 'invalid';
    let hint = '';
    if (kind === 'auth') {
      hint = /invalid host header/i.test(message)
        ? ' (the server refuses this host name: start mlflow server with --allowed-hosts listing it)'
        : status === 401
          ? ' (check registry.username and its password variable, or the token variable)'
          : ' (this user lacks the permission; writing tags needs EDIT)';
    } else if (status === 503 && /serve-artifacts|artifact/i.test(message)) {
      hint = ' (start mlflow server with --serve-artifacts)';
    }
    return new RegistryError(
      kind,
      `registry ${this.shown} answered ${status}${code ? ` ${code}` : ''}: ${snippet(message) || res.statusMessage || 'no message'} (${what})${hint}`,
      status,
      code,
    );
  }

  private parse<T>(schema: z.ZodType<T>, answer: unknown, what: string): T {
    const result = schema.safeParse(answer);
    if (!result.success) {
      throw new RegistryError(
        'invalid',
        `registry ${this.shown} answered ${what} with JSON that is not what MLflow sends (${result.error.issues[0]?.message ?? 'unexpected shape'}): is it an MLflow tracking server?`,
      );
    }
    return result.data;
  }

  private artifactUrl(remote: string): URL {
    const url = new URL(this.base.href);
    url.pathname =
      this.prefix +
      '/api/2.0/mlflow-artifacts/artifacts/' +
      remote.split('/').map(encodeURIComponent).join('/');
    return url;
  }

  private traversal(rel: string): RegistryError {
    return new RegistryError(
      'invalid',
      `registry ${this.shown} listed an artifact path '${rel}' that would land outside the download folder; refusing the whole version`,
    );
  }
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** One path segment that stays where it is put: no '..', separators, drive letters or NUL. */
function safeName(name: string): boolean {
  return (
    name.length > 0 && name !== '.' && name !== '..' && !/[\\/\0]/.test(name) && !/^[A-Za-z]:/.test(name)
  );
}

function isInside(root: string, file: string): boolean {
  const rel = path.relative(root, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

function toVersionInfo(v: z.infer<typeof ModelVersionJson>): ModelVersionInfo {
  const tags: Record<string, string> = {};
  for (const t of v.tags ?? []) tags[t.key] = t.value ?? '';
  return {
    name: v.name,
    version: v.version,
    status: v.status ?? 'READY',
    source: v.source ?? '',
    ...(v.run_id ? { runId: v.run_id } : {}),
    tags,
    aliases: v.aliases ?? [],
    lastUpdated: Number(v.last_updated_timestamp ?? v.creation_timestamp ?? 0),
  };
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch {
    return undefined;
  }
}

async function readText(res: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new RegistryError('invalid', `answer larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function snippet(text: string): string {
  const plain = text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return plain.length > 300 ? `${plain.slice(0, 300)}…` : plain;
}
