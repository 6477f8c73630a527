import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { errorMessage } from '../errors.js';
import type { TensorSpec } from '../model/manifest.js';
import type { OnnxEngineOptions } from './engine.js';
import { toFloat32, toModelDtype } from './tensor.js';
import type { ModelTensorInfo, RunRequest, WorkerSetup, WorkerToMain } from './worker-client.js';

/**
 * Worker thread that owns one onnxruntime-node session. onnxruntime-node's session.run calls the
 * native Run synchronously on the JavaScript thread (it only defers it with setImmediate; see
 * node_modules/onnxruntime-node/dist/backend.js), so it runs here rather than on the main loop.
 */

const setup = workerData as WorkerSetup<OnnxEngineOptions>;
// onnxruntime prints its own coloured error line to stderr when an execution provider's library
// is missing; the engine reports that fallback itself, as one structured warn line.
ort.env.logLevel = 'fatal';
const port = parentPort!;
const send = (msg: WorkerToMain, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);

async function createSession(): Promise<{
  session: ort.InferenceSession;
  provider: string;
  fallbacks: Array<{ provider: string; reason: string }>;
}> {
  const known = new Map(ort.listSupportedBackends().map((b) => [b.name, b.bundled]));
  const fallbacks: Array<{ provider: string; reason: string }> = [];
  for (const provider of setup.options.executionProviders) {
    if (!known.has(provider)) {
      fallbacks.push({
        provider,
        reason: `not supported by this onnxruntime-node build (it knows ${[...known.keys()].join(', ')})`,
      });
      continue;
    }
    try {
      const session = await ort.InferenceSession.create(setup.modelPath, {
        executionProviders: [provider],
        intraOpNumThreads: setup.options.intraOpThreads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        // Warnings such as "some nodes were not assigned to the preferred provider" are normal.
        logSeverityLevel: 3,
      });
      return { session, provider, fallbacks };
    } catch (err) {
      const bundled = known.get(provider)
        ? ''
        : ' (not bundled with onnxruntime-node; its libraries must be installed separately)';
      fallbacks.push({ provider, reason: `${firstLine(errorMessage(err))}${bundled}` });
    }
  }
  const tried = fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ');
  throw new Error(`no execution provider could load the model (${tried})`);
}

/**
 * The first line, without onnxruntime's source location and failed assertion
 * ("/onnxruntime_src/...cc:136 ... was false. Failed to get a WebGPU adapter: ..."): the reason
 * is shown to operators in /readyz and the status page, who can act on the last part only.
 */
function firstLine(s: string): string {
  return s
    .split('\n')[0]!
    .trim()
    .replace(/^\/onnxruntime_src\/\S+ .*? was false\.\s*/, '');
}

function describe(meta: readonly ort.InferenceSession.ValueMetadata[]): ModelTensorInfo[] {
  return meta.map((m) =>
    m.isTensor
      ? { name: m.name, dtype: m.type, shape: [...m.shape] }
      : { name: m.name, dtype: 'non-tensor', shape: [] },
  );
}

async function main(): Promise<void> {
  let loaded: Awaited<ReturnType<typeof createSession>>;
  try {
    loaded = await createSession();
  } catch (err) {
    send({
      type: 'failed',
      code: 'VIGIL_ERR_MODEL_LOAD',
      message: `cannot load ONNX model ${setup.modelPath}: ${errorMessage(err)}`,
    });
    return;
  }
  const { session, provider, fallbacks } = loaded;
  const specs = new Map<string, TensorSpec>([...setup.inputs, ...setup.outputs].map((t) => [t.name, t]));
  send({
    type: 'ready',
    provider,
    fallbacks,
    notices: [],
    inputs: describe(session.inputMetadata),
    outputs: describe(session.outputMetadata),
  });

  port.on('message', (req: RunRequest) => {
    void run(session, specs, req);
  });
}

async function run(
  session: ort.InferenceSession,
  specs: Map<string, TensorSpec>,
  req: RunRequest,
): Promise<void> {
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of req.inputs) {
      const spec = specs.get(input.name)!;
      feeds[input.name] = new ort.Tensor(spec.dtype, toModelDtype(spec, input.data), spec.shape);
    }
    const results = await session.run(
      feeds,
      setup.outputs.map((o) => o.name),
    );
    const outputs = setup.outputs.map((spec) => {
      const value = results[spec.name]!;
      const data = toFloat32(spec, value.data as Float32Array | Int8Array | Uint8Array);
      // A float32 output may share memory with the session's tensor; copy before transferring.
      return { name: spec.name, data: data === value.data ? data.slice() : data };
    });
    send(
      { type: 'result', id: req.id, outputs },
      outputs.map((o) => o.data.buffer as ArrayBuffer),
    );
  } catch (err) {
    send({ type: 'runError', id: req.id, message: errorMessage(err) });
  }
}

void main();
