import type { Manifest } from '../model/manifest.js';

/**
 * Whether a new version can replace the current one under running pipelines and be compared with
 * it on the same inputs: the same kind of model, the same input tensor cut from the data the same
 * way, and outputs that mean the same things. Normalisation may differ (a retrained model brings
 * new statistics): adaptInput() maps one normalisation onto the other exactly.
 *
 * Returns why not, in words for the log and the rollout event, or undefined when it can.
 */
export function incompatibility(current: Manifest, next: Manifest): string | undefined {
  const a = current.preprocessing;
  const b = next.preprocessing;
  if (a.type !== b.type)
    return `it is ${article(b.type)} ${b.type} model and the pipelines run ${article(a.type)} ${a.type} model`;
  const ia = current.inputs[0]!;
  const ib = next.inputs[0]!;
  if (!sameList(ia.shape, ib.shape))
    return `its input has shape [${ib.shape.join(', ')}], the current version's [${ia.shape.join(', ')}]`;
  if ((ia.layout ?? '') !== (ib.layout ?? ''))
    return `its input layout is ${ib.layout ?? 'unset'}, the current version's ${ia.layout ?? 'unset'}`;
  if (a.type === 'image' && b.type === 'image') {
    for (const key of ['width', 'height', 'colorSpace', 'resize'] as const) {
      if (a[key] !== b[key]) return `its preprocessing ${key} is ${b[key]}, the current version's ${a[key]}`;
    }
  } else if (a.type === 'telemetry' && b.type === 'telemetry') {
    if (!sameList(a.tags, b.tags))
      return `it reads tags [${b.tags.join(', ')}], the current version [${a.tags.join(', ')}]`;
    for (const key of ['window', 'stride', 'holdSteps', 'features'] as const) {
      if (a[key] !== b[key]) return `its preprocessing ${key} is ${b[key]}, the current version's ${a[key]}`;
    }
    if (JSON.stringify(a.axis) !== JSON.stringify(b.axis))
      return `its axis is ${JSON.stringify(b.axis)}, the current version's ${JSON.stringify(a.axis)}`;
  }
  const pa = current.postprocessing;
  const pb = next.postprocessing;
  if (pa.type !== pb.type) return `its output is ${pb.type}, the current version's ${pa.type}`;
  if (pa.type === 'classification' && pb.type === 'classification') {
    if (!sameList([...pa.labels].sort(), [...pb.labels].sort()))
      return `its labels are [${pb.labels.join(', ')}], the current version's [${pa.labels.join(', ')}]`;
    if (pa.okLabel !== pb.okLabel) return `its okLabel is ${pb.okLabel}, the current version's ${pa.okLabel}`;
  } else if ('unit' in pa && 'unit' in pb && pa.unit !== pb.unit) {
    return `its output is in ${pb.unit}, the current version's in ${pa.unit}`;
  }
  return undefined;
}

/**
 * The input `data`, preprocessed for `from`, as `to` expects it. Both normalise as
 * (x - mean) / std per channel (images) or per tag (telemetry), so x = v * std + mean recovers
 * the raw value exactly; for summary features the per-tag statistics move the same way (mean,
 * min, max and last affinely, std and slope by the scale alone). Returns `data` itself when
 * nothing differs. Call only for manifests incompatibility() accepts.
 */
export function adaptInput(from: Manifest, to: Manifest, data: Float32Array): Float32Array {
  const a = from.preprocessing.normalize;
  const b = to.preprocessing.normalize;
  if (sameList(a.mean, b.mean) && sameList(a.std, b.std)) return data;
  const at = (list: number[], i: number) => list[list.length === 1 ? 0 : i] ?? list[0]!;
  // Per channel (or tag) c: v_to = v_from * scale[c] + shift[c].
  const channels = Math.max(a.mean.length, b.mean.length, a.std.length, b.std.length);
  const scale = new Float64Array(channels);
  const shift = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    scale[c] = at(a.std, c) / at(b.std, c);
    shift[c] = (at(a.mean, c) - at(b.mean, c)) / at(b.std, c);
  }
  const out = new Float32Array(data.length);
  const p = from.preprocessing;
  const channelOf = channelIndex(from, channels);
  const summary = p.type === 'telemetry' && p.features === 'summary';
  for (let i = 0; i < data.length; i++) {
    const c = channelOf(i);
    // Summary features come 6 per tag: mean, std, min, max, last, slope; std and slope do not shift.
    const stat = summary ? i % 6 : 0;
    const scaleOnly = summary && (stat === 1 || stat === 5);
    out[i] = data[i]! * scale[c]! + (scaleOnly ? 0 : shift[c]!);
  }
  return out;
}

/** Which normalisation channel the i-th value of the input belongs to. */
function channelIndex(m: Manifest, channels: number): (i: number) => number {
  if (channels === 1) return () => 0;
  const p = m.preprocessing;
  if (p.type === 'telemetry') {
    const tags = p.tags.length;
    return p.features === 'summary' ? (i) => Math.floor(i / 6) % tags : (i) => i % tags;
  }
  const input = m.inputs[0]!;
  if (input.layout === 'NCHW') {
    const plane = p.width * p.height;
    return (i) => Math.floor(i / plane) % channels;
  }
  return (i) => i % channels;
}

/**
 * What one unit of score means, for comparing mean scores of two versions: scores of image
 * models and failure probabilities are 0..1, a RUL is compared as a share of its cap, an anomaly
 * score as it is.
 */
export function scoreScale(m: Manifest): number {
  const p = m.postprocessing;
  return p.type === 'rul' ? p.cap : 1;
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}
