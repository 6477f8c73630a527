#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { VERSION } from '../version.js';
import { runCommand } from './run.js';
import { configCheckCommand, configDocsCommand, configSchemaCommand } from './config.js';
import { modelsListCommand } from './models.js';

interface ModelsCliOptions {
  config: string;
  url?: string;
  json?: boolean;
  retry?: boolean;
}

/** Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or arguments. */
const program = new Command('vigil')
  .description('Edge inference runtime for industrial gateways')
  .version(VERSION)
  .showHelpAfterError()
  // Usage errors (unknown command or option, a bad value) exit 2, as documented; help and
  // --version exit 0.
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const num = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return n;
};

program
  .command('run')
  .description('Run the daemon with a config file')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .action(async (opts: { config: string }) => runCommand(opts.config));

program
  .command('simulate')
  .description('Simulated cameras + the daemon + an embedded MQTT broker, with embedded defaults')
  .option(
    '-d, --duration <seconds>',
    'stop after this many seconds (default: until Ctrl-C)',
    num('--duration', 1),
  )
  .option(
    '--frames <n>',
    'stop once each camera has sent this many frames (exactly repeatable runs)',
    int('--frames', 1),
  )
  .option(
    '-s, --seed <n>',
    'seed of the simulated world; the same seed gives the same frames',
    int('--seed', 0),
    42,
  )
  .option('-r, --report <file>', 'write the JSON summary here')
  .option('--fps <n>', 'frames per second of the main (folder) camera', num('--fps', 0.1), 10)
  .option(
    '--http-fps <n>',
    'frames per second of the second (HTTP) camera; 0 disables it',
    num('--http-fps', 0),
    2,
  )
  .option('--defect-rate <r>', 'share of frames that carry a defect', num('--defect-rate', 0), 0.2)
  .option('--width <px>', 'frame width', int('--width', 16), 640)
  .option('--height <px>', 'frame height', int('--height', 16), 480)
  .option('--model <dir>', 'model package to run (default: the shipped int8 ONNX defect model)')
  .option(
    '--scenario <name|file>',
    'telemetry scenario: a shipped one (default, factory-faults, engine-fleet, pump-run-to-failure) or a YAML file',
    'default',
  )
  .option('--no-telemetry', 'cameras only: no simulated machines, OPC-UA, serial or MQTT telemetry')
  .option(
    '--mqtt-port <port>',
    'port of the embedded broker (another free one is used if taken)',
    int('--mqtt-port', 0),
    1883,
  )
  .option('--http-port <port>', 'port of the ops HTTP server', int('--http-port', 0), 8470)
  .option('--data-dir <dir>', 'where the store and camera folder go (default: a fresh temporary folder)')
  .option('--quiet', 'no live line per alert')
  .option('--log-level <level>', 'daemon log level (logs go to stderr)', 'warn')
  // The simulator (its OPC-UA server, serial devices) and the bench load only when asked for:
  // `vigil run` on a gateway never pays for them.
  .action(async (opts) => (await import('./simulate.js')).simulateCommand(opts));

const config = program.command('config').description('Check or describe configuration files');
config
  .command('check')
  .description('Validate a config file; prints every problem as `path: message`')
  .argument('<file>', 'YAML config file')
  .action(async (file: string) => configCheckCommand(file));
config
  .command('schema')
  .description('Print the JSON Schema of the config file')
  .action(() => configSchemaCommand());
config
  .command('docs')
  .description('Print the config reference (docs/CONFIG.md) as Markdown')
  .action(() => configDocsCommand());

const models = program.command('models').description('Model packages');
models
  .command('list')
  .description('List model packages in a folder (default: the shipped models/)')
  .argument('[dir]', 'folder to search')
  .action(async (dir?: string) => modelsListCommand(dir));
models
  .command('reference')
  .description(
    "Compute packages' reference distributions for drift monitoring from the data they were built from, through Vigil's own preprocessing and engine, and write them into vigil.json (docs/DRIFT.md)",
  )
  .argument('<packages...>', 'model package folders')
  .option('--data <kind>', 'camera, cmapss, pump or spindle (default: from the model)')
  .option('--count <n>', 'samples to draw (camera frames, or runs)')
  .option('--seed <n>', 'seed of the simulator data (a held-out one by default)')
  .option(
    '--defect-rate <r>',
    'share of defective frames in the camera reference (a production-like 0.2 by default)',
  )
  .option('--cmapss-dir <dir>', "folder of NASA's C-MAPSS files")
  .option('--runs <n>', 'simulated run-to-failure runs (pump, spindle)')
  .option('--dry-run', 'print the reference without writing it')
  .action(async (packages: string[], opts: Record<string, string | boolean | undefined>) => {
    const { modelsReferenceCommand } = await import('./models-reference.js');
    for (const dir of packages) {
      const code = await modelsReferenceCommand(dir, opts);
      if (code !== 0) process.exitCode = code;
    }
  });
