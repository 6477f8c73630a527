import type { Issue } from '../errors.js';
import type { Manifest } from '../model/manifest.js';

/**
 * Whether a manifest's acceptance section fits its model: a holdout of the model's kind, listed
 * in files (so that its sha256 is checked like the model's), checks that mean something for the
 * model (a brightness change for an image model, a shuffled tag the telemetry model reads), and
 * metrics its output has. Part of checkManifestConsistency: a package whose tests cannot run is
 * refused when it loads, not when its tests are due.
 */
export function checkAcceptance(m: Manifest): Issue[] {
  const a = m.acceptance;
  if (!a) return [];
  const issues: Issue[] = [];
  const at = (p: string, message: string) => issues.push({ path: `acceptance.${p}`, message });
  const image = m.preprocessing.type === 'image';
  const post = m.postprocessing;

  const h = a.holdout;
  if (h.format === 'images' && !image)
    at('holdout.format', "'images' needs an image model; a telemetry model's holdout is format 'telemetry'");
  if (h.format === 'telemetry' && image)
    at('holdout.format', "'telemetry' needs a telemetry model; an image model's holdout is format 'images'");
  const file = h.format === 'images' ? h.labels : h.file;
  if (!Object.hasOwn(m.files, file))
    at(
      h.format === 'images' ? 'holdout.labels' : 'holdout.file',
      `'${file}' is not listed in files, so its sha256 cannot be checked; list it (and every holdout frame) with its sha256`,
    );

  const c = a.checks;
  const tags = m.preprocessing.type === 'telemetry' ? m.preprocessing.tags : [];
  const o = c.outputs;
  if (o?.probabilities !== undefined && post.type !== 'classification' && post.type !== 'failure_probability')
    at(
      'checks.outputs.probabilities',
      `a ${post.type} output is not a probability distribution; use range for it`,
    );
  if (o?.probabilities !== undefined && post.type === 'failure_probability') {
    // One value (p(fail) alone) is a probability but no distribution: it never sums to 1.
    const spec = m.outputs.find((out) => out.name === post.output);
    const last = spec ? (spec.shape.at(-1) ?? 1) : undefined;
    if (last === 1)
      at(
        'checks.outputs.probabilities',
        `'${post.output}' holds one value (shape [${spec!.shape.join(', ')}]), the failure probability alone, and one value never sums to 1; declare "range": { "min": 0, "max": 1 } instead`,
      );
  }
  c.invariance?.forEach((inv, i) => {
    if ((inv.kind === 'brightness' || inv.kind === 'shift') && !image)
      at(
        `checks.invariance.${i}.kind`,
        `'${inv.kind}' changes an image; this is a telemetry model (use shuffle)`,
      );
    if (inv.kind === 'shuffle') {
      if (image) at(`checks.invariance.${i}.kind`, "'shuffle' permutes a tag; this is an image model");
      else if (!tags.includes(inv.tag))
        at(`checks.invariance.${i}.tag`, `'${inv.tag}' is not one of the model's tags (${tags.join(', ')})`);
    }
  });
  c.monotonic?.forEach((mono, i) => {
    if (image) at(`checks.monotonic.${i}`, 'monotonic relations raise a tag; this is an image model');
    else if (!tags.includes(mono.tag))
      at(`checks.monotonic.${i}.tag`, `'${mono.tag}' is not one of the model's tags (${tags.join(', ')})`);
  });
  for (const key of Object.keys(c.maxMetrics ?? {}))
    if (post.type !== 'rul')
      at(
        `checks.maxMetrics.${key}`,
        `${key} measures a regression; a ${post.type} model has none (use minMetrics)`,
      );
  return issues;
}
