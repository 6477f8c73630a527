import { readFileSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import mqtt, { type MqttClient } from 'mqtt';
import { ROOT, waitFor } from '../helpers/daemon.js';

/**
 * The payload contracts (docs/CONTRACTS.md) as the tests use them: every schema file of a
 * version in docs/schemas/<version>/, its index.json (topic -> schema), and two validators:
 *
 * - `lenient`: the files as shipped. They allow properties they do not list, so that a consumer
 *   built on v1 keeps working when Vigil adds a field;
 * - `strict`: the same files closed at every object (see strictCopy), so that a field Vigil
 *   publishes without documenting it fails the tests.
 */

// ajv-formats is CommonJS with its plugin as module.exports (and a `default` copy for TS).
const addFormats = addFormatsPlugin as unknown as typeof addFormatsPlugin.default;

export const SCHEMAS_DIR = path.join(ROOT, 'docs/schemas');

export interface IndexEntry {
  /** Topic filter below `<prefix>/<device>/` in MQTT syntax (`+` matches one level). */
  topic: string;
  /** Schema file in the same folder. */
  file: string;
  /** The value of the message's `schema` field. */
  schemaId: string;
  qos: 0 | 1;
  retained: boolean;
  /** Which broker: the local alert broker (`mqtt`) or the upstream broker (`upstream`). */
  broker: 'mqtt' | 'upstream';
  description: string;
}

export interface SchemaIndex {
  version: string;
  topicRoot: string;
  messages: IndexEntry[];
}

export type JsonSchema = boolean | { [k: string]: unknown };

export interface Contracts {
  version: string;
  index: SchemaIndex;
  /** Schema file name -> parsed schema, as shipped. */
  files: Map<string, Record<string, unknown>>;
  /** The index entry for a topic (the first that matches), undefined when none does. */
  entryFor(topic: string): IndexEntry | undefined;
  /**
   * Validates a payload against a schema file; returns readable error lines (empty: valid).
   * strict (the default) uses the closed copy.
   */
  errors(file: string, payload: unknown, strict?: boolean): string[];
}

/** Splits a topic into the levels below `<prefix>/<device>/` that an index filter of `n` levels covers. */
function matches(filter: string, topic: string): boolean {
  const want = filter.split('/');
  const have = topic.split('/');
  // At least one prefix level and the device level before the filter's levels.
  if (have.length < want.length + 2) return false;
  const tail = have.slice(have.length - want.length);
  return want.every((level, i) => level === '+' || level === tail[i]);
}

/**
 * A copy of a schema that refuses any property it does not describe: every subschema in a value
 * position (the root, a property's schema, `items`, `additionalProperties`, `$defs` members used as
 * values through `$ref`...) gets `unevaluatedProperties: false` unless it says what to do with
 * other properties already (an explicit `additionalProperties: true` marks a diagnostic object
 * whose fields are described but not frozen). `unevaluatedProperties` rather than `additionalProperties`, because
 * the alert schemas compose their fields (`allOf` of the common alert fields and the kind's own),
 * and `additionalProperties` would not see through the composition. The parts of a composition
 * (`allOf`/`anyOf`/`oneOf` members, `if`/`then`/`else`, `$defs` entries) stay open: the value that
 * composes them closes the whole.
 */
export function strictCopy(schema: JsonSchema): JsonSchema {
  return close(structuredClone(schema), true);
}

const VALUE_MAPS = ['properties', 'patternProperties', 'dependentSchemas'] as const;
const VALUE_SINGLES = ['items', 'additionalProperties', 'contains'] as const;
const PART_LISTS = ['allOf', 'anyOf', 'oneOf', 'prefixItems'] as const;
// `if` and `not` are left as they are: closing them would change what they test, not what passes.
const PART_SINGLES = ['then', 'else'] as const;

function close(schema: JsonSchema, valuePosition: boolean): JsonSchema {
  if (typeof schema !== 'object' || schema === null) return schema;
  const s = schema;
  for (const key of VALUE_MAPS) {
    const map = s[key] as Record<string, JsonSchema> | undefined;
    if (map) for (const name of Object.keys(map)) map[name] = close(map[name]!, true);
  }
  for (const key of VALUE_SINGLES) if (s[key] !== undefined) s[key] = close(s[key] as JsonSchema, true);
  for (const key of PART_LISTS) {
    const list = s[key] as JsonSchema[] | undefined;
    // prefixItems are values; the others are parts of this value.
    if (list) s[key] = list.map((x) => close(x, key === 'prefixItems'));
  }
  for (const key of PART_SINGLES) if (s[key] !== undefined) s[key] = close(s[key] as JsonSchema, false);
  const defs = s.$defs as Record<string, JsonSchema> | undefined;
  if (defs) for (const name of Object.keys(defs)) defs[name] = close(defs[name]!, false);
  const describesObject =
    s.type === 'object' ||
    (Array.isArray(s.type) && s.type.includes('object')) ||
    s.properties !== undefined ||
    s.$ref !== undefined ||
    s.allOf !== undefined ||
    s.anyOf !== undefined ||
    s.oneOf !== undefined ||
    s.then !== undefined ||
    s.else !== undefined;
  if (
    valuePosition &&
    describesObject &&
    s.additionalProperties === undefined &&
    s.unevaluatedProperties === undefined
  )
    s.unevaluatedProperties = false;
  return s;
}

function formatErrors(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const where = e.instancePath === '' ? '(the message)' : e.instancePath;
    const extra =
      e.keyword === 'unevaluatedProperties' || e.keyword === 'additionalProperties'
        ? ` '${String((e.params as { unevaluatedProperty?: string; additionalProperty?: string }).unevaluatedProperty ?? (e.params as { additionalProperty?: string }).additionalProperty)}'`
        : '';
    return `${where} ${e.message ?? e.keyword}${extra} (${e.schemaPath})`;
  });
}