models
  .command('test')
  .description(
    "Run a package's acceptance tests (its holdout and declared checks: output shape and range, invariances, monotonic relations, minimum metrics) through Vigil's own preprocessing and engine; exit 0 pass, 1 fail, 2 unreadable or no tests (docs/ACCEPTANCE.md)",
  )
  .argument('<package>', 'model package folder')
  .option('--json', 'print the report as JSON')
  .action(async (dir: string, opts: { json?: boolean }) => {
    const { modelsTestCommand } = await import('./models-test.js');
    process.exitCode = await modelsTestCommand(dir, opts);
  });
models
  .command('holdout')
  .description(
    "Build shipped packages' acceptance holdouts from the data they were built from (held-out samples only) and write them, with the checks of the model family's acceptance.json, into vigil.json; then run the tests (docs/ACCEPTANCE.md)",
  )
  .argument('<packages...>', 'model package folders')
  .option('--checks <file>', 'checks per package folder name (default: acceptance.json of the model family)')
  .option('--cmapss-dir <dir>', "folder of NASA's C-MAPSS files")
  .option('--no-test', 'do not run the tests after writing')
  .action(async (packages: string[], opts: { checks?: string; cmapssDir?: string; test?: boolean }) => {
    const { modelsHoldoutCommand } = await import('./models-holdout.js');
    for (const dir of packages) {
      const code = await modelsHoldoutCommand(dir, opts);
      if (code !== 0) process.exitCode = code;
    }
  });
const rolloutCommand = (name: string, description: string) =>
  models
    .command(name)
    .description(description)
    .requiredOption('-c, --config <file>', "the daemon's config (registry, model store, HTTP address)")
    .option('--url <url>', 'ops HTTP base URL of the running daemon (default from the config)')
    .option(
      '--token-file <file>',
      'file holding the ops token for promote, rollback and pull (default: http.tokenFile of the config, else $VIGIL_HTTP_TOKEN)',
    )
    .option('--json', 'print JSON');
rolloutCommand(
  'pull',
  'Fetch the version the alias points at: the running daemon checks the registry now; without one, download (resuming), verify and install it here with a progress bar',
)
  .argument('[model]', 'configured model name (default: every model that follows the registry)')
  .option('--retry', 'try again a version this gateway refused before')
  .action(async (model: string | undefined, opts: ModelsCliOptions) => {
    process.exitCode = await (await import('./models-rollout.js')).modelsPullCommand(model, opts);
  });
rolloutCommand('promote', 'Promote the version in shadow now, without waiting for its verdict')
  .argument('<model>', 'configured model name')
  .action(async (model: string, opts: ModelsCliOptions) => {
    process.exitCode = await (
      await import('./models-rollout.js')
    ).modelsActionCommand('promote', model, opts);
  });
rolloutCommand('rollback', 'Go back to the version served before the current one')
  .argument('<model>', 'configured model name')
  .action(async (model: string, opts: ModelsCliOptions) => {
    process.exitCode = await (
      await import('./models-rollout.js')
    ).modelsActionCommand('rollback', model, opts);
  });
rolloutCommand(
  'status',
  'Rollout state of every model that follows the registry: serving, candidate, shadow progress, last decision',
).action(async (opts: ModelsCliOptions) => {
  process.exitCode = await (await import('./models-rollout.js')).modelsStatusCommand(opts);
});

program
  .command('bench')
  .description('Measure inference and end-to-end latency; writes a Markdown + JSON summary')
  .option('-n, --iterations <n>', 'inference iterations per engine', int('--iterations', 10), 300)
  .option('--duration <seconds>', 'seconds per end-to-end run', num('--duration', 1), 20)
  .option('--out <file>', 'write the JSON results here')
  .option(
    '--python <path>',
    'Python with onnxruntime for the baseline (default: the bench venv, else python3)',
  )
  .option('--packages <names...>', 'only these packages of models/defect/packages')
  .option('--concurrency <n>', 'pipeline concurrency in the end-to-end runs', int('--concurrency', 1))
  .action(async (opts) => (await import('./bench.js')).benchCommand(opts));

