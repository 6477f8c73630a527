import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

/**
 * A real MLflow tracking server (model registry + artifact proxy) on loopback, from the virtual
 * environment test/provision.sh makes, and the data scientist's side (models/registry/register.py)
 * to seed it. Registry tests talk to this, not to a stand-in.
 */

export const MLFLOW_VENV =
  process.env.VIGIL_MLFLOW_VENV ?? path.join(os.homedir(), '.cache', 'vigil', 'venv-mlflow');
/** The repository root: the nearest folder above this file with a package.json (from test/ or dist/test/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}
const REGISTER_PY = path.join(repoRoot(), 'models/registry/register.py');

/** Quiet, offline, and only what the registry needs (no job runner: it forks eight workers). */
const MLFLOW_ENV = {
  MLFLOW_DISABLE_TELEMETRY: 'true',
  DO_NOT_TRACK: '1',
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false',
  PYTHONUNBUFFERED: '1',
};

export interface MlflowOptions {
  /** Listen here (e.g. to restart where clients expect it); default a free port. */
  port?: number;
  /** Keep the database and artifacts in this folder (owned by the caller); default a temp folder. */
  dir?: string;
  /** Run the basic-auth app with this admin user; anonymous requests then get 401. */
  basicAuth?: { username: string; password: string };
}

export interface RunningMlflow {
  url: string;
  port: number;
  dir: string;
  /** How long the last start took until /health answered 200. */
  startupMs: number;
  /** Everything the server wrote since it last started. */
  output(): string;
  /** Stops the server; removes the folder unless the caller gave it. */
  stop(): Promise<void>;
  /**
   * Stops the server (if running) and starts it again on the same port and data; also after
   * stop() when the caller gave `dir` (stop() removes a folder of its own).
   */
  restart(): Promise<void>;
}

/** The venv's Python, or a clear error saying how to make it; never a silent skip. */
export function mlflowPython(): string {
  const python = path.join(MLFLOW_VENV, 'bin', 'python');
  if (!existsSync(path.join(MLFLOW_VENV, 'bin', 'mlflow'))) {
    throw new Error(
      `no MLflow at ${MLFLOW_VENV}: the registry tests run against a real MLflow 3.17.2 server. ` +
        `Create it with 'bash test/provision.sh' (or 'python3 -m venv ${MLFLOW_VENV} && ` +
        `${MLFLOW_VENV}/bin/pip install -r test/peers/mlflow-requirements.txt'), or point VIGIL_MLFLOW_VENV at one.`,
    );
  }
  return python;
}