function newAjv(forStrictCopy: boolean): Ajv2020 {
  // Strict about the shipped schemas, so that they load without a warning in a consumer's Ajv
  // with its defaults: an unknown keyword, a keyword without its type, a union type throw here.
  // strictRequired is off (`required` names properties that a composed part defines), and
  // strictTypes for the test's closed copy, which puts unevaluatedProperties next to every $ref
  // without knowing whether it points at an object.
  const ajv = new Ajv2020({
    allErrors: true,
    strict: true,
    strictRequired: false,
    strictTypes: !forStrictCopy,
  });
  addFormats(ajv);
  return ajv;
}

/**
 * The newest folder of a major version: v1, or v1.2 once compatible additions have been released
 * as v1.1 and v1.2 (docs/CONTRACTS.md, versioning). Messages name the major only (vigil.alert.v1).
 */
export function currentVersion(major = 'v1'): string {
  const minors = readdirSync(SCHEMAS_DIR)
    .map((name) => new RegExp(`^${major}(?:\\.(\\d+))?$`).exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[0], minor: Number(m[1] ?? 0) }))
    .sort((a, b) => b.minor - a.minor);
  if (minors.length === 0) throw new Error(`no folder docs/schemas/${major}`);
  return minors[0]!.name;
}

/** Loads docs/schemas/<version>/ (by default the newest v1.x): every *.schema.json and index.json. */
export function loadContracts(version = currentVersion('v1')): Contracts {
  const dir = path.join(SCHEMAS_DIR, version);
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as SchemaIndex;
  const files = new Map<string, Record<string, unknown>>();
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.schema.json')) continue;
    files.set(name, JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as Record<string, unknown>);
  }
  const lenient = newAjv(false);
  const strict = newAjv(true);
  for (const schema of files.values()) {
    lenient.addSchema(schema);
    strict.addSchema(strictCopy(schema) as Record<string, unknown>);
  }
  const compiled = new Map<string, ValidateFunction>();
  const validator = (file: string, isStrict: boolean): ValidateFunction => {
    const key = `${isStrict ? 'strict' : 'lenient'}:${file}`;
    let v = compiled.get(key);
    if (!v) {
      const schema = files.get(file);
      if (!schema) throw new Error(`no schema file ${file} in docs/schemas/${version}`);
      v = (isStrict ? strict : lenient).getSchema(schema.$id as string);
      if (!v) throw new Error(`schema ${file} did not compile`);
      compiled.set(key, v);
    }
    return v;
  };
  return {
    version,
    index,
    files,
    entryFor: (topic) => index.messages.find((m) => matches(m.topic, topic)),
    errors(file, payload, isStrict = true) {
      const v = validator(file, isStrict);
      return v(payload) ? [] : formatErrors(v.errors);
    },
  };
}