program
  .command('replay')
  .description(
    'Recorded telemetry (CSV: asset, time or cycle, one column per tag) through the configured telemetry pipelines; one JSON line per model result',
  )
  .requiredOption('-c, --config <file>', 'the config whose models and pipelines to run')
  .requiredOption(
    '-i, --input <file>',
    'CSV with an asset column, a time or cycle column and one column per tag',
  )
  .option(
    '--speed <n|max>',
    "'max' (as fast as the models go) or a factor of real time (cycle files: one cycle per second at 1)",
    'max',
  )
  .requiredOption('-o, --out <file>', 'JSON lines output, one per model result')
  .option('--log-level <level>', 'log level (logs go to stderr)', 'warn')
  .action(async (opts: { config: string; input: string; speed: string; out: string; logLevel: string }) => {
    const { replayCommand, printReplaySummary } = await import('./replay/replay.js');
    const say = (l: string) => process.stdout.write(l + '\n');
    try {
      printReplaySummary(await replayCommand(opts), opts.out, say);
    } catch (err) {
      console.error(err instanceof Error ? err.message : String(err));
      const code = (err as { code?: string }).code;
      process.exitCode = code === 'VIGIL_ERR_CONFIG_INVALID' || code === 'VIGIL_ERR_INPUT_INVALID' ? 2 : 1;
    }
  });

program
  .command('status')
  .description(
    'What the gateway holds and has delivered: upstream backlog and age per class, last delivery, store usage and evictions (from the running daemon, else from the store file)',
  )
  .option(
    '-c, --config <file>',
    "the daemon's config: its HTTP address, and its store to read when it is not running",
  )
  .option(
    '--url <url>',
    'ops HTTP base URL of the daemon (default from --config, else http://127.0.0.1:8470)',
  )
  .option('--json', 'print the full status as JSON')
  .action(async (opts: { config?: string; url?: string; json?: boolean }) => {
    const { statusCommand } = await import('./status.js');
    process.exitCode = await statusCommand(opts);
  });

program
  .command('doctor')
  .description(
    'Check this gateway: Node.js, native modules, engines and execution providers or delegates, serial ports, broker and registry reachability, disk space, clock',
  )
  .option(
    '-c, --config <file>',
    'also check what this config names: its models, ports, brokers, registry, store',
  )
  .option('--json', 'print every check as JSON')
  .option('--timeout-ms <n>', 'bound on each network check', int('--timeout-ms', 100), 5000)
  .action(async (opts: { config?: string; json?: boolean; timeoutMs: number }) => {
    // Loaded on demand: doctor reaches into every part of Vigil.
    const { doctorCommand } = await import('./doctor.js');
    process.exitCode = await doctorCommand(opts);
  });

const opcua = program.command('opcua').description('OPC-UA tools');
opcua
  .command('browse')
  .description('Print the address space of an OPC-UA server, to pick node ids for a source')
  .argument('<endpoint>', 'endpoint URL, e.g. opc.tcp://192.168.0.10:4840')
  .option('--depth <n>', 'levels to walk below the start node', int('--depth', 1), 6)
  .option('--root <nodeId>', 'start node (default: the Objects folder, i=85)')
  .option('--security-mode <mode>', 'None, Sign or SignAndEncrypt', 'None')
  .option('--security-policy <policy>', 'Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss')
  .option('--user <name>', 'user name (the password from --password or VIGIL_OPCUA_PASSWORD)')
  .option('--password <password>', 'password; prefer the VIGIL_OPCUA_PASSWORD environment variable')
  .option('--pki <dir>', 'certificate folder (as pkiFolder in the config)', 'vigil-data/pki/opcua')
  .option('--trust-server', 'trust the server certificate if it is unknown (copied into <pki>/trusted)')
  .option('--all', "also expand the standard's own nodes (Server, diagnostics)")
  .option('--timeout <seconds>', 'give up after this long', num('--timeout', 1), 15)
  .option('--json', 'print the tree as JSON')
  .action(async (endpoint: string, opts) => {
    // Loaded on demand: the OPC-UA stack is large and no other command needs it.
    const { opcuaBrowseCommand } = await import('./opcua.js');
    process.exitCode = await opcuaBrowseCommand(endpoint, opts);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