export async function startMlflow(options: MlflowOptions = {}): Promise<RunningMlflow> {
  mlflowPython();
  const port = options.port ?? (await freePort());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'vigil-mlflow-')));
  await mkdir(path.join(dir, 'artifacts'), { recursive: true });
  const env: NodeJS.ProcessEnv = { ...process.env, ...MLFLOW_ENV };
  // A client's own MLflow settings must not leak into the server.
  for (const key of Object.keys(env)) if (key.startsWith('MLFLOW_TRACKING_')) delete env[key];
  const args = [
    'server',
    '--backend-store-uri',
    `sqlite:///${path.join(dir, 'mlflow.db')}`,
    '--artifacts-destination',
    path.join(dir, 'artifacts'),
    '--serve-artifacts',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--workers',
    '1',
  ];
  if (options.basicAuth) {
    const config = path.join(dir, 'basic_auth.ini');
    // The password goes by environment, not into the file.
    await writeFile(
      config,
      [
        '[mlflow]',
        'default_permission = READ',
        `database_uri = sqlite:///${path.join(dir, 'basic_auth.db')}`,
        `admin_username = ${options.basicAuth.username}`,
        'authorization_function = mlflow.server.auth:authenticate_request_basic_auth',
        '',
      ].join('\n'),
    );
    env.MLFLOW_AUTH_CONFIG_PATH = config;
    env.MLFLOW_AUTH_ADMIN_PASSWORD = options.basicAuth.password;
    env.MLFLOW_FLASK_SERVER_SECRET_KEY = randomBytes(16).toString('hex');
    args.splice(1, 0, '--app-name', 'basic-auth');
  }

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';
  let startupMs = 0;

  async function launch(): Promise<void> {
    output = '';
    const started = Date.now();
    // Its own process group: mlflow forks uvicorn, and stop() must reach both.
    const proc = spawn(path.join(MLFLOW_VENV, 'bin', 'mlflow'), args, {
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let exitInfo: string | undefined;
    exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        exitInfo = `code ${code}, signal ${signal}`;
        resolve();
      }),
    );
    proc.once('error', (err) => (exitInfo = `spawn failed: ${err.message}`));
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    // The first start creates and migrates the database: tens of seconds on a slow machine.
    const deadline = started + 90_000;
    for (;;) {
      if (exitInfo !== undefined)
        throw new Error(`mlflow server exited (${exitInfo}) before it was ready:\n${output}`);
      if (await healthy(port)) break;
      if (Date.now() > deadline) {
        await kill();
        throw new Error(`mlflow server did not answer /health on 127.0.0.1:${port} within 90 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    startupMs = Date.now() - started;
  }

  async function kill(): Promise<void> {
    const proc = child;
    child = undefined;
    if (!proc?.pid || proc.exitCode !== null || proc.signalCode !== null) return;
    signalGroup(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(proc.pid!, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    // uvicorn may outlive its parent by a moment; the group signal already reached it.
    signalGroup(proc.pid, 'SIGKILL');
  }

  try {
    await launch();
  } catch (err) {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    get startupMs() {
      return startupMs;
    },
    output: () => output,
    async stop() {
      await kill();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await launch();
    },
  };
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

export interface RegisterOptions {
  name: string;
  /** A Vigil model package folder (vigil.json + model file). */
  packageDir: string;
  alias?: string;
  /** ed25519 private key PEM: register.py signs vigil.json. */
  signKey?: string;
  tags?: Record<string, string>;
  /** Credentials for a basic-auth server. */
  auth?: { username: string; password: string };
}

/** Runs models/registry/register.py with the venv's Python; resolves with the new version. */
export async function registerPackage(url: string, options: RegisterOptions): Promise<string> {
  const args = [REGISTER_PY, '--tracking-uri', url, '--name', options.name, '--package', options.packageDir];
  if (options.alias) args.push('--alias', options.alias);
  if (options.signKey) args.push('--sign-key', options.signKey);
  for (const [k, v] of Object.entries(options.tags ?? {})) args.push('--tag', `${k}=${v}`);
  const env: NodeJS.ProcessEnv = { ...process.env, ...MLFLOW_ENV };
  if (options.auth) {
    env.MLFLOW_TRACKING_USERNAME = options.auth.username;
    env.MLFLOW_TRACKING_PASSWORD = options.auth.password;
  }
  const stdout = await runPython(args, env);
  const version = stdout.trim().split('\n').pop() ?? '';
  if (!/^\d+$/.test(version)) throw new Error(`register.py printed no version:\n${stdout}`);
  return version;
}

/** Writes an ed25519 key pair (private.pem, public.pem) into dir with register.py --keygen. */
export async function generateKeys(dir: string): Promise<{ privateKey: string; publicKey: string }> {
  await runPython([REGISTER_PY, '--keygen', dir], { ...process.env, ...MLFLOW_ENV });
  return { privateKey: path.join(dir, 'private.pem'), publicKey: path.join(dir, 'public.pem') };
}

function runPython(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const python = mlflowPython();
  return new Promise((resolve, reject) => {
    execFile(python, args, { env, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(args[0] ?? 'python')} failed (${err.message}):\n${stderr}`));
      else resolve(stdout);
    });
  });
}
