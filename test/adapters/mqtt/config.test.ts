import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MqttJsonSource, SparkplugSource } from '../../../runtime/config/sources/mqtt.js';

interface JsonSchema {
  description?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
}

/** Every setting below `schema` without a description, and every one that is a union of variants. */
function undocumented(schema: JsonSchema, key: string, out: string[]): string[] {
  if (key && !schema.description?.trim()) out.push(`${key}: no description`);
  if (key && (schema.anyOf || schema.oneOf)) out.push(`${key}: a union, documented as several rows`);
  for (const [k, child] of Object.entries(schema.properties ?? {})) undocumented(child, `${key}.${k}`, out);
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    undocumented(schema.additionalProperties, `${key}.<name>`, out);
  }
  if (schema.items) undocumented(schema.items, `${key}[]`, out);
  return out;
}

// docs/CONFIG.md is generated from these schemas: a field without a description is a blank cell there.
describe('MQTT source config schemas', () => {
  for (const [type, schema] of [
    ['mqtt-json', MqttJsonSource],
    ['sparkplug-b', SparkplugSource],
  ] as const) {
    it(`describes every field of ${type}, each as one row`, () => {
      const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
      expect(undocumented(json, type, [])).toEqual([]);
    });
  }

  it('takes a Sparkplug group id of one topic level, or + for every group', () => {
    const parse = (groupId: unknown) =>
      SparkplugSource.safeParse({ type: 'sparkplug-b', url: 'mqtt://broker:1883', groupId });
    expect(parse('+').data?.groupId).toBe('+');
    expect(parse('Plant 1').data?.groupId).toBe('Plant 1');
    expect(SparkplugSource.parse({ type: 'sparkplug-b', url: 'mqtt://broker:1883' }).groupId).toBe('+');
    for (const bad of ['', 'a/b', 'a+', '#', '++', 'plant#']) {
      const result = parse(bad);
      expect(result.success, bad).toBe(false);
      expect(result.error?.issues[0]?.path, bad).toEqual(['groupId']);
    }
  });
});