/** One received message, checked against the schema its topic maps to. */
export interface Checked {
  topic: string;
  payload: unknown;
  retained: boolean;
  entry: IndexEntry | undefined;
  errors: string[];
}

export function check(contracts: Contracts, topic: string, payload: unknown, retained = false): Checked {
  const entry = contracts.entryFor(topic);
  const errors = entry
    ? contracts.errors(entry.file, payload)
    : [`no schema in docs/schemas/${contracts.version}/index.json covers the topic ${topic}`];
  return { topic, payload, retained, entry, errors };
}

/** A readable list of the messages that broke their contract, for a failing assertion. */
export function describeFailures(checked: readonly Checked[]): string {
  return checked
    .filter((c) => c.errors.length > 0)
    .slice(0, 10)
    .map(
      (c) =>
        `${c.topic} (${c.entry?.file ?? 'no schema'}):\n  ${c.errors.join('\n  ')}\n  payload: ${JSON.stringify(c.payload).slice(0, 2000)}`,
    )
    .join('\n');
}

/** One message a test subscriber received. */
export interface Seen {
  broker: 'mqtt' | 'upstream';
  topic: string;
  payload: unknown;
  retained: boolean;
  /** When the subscriber got it (ms since the epoch). */
  at: number;
}

/**
 * Everything a plain mqtt.js subscriber receives on `vigil/#` of one or more real brokers, kept in
 * order of arrival, for checking against the contracts.
 */
export class MessageLog {
  readonly seen: Seen[] = [];
  private readonly clients: MqttClient[] = [];

  async subscribe(url: string, broker: Seen['broker'], clientId: string, filter = 'vigil/#'): Promise<void> {
    const client = await mqtt.connectAsync(url, { clientId });
    this.clients.push(client);
    client.on('message', (topic, payload, packet) => {
      let json: unknown;
      try {
        json = JSON.parse(payload.toString());
      } catch {
        json = { notJson: payload.toString() };
      }
      this.seen.push({ broker, topic, payload: json, retained: packet.retain, at: Date.now() });
    });
    await client.subscribeAsync(filter, { qos: 1 });
  }

  /** The first message (at or after index `from`) that matches, waiting up to timeoutMs for it. */
  waitFor(what: string, predicate: (m: Seen) => boolean, timeoutMs = 60_000, from = 0): Promise<Seen> {
    return waitFor(what, () => this.seen.slice(from).find(predicate), timeoutMs).catch((err: Error) => {
      const topics = [...new Set(this.seen.map((m) => m.topic))].join(', ');
      throw new Error(`${err.message}; topics seen: ${topics || 'none'}`);
    });
  }

  /** Checks every message against the schema of its topic; keeps them in test-artifacts/contracts/<name>.json. */
  async checkAll(contracts: Contracts, name: string): Promise<Checked[]> {
    await mkdir(ARTIFACTS, { recursive: true });
    await writeFile(path.join(ARTIFACTS, `${name}.json`), JSON.stringify(this.seen, null, 1) + '\n');
    return this.seen.map((m) => check(contracts, m.topic, m.payload, m.retained));
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.endAsync(true)));
  }
}

/** Where the contract tests keep the messages they received (git-ignored): docs/CONTRACTS.md's examples come from them. */
export const ARTIFACTS = path.join(ROOT, 'test-artifacts/contracts');

/** A field of a message's payload. */
export const field = (m: Seen, name: string): unknown => (m.payload as Record<string, unknown>)[name];

let shared: Contracts | undefined;

/**
 * For tests elsewhere that receive messages of their own (drift, rollout): the strict contract
 * errors of one message on its topic (empty: it matches), with the newest v1 schemas.
 */
export function contractErrors(topic: string, payload: unknown): string[] {
  shared ??= loadContracts();
  return check(shared, topic, payload).errors;
}

/** Keeps messages a test received in test-artifacts/contracts/<name>.json (docs/CONTRACTS.md's examples). */
export async function keepMessages(
  name: string,
  messages: ReadonlyArray<{ topic: string; payload: unknown }>,
) {
  await mkdir(ARTIFACTS, { recursive: true });
  await writeFile(path.join(ARTIFACTS, `${name}.json`), JSON.stringify(messages, null, 1) + '\n');
}
