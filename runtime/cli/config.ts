import { z } from 'zod';
import { loadConfigFile, resolvePath } from '../config/load.js';
import { VigilConfig } from '../config/schema.js';
import { configReferenceMarkdown } from '../config/docs.js';
import { ConfigError, VigilError, errorMessage } from '../errors.js';
import { loadModelPackage } from '../model/package.js';
import { plainTextSecrets } from '../config/secrets.js';
import { expectationTagWarnings } from '../quality/tag-names.js';

/**
 * `vigil config check FILE`: the schema first (every problem as `path: message`), then what the
 * config points at (model packages exist and verify). Exit 0 when all is well, 2 otherwise.
 */
export async function configCheckCommand(file: string): Promise<void> {
  let loaded;
  try {
    loaded = await loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const i of err.issues) console.error(`${i.path}: ${i.message}`);
      console.error(`${file}: ${err.issues.length} problem${err.issues.length === 1 ? '' : 's'}`);
    } else console.error(errorMessage(err));
    process.exitCode = 2;
    return;
  }
  // Warnings, not problems: a literal password works, it is only worse kept.
  for (const w of plainTextSecrets(loaded.config)) console.error(`warning: ${w.path}: ${w.message}`);
  for (const w of expectationTagWarnings(loaded.config.sources))
    console.error(`warning: ${w.path}: ${w.message}`);
  const problems: string[] = [];
  for (const [name, m] of Object.entries(loaded.config.models)) {
    try {
      await loadModelPackage(resolvePath(loaded, m.package));
    } catch (err) {
      const msg = err instanceof VigilError ? err.message.replace(/\n/g, '\n  ') : errorMessage(err);
      problems.push(`models.${name}.package: ${msg}`);
    }
  }
  if (problems.length > 0) {
    for (const p of problems) console.error(p);
    console.error(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
    process.exitCode = 2;
    return;
  }
  console.log(
    `${file}: OK (${Object.keys(loaded.config.pipelines).length} pipelines, ${Object.keys(loaded.config.sources).length} sources, ${Object.keys(loaded.config.models).length} models)`,
  );
}

export function configSchemaCommand(): void {
  console.log(JSON.stringify(z.toJSONSchema(VigilConfig, { io: 'input', unrepresentable: 'any' }), null, 2));
}

export function configDocsCommand(): void {
  process.stdout.write(configReferenceMarkdown());
}
