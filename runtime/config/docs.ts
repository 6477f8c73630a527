import { z } from 'zod';
import { VigilConfig } from './schema.js';

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  required?: string[];
  default?: unknown;
  description?: string;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
};

interface Row {
  key: string;
  type: string;
  required: boolean;
  default: string;
  description: string;
}

function typeOf(s: JsonSchema): string {
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((e) => `\`${String(e)}\``).join(' | ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'values'}`;
  if (
    s.type === 'object' &&
    s.additionalProperties &&
    typeof s.additionalProperties === 'object' &&
    !s.properties
  ) {
    return `map of ${typeOf(s.additionalProperties)}`;
  }
  let t = Array.isArray(s.type)
    ? s.type.join(' | ')
    : (s.type ?? (s.anyOf || s.oneOf ? 'one of the variants below' : 'any'));
  const range: string[] = [];
  if (s.minimum !== undefined) range.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) range.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER) range.push(`≤ ${s.maximum}`);
  if (range.length) t += ` (${range.join(', ')})`;
  return t;
}

function walk(s: JsonSchema, key: string, required: boolean, rows: Row[]): void {
  if (key) {
    rows.push({
      key,
      type: typeOf(s),
      required,
      default: s.default === undefined ? '' : `\`${JSON.stringify(s.default)}\``,
      description: s.description ?? '',
    });
  }
  const variants = s.oneOf ?? s.anyOf;
  if (variants) {
    for (const v of variants) {
      const tag = v.properties?.type?.const;
      walk(
        { ...v, description: v.description, default: undefined },
        tag ? `${key} (type: ${String(tag)})` : key,
        false,
        rows,
      );
    }
    return;
  }
  for (const [k, child] of Object.entries(s.properties ?? {})) {
    walk(child, key ? `${key}.${k}` : k, (s.required ?? []).includes(k), rows);
  }
  if (s.additionalProperties && typeof s.additionalProperties === 'object') {
    const child = s.additionalProperties;
    if (child.properties || child.oneOf || child.anyOf)
      walk({ ...child, default: undefined }, `${key}.<name>`, false, rows);
  }
  if (s.type === 'array' && s.items?.properties) walk(s.items, `${key}[]`, false, rows);
}

/** docs/CONFIG.md, generated from the one schema so that the reference cannot drift from it. */
export function configReferenceMarkdown(): string {
  const schema = z.toJSONSchema(VigilConfig, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const rows: Row[] = [];
  walk(schema, '', true, rows);
  const esc = (t: string) => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    '# Vigil configuration reference',
    '',
    'Generated from `runtime/config/schema.ts` by `vigil config docs`; do not edit by hand.',
    'One YAML file; unknown keys are errors. Relative paths are resolved against the config file.',
    'Check a file with `vigil config check FILE`; the JSON Schema is printed by `vigil config schema`.',
    '',
    '| key | type | required | default | description |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| \`${r.key}\` | ${esc(r.type)} | ${r.required ? 'yes' : ''} | ${esc(r.default)} | ${esc(r.description)} |`,
    ),
    '',
  ].join('\n');
}
