import path from 'node:path';
import { resolvePath } from '../config/load.js';
import type { ModelConfig } from '../config/schema.js';
import type { EngineOptions } from '../engines/engine.js';
import { errorMessage } from '../errors.js';
import { loadModelPackage } from '../model/package.js';
import type { CheckResult, DoctorContext } from './check.js';
import { runProbe, type ProbeOutcome } from './probe-client.js';

/**
 * Engines, execution providers and delegates, as the daemon would load them: each model is
 * loaded, checked against its manifest and run (one warm-up inference) in a throw-away process,
 * once per ONNX execution provider it asks for, so that doctor says which provider the daemon
 * will really use and why the ones before it were passed over.
 */

/** Loading a model and, for a delegate, its own throw-away probe (tflite.ts) may take this long. */
export const ENGINE_PROBE_TIMEOUT_MS = 180_000;

/** The shipped packages checked when no config is given, and the providers tried on them. */
const SHIPPED = [
  { dir: 'models/defect/packages/defect-int8-onnx', providers: ['cpu', 'webgpu'] },
  { dir: 'models/defect/packages/defect-int8-tflite', providers: [] },
] as const;

interface Target {
  /** Row name prefix: the config's model name, or the shipped package's folder name. */
  label: string;
  /** Where a setting lives, for fixes: 'models.defect' or undefined for shipped packages. */
  configPath: string | undefined;
  dir: string;
  model: Pick<ModelConfig, 'onnx' | 'tflite'>;
}

const DEFAULT_MODEL: Pick<ModelConfig, 'onnx' | 'tflite'> = {
  onnx: { executionProviders: ['cpu'], intraOpThreads: 1 },
  tflite: { threads: 1, xnnpack: true },
};

function targets(ctx: DoctorContext): Target[] {
  if (!ctx.loaded) {
    return SHIPPED.map((s) => ({
      label: path.basename(s.dir),
      configPath: undefined,
      dir: path.join(ctx.root, s.dir),
      model: {
        ...DEFAULT_MODEL,
        onnx: {
          ...DEFAULT_MODEL.onnx,
          executionProviders: [...s.providers] as ModelConfig['onnx']['executionProviders'],
        },
      },
    }));
  }
  const loaded = ctx.loaded;
  return Object.entries(loaded.config.models).map(([name, m]) => ({
    label: name,
    configPath: `models.${name}`,
    dir: resolvePath(loaded, m.package),
    model: m,
  }));
}

export async function engineChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  const all = targets(ctx);
  if (all.length === 0) {
    return [{ group: 'engines', name: 'models', status: 'skip', detail: 'the config has no models' }];
  }
  const rows = await Promise.all(all.map((t) => checkTarget(t)));
  return rows.flat();
}

async function checkTarget(t: Target): Promise<CheckResult[]> {
  let format: 'onnx' | 'tflite';
  try {
    format = (await loadModelPackage(t.dir)).manifest.format;
  } catch (err) {
    return [
      {
        group: 'engines',
        name: t.label,
        status: 'fail',
        detail: `model package ${t.dir} cannot be used: ${errorMessage(err).replace(/\n/g, '; ')}`,
        fix: t.configPath
          ? `fix ${t.configPath}.package (vigil config check shows every problem), or install the package`
          : 'the installation is incomplete: reinstall Vigil or its offline bundle',
      },
    ];
  }
  return format === 'onnx' ? checkOnnx(t) : [await checkTflite(t)];
}

function options(t: Target, onnxProviders?: string[]): EngineOptions {
  return {
    onnx: { ...t.model.onnx, executionProviders: onnxProviders ?? t.model.onnx.executionProviders },
    tflite: t.model.tflite,
    warmupRuns: 1,
  };
}

async function checkOnnx(t: Target): Promise<CheckResult[]> {
  const asked = [...t.model.onnx.executionProviders];
  // One process per provider, in the daemon's order and one after another (a TensorRT engine
  // build next to a CUDA session could exhaust a small gateway's memory); each does exactly what
  // the daemon's worker does with that provider alone, and one that crashes takes no other along.
  const outcomes: ProbeOutcome[] = [];
  for (const p of asked) {
    outcomes.push(
      await runProbe({ kind: 'engine', dir: t.dir, options: options(t, [p]) }, ENGINE_PROBE_TIMEOUT_MS),
    );
  }
  const usedAt = outcomes.findIndex((o) => o.ok);
  const used = usedAt >= 0 ? asked[usedAt] : undefined;
  return asked.map((provider, i): CheckResult => {
    const o = outcomes[i]!;
    const name = `${t.label} onnx/${provider}`;
    const data = { provider, asked, used: used ?? null, ms: o.ms };
    if (o.ok) {
      const timing = `load ${String(o.data.loadMs)} ms, first inference ${String(o.data.warmupMs)} ms`;
      return {
        group: 'engines',
        name,
        status: 'ok',
        detail:
          i === usedAt
            ? `in use: loads and runs the model (${timing}); asked: ${asked.join(', ')}`
            : `available, but '${used}' comes first in the list and is used (${timing})`,
        data: { ...data, ...o.data },
      };
    }
    const reason = providerReason(provider, o);
    const where = t.configPath ? `${t.configPath}.onnx.executionProviders` : undefined;
    if (used === undefined) {
      return {
        group: 'engines',
        name,
        status: 'fail',
        detail: `not available: ${reason}; no provider in [${asked.join(', ')}] can run the model, so it will not load`,
        fix: `${providerFix(provider, undefined)}${where ? `; or add cpu at the end of ${where}` : ''}`,
        data: { ...data, reason },
      };
    }
    return {
      group: 'engines',
      name,
      status: 'warn',
      detail:
        i < usedAt
          ? `not available: ${reason}; the daemon falls back to '${used}'`
          : `not available here: ${reason} ('${used}' is used)`,
      fix: providerFix(provider, where),
      data: { ...data, reason },
    };
  });
}

