import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { CheckResult, DoctorContext } from './check.js';
import { NATIVE_MODULES, runProbe, type NativeModule, type ProbeOutcome } from './probe-client.js';

/** A native module gets this long to load and do its small job in its own process. */
export const NATIVE_PROBE_TIMEOUT_MS = 60_000;

/** What each module must do to count as working (shown on success). */
const WHAT: Record<NativeModule, string> = {
  'better-sqlite3': 'opens an in-memory database and queries it',
  sharp: 'encodes and decodes a JPEG with libvips',
  'onnxruntime-node': 'loads and lists its execution providers',
  'tfjs-tflite-node': 'loads the TFLite runtime and runs a shipped model',
  '@serialport/bindings-cpp': 'loads',
};

/** The smallest shipped .tflite model, to run one inference with (undefined when none is installed). */
export function smallestTfliteModel(root: string): string | undefined {
  let best: { file: string; size: number } | undefined;
  const models = path.join(root, 'models');
  for (const family of safeList(models)) {
    const packages = path.join(models, family, 'packages');
    for (const pkg of safeList(packages)) {
      for (const f of safeList(path.join(packages, pkg))) {
        if (!f.endsWith('.tflite')) continue;
        const file = path.join(packages, pkg, f);
        const size = statSync(file).size;
        if (!best || size < best.size) best = { file, size };
      }
    }
  }
  return best?.file;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Loads every native module, each in its own process, all started at once. */
export async function probeNativeModules(ctx: DoctorContext): Promise<Map<NativeModule, ProbeOutcome>> {
  const tfliteModel = smallestTfliteModel(ctx.root);
  const outcomes = await Promise.all(
    NATIVE_MODULES.map((module) =>
      runProbe({ kind: 'native', module, tfliteModel }, NATIVE_PROBE_TIMEOUT_MS).then(
        (o) => [module, o] as const,
      ),
    ),
  );
  return new Map(outcomes);
}

export function nativeChecks(probes: Map<NativeModule, ProbeOutcome>): CheckResult[] {
  return NATIVE_MODULES.map((module) => {
    const o = probes.get(module)!;
    if (!o.ok) {
      return {
        group: 'native',
        name: module,
        status: 'fail',
        detail: `does not load: ${o.message}`,
        fix:
          `its binary does not work on this system (${process.platform}-${process.arch}, Node ABI ${process.versions.modules}): ` +
          `install the offline bundle built for this architecture, or rebuild it here with 'npm rebuild ${module}' ` +
          '(needs build-essential and python3)',
        data: { crashed: o.crashed, ms: o.ms },
      };
    }
    return {
      group: 'native',
      name: module,
      status: 'ok',
      detail: `${describe(module, o.data)}; ${WHAT[module]}`,
      data: { ...o.data, ms: o.ms },
    };
  });
}

function describe(module: NativeModule, data: Record<string, unknown>): string {
  const v = `${String(data.version ?? '?')}`;
  switch (module) {
    case 'better-sqlite3':
      return `${v} (SQLite ${String(data.sqlite)})`;
    case 'sharp':
      return `${v} (libvips ${String(data.libvips)})`;
    case 'onnxruntime-node': {
      const backends = (data.backends as Array<{ name: string; bundled: boolean }> | undefined) ?? [];
      return `${v} (providers: ${backends.map((b) => `${b.name}${b.bundled ? '' : ' [not bundled]'}`).join(', ')})`;
    }
    case 'tfjs-tflite-node':
      return data.inference ? v : `${v} (no shipped .tflite model to run; the binding loaded)`;
    case '@serialport/bindings-cpp':
      return data.listError ? `${v} (it cannot list ports here: ${String(data.listError)})` : v;
  }
}