/** Why a provider could not load the model, without onnxruntime's source locations and wrapping. */
export function providerReason(provider: string, o: ProbeOutcome): string {
  if (o.ok) return '';
  if (o.crashed) return o.message;
  let reason = o.message;
  const at = reason.indexOf(`(${provider}: `);
  if (at >= 0) reason = reason.slice(at + provider.length + 3).replace(/\)$/, '');
  // "/onnxruntime_src/...cc:136 ...<lambda()> adapter_result.status == ... was false. Failed to get a WebGPU adapter: ..."
  reason = reason.replace(/^\/onnxruntime_src\/\S+ .*? was false\.\s*/, '');
  if (provider === 'webgpu') {
    // Dawn says on stderr why Vulkan gave no adapter: no loader, or a loader without a driver.
    // no loader at all; a driver (ICD) the loader found but could not use; no driver at all.
    const vulkan =
      /Couldn't load Vulkan: ([^|]+)/.exec(o.stderr) ??
      /loader_scanned_icd_add: ([^|]+)/.exec(o.stderr) ??
      /vkCreateInstance: ([^|]+)/.exec(o.stderr);
    if (vulkan) reason += ` (Vulkan: ${vulkan[1]!.trim()})`;
  }
  return reason;
}

/** What to do about a provider that did not load; `where` is the config setting that lists it. */
function providerFix(provider: string, where: string | undefined): string {
  const orRemove = where ? `; or remove ${provider} from ${where}` : '';
  switch (provider) {
    case 'webgpu':
      return `WebGPU needs a GPU whose Vulkan driver is installed (libvulkan.so.1 and the vendor's ICD) and whose device nodes the daemon may open (a drop-in in deploy/systemd/dropins/); see docs/ACCELERATORS.md${orRemove}`;
    case 'cuda':
    case 'tensorrt':
      return `the ${provider} provider is not in the npm package: install onnxruntime-node's CUDA/TensorRT provider libraries and the CUDA and cuDNN${provider === 'tensorrt' ? ' and TensorRT' : ''} runtimes; see docs/ACCELERATORS.md${orRemove}`;
    case 'dml':
    case 'coreml':
      return `${provider} exists only on ${provider === 'dml' ? 'Windows' : 'macOS'}: ${where ? `remove it from ${where}` : 'it cannot work on a Linux gateway'}`;
    default:
      return `see docs/ACCELERATORS.md${orRemove}`;
  }
}

async function checkTflite(t: Target): Promise<CheckResult> {
  const { threads, xnnpack, delegate } = t.model.tflite;
  const name = `${t.label} tflite${delegate ? '/delegate' : ''}`;
  const o = await runProbe({ kind: 'engine', dir: t.dir, options: options(t) }, ENGINE_PROBE_TIMEOUT_MS);
  const settings = { threads, xnnpack, delegate: delegate?.library ?? null };
  if (!o.ok) {
    const where = t.configPath ? `${t.configPath}.tflite.delegate` : 'tflite.delegate';
    return {
      group: 'engines',
      name,
      status: 'fail',
      detail: `does not load: ${o.message}`,
      fix: delegate
        ? `install the accelerator runtime that provides ${delegate.library} (Coral Edge TPU: libedgetpu1-std) and give the daemon its device (udev, DeviceAllow); or remove ${where} to run on the CPU. See docs/ACCELERATORS.md`
        : 'the TFLite runtime cannot run this model: rebuild the package or reinstall tfjs-tflite-node',
      data: { ...settings, crashed: o.crashed, ms: o.ms },
    };
  }
  const warnings = (o.data.warnings as string[] | undefined) ?? [];
  const provider = String(o.data.provider);
  const runsOn = provider.startsWith('delegate:')
    ? `external delegate ${delegate?.library ?? provider.slice(9)}`
    : "TFLite's CPU kernels; whether XNNPACK takes part is the bundled runtime's choice";
  const detail = `in use: ${provider} (${runsOn}), ${threads} thread${threads === 1 ? '' : 's'}; load ${String(o.data.loadMs)} ms, first inference ${String(o.data.warmupMs)} ms`;
  return {
    group: 'engines',
    name,
    status: warnings.length > 0 ? 'warn' : 'ok',
    detail: warnings.length > 0 ? `${detail}; ${warnings.join('; ')}` : detail,
    fix:
      warnings.length > 0
        ? 'the setting cannot take effect with this runtime: remove it from the config'
        : undefined,
    data: { ...settings, ...o.data, ms: o.ms },
  };
}
