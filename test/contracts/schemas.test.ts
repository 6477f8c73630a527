import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildMessage, upstreamTopic } from '../../runtime/forward/envelope.js';
import { MESSAGE_SCHEMAS, withSchema } from '../../runtime/publish/schemas.js';
import { topicsFor } from '../../runtime/publish/topics.js';
import type { RolloutEvent } from '../../runtime/rollout/types.js';
import { ROOT } from '../helpers/daemon.js';
import { SUMS_FILE, lockProblems, parseSums, releasedVersions } from './lock.js';
import { SCHEMAS_DIR, check, loadContracts, strictCopy } from './support.js';

// The contract files themselves, without a broker: they compile, the index covers every topic the
// publisher builds, the examples in docs/CONTRACTS.md (real messages) match, the validator does
// fail on a broken message, and released versions stay as released.

const v1 = loadContracts('v1');
const current = loadContracts();
const BASE = 'https://vigil.invalid/schemas/';

/** The examples of docs/CONTRACTS.md: `<!-- example: <topic below prefix/device> -->` then a json block. */
function examples(): Array<{ topic: string; payload: Record<string, unknown> }> {
  const text = readFileSync(path.join(ROOT, 'docs/CONTRACTS.md'), 'utf8');
  return [...text.matchAll(/<!-- example: (\S+) -->\s*```json\n([\s\S]*?)```/g)].map((m) => ({
    topic: `vigil/gw-1/${m[1]!}`,
    payload: JSON.parse(m[2]!) as Record<string, unknown>,
  }));
}

function example(topicSuffix: string, predicate: (p: Record<string, unknown>) => boolean = () => true) {
  const found = examples().find((e) => e.topic.endsWith(`/${topicSuffix}`) && predicate(e.payload));
  if (!found) throw new Error(`docs/CONTRACTS.md has no example for ${topicSuffix}`);
  return structuredClone(found);
}

const strictErrors = (topic: string, payload: unknown) => check(current, topic, payload).errors;
const lenientErrors = (topic: string, payload: unknown) =>
  current.errors(current.entryFor(topic)!.file, payload, false);

describe('the schema files (docs/schemas/v1)', () => {
  it('are JSON Schema 2020-12 with an $id naming their folder and file, and compile as shipped and strict', () => {
    expect([...v1.files.keys()].length).toBeGreaterThanOrEqual(10);
    for (const [file, schema] of v1.files) {
      expect(schema.$schema, file).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(schema.$id, file).toBe(`${BASE}v1/${file}`);
      expect(typeof schema.description, file).toBe('string');
      // Compiles both ways (an unknown keyword or a dangling $ref throws here).
      expect(() => v1.errors(file, {}, false)).not.toThrow();
      expect(() => v1.errors(file, {}, true)).not.toThrow();
      // The shipped files stay open for consumers; only the test copy is closed.
      expect(JSON.stringify(schema)).not.toContain('"unevaluatedProperties":false');
      expect(JSON.stringify(strictCopy(schema))).toContain('"unevaluatedProperties":false');
    }
  });

  it('index.json maps every topic the publisher builds to a schema that stamps the same id', () => {
    for (const prefix of ['vigil', 'plant/line-3']) {
      const t = topicsFor(prefix, 'gw-1');
      const cases: Array<[string, string]> = [
        [t.alert('defect'), 'alert.defect.schema.json'],
        [t.alert('failure_risk'), 'alert.telemetry.schema.json'],
        [t.alert('anomaly'), 'alert.telemetry.schema.json'],
        [t.alert('drift'), 'alert.drift.schema.json'],
        [t.alert('data_quality'), 'alert.data_quality.schema.json'],
        [t.alert('leak'), 'alert.schema.json'],
        [t.status, 'status.schema.json'],
        [t.result('line1'), 'result.schema.json'],
        [t.rollout('defect'), 'rollout.schema.json'],
        [upstreamTopic(prefix, 'gw-1', 'readings'), 'upstream.schema.json'],
      ];
      for (const [topic, file] of cases) expect(current.entryFor(topic)?.file, topic).toBe(file);
    }
    expect(current.entryFor('vigil/gw-1/something/else')).toBeUndefined();
    const ids = new Set<string>(Object.values(MESSAGE_SCHEMAS));
    for (const entry of current.index.messages) {
      expect(current.files.has(entry.file), entry.file).toBe(true);
      expect(ids.has(entry.schemaId), entry.schemaId).toBe(true);
      expect(JSON.stringify(current.files.get(entry.file)), entry.file).toContain(
        `"const":"${entry.schemaId}"`,
      );
    }
    for (const id of ids)
      expect(
        current.index.messages.some((m) => m.schemaId === id),
        id,
      ).toBe(true);
  });

  it('the upstream envelope and the rollout events carry the ids the index names', () => {
    const message = buildMessage('gw-1', 'store-1', 'readings', [
      {
        seq: 1,
        at: 0,
        item: {
          id: 'store-1/1',
          seq: 1,
          source: 's',
          asset: 'a',
          tag: 't',
          value: 1,
          quality: 'good',
          sourceTime: null,
          receivedAt: 1,
        },
      },
    ]);
    expect(message.schema).toBe(MESSAGE_SCHEMAS.upstream);
    expect(strictErrors('vigil/gw-1/upstream/readings', message)).toEqual([]);
    // A type-level check: the controller's literal is the publisher's id.
    const rolloutId: RolloutEvent['schema'] = MESSAGE_SCHEMAS.rollout;
    expect(rolloutId).toBe('vigil.rollout.v1');
  });
});

describe('withSchema (how the publisher stamps a message)', () => {
  it('puts the schema id first and keeps every field as JSON.stringify writes it', () => {
    const alert = { id: 'a', score: 0.5, model: { name: 'm' }, gone: undefined };
    const text = withSchema(MESSAGE_SCHEMAS.alert, alert);
    expect(text.startsWith('{"schema":"vigil.alert.v1",')).toBe(true);
    expect(JSON.parse(text)).toEqual({ schema: 'vigil.alert.v1', id: 'a', score: 0.5, model: { name: 'm' } });
    expect(JSON.parse(withSchema(MESSAGE_SCHEMAS.result, {}))).toEqual({ schema: 'vigil.result.v1' });
  });
});

describe('the examples in docs/CONTRACTS.md (messages from real runs)', () => {
  it('each matches the schema of its topic, strict, and together they cover every message schema', () => {
    const all = examples();
    const covered = new Set<string>();
    for (const e of all) {
      expect(strictErrors(e.topic, e.payload), e.topic).toEqual([]);
      covered.add(current.entryFor(e.topic)!.file);
    }
    const needed = new Set(current.index.messages.map((m) => m.file));
    // alert.schema.json is the dispatcher for other kinds; its parts have examples of their own.
    needed.delete('alert.schema.json');
    expect([...needed].filter((f) => !covered.has(f))).toEqual([]);
  });
});

describe('the validator fails on a message that breaks its contract', () => {
  it('a missing required field fails, as shipped and strict', () => {
    const cases: Array<[string, string, (p: Record<string, unknown>) => void]> = [
      ['alerts/defect', 'id', (p) => delete p.id],
      ['alerts/failure_risk', 'asset', (p) => delete p.asset],
      ['alerts/drift', 'drift', (p) => delete p.drift],
      ['alerts/data_quality', 'rule', (p) => delete (p.dataQuality as Record<string, unknown>).rule],
      ['results/inspection', 'stages', (p) => delete p.stages],
      ['status', 'device', (p) => delete p.device],
      ['rollout/defect', 'at', (p) => delete p.at],
      ['upstream/readings', 'store', (p) => delete p.store],
      ['alerts/defect', 'schema', (p) => delete p.schema],
    ];
    for (const [suffix, name, mutate] of cases) {
      const e = example(suffix);
      expect(strictErrors(e.topic, e.payload), `${suffix} as is`).toEqual([]);
      mutate(e.payload);
      const errors = strictErrors(e.topic, e.payload);
      expect(errors.join('\n'), `${suffix} without ${name}`).toContain(
        `must have required property '${name}'`,
      );
      expect(lenientErrors(e.topic, e.payload), `${suffix} without ${name}, as shipped`).not.toEqual([]);
    }
  });

  it('an undocumented field passes the shipped schema but fails the strict copy, at any depth', () => {
    const cases: Array<[string, string, (p: Record<string, unknown>) => void]> = [
      ['alerts/defect', 'colour', (p) => (p.colour = 'red')],
      ['alerts/defect', 'gpu', (p) => ((p.model as Record<string, unknown>).gpu = 'none')],
      ['alerts/failure_risk', 'confidence', (p) => ((p.details as Record<string, unknown>).confidence = 1)],
      [
        'alerts/drift',
        'psi',
        (p) => ((p.drift as { features: Array<Record<string, unknown>> }).features[0]!.psi = 1),
      ],
      ['alerts/data_quality', 'rows', (p) => ((p.dataQuality as Record<string, unknown>).rows = 2)],
      ['results/engines', 'gpuMs', (p) => ((p.stages as Record<string, unknown>).gpuMs = 1)],
      ['status', 'uptime', (p) => (p.uptime = 5)],
      ['status', 'port', (p) => ((p.mqtt as Record<string, unknown>).port = 1883)],
      ['rollout/defect', 'operator', (p) => (p.operator = 'me')],
      ['upstream/readings', 'unit', (p) => ((p.items as Array<Record<string, unknown>>)[0]!.unit = 'bar')],
      ['upstream/alerts', 'schema', (p) => ((p.items as Array<Record<string, unknown>>)[0]!.schema = 'x')],
    ];
    for (const [suffix, name, mutate] of cases) {
      const e = example(suffix);
      mutate(e.payload);
      expect(lenientErrors(e.topic, e.payload), `${suffix} + ${name}, as shipped`).toEqual([]);
      expect(strictErrors(e.topic, e.payload).join('\n'), `${suffix} + ${name}, strict`).toContain(
        `unevaluated properties '${name}'`,
      );
    }
  });

  it('wrong types, values and shapes fail', () => {
    const cases: Array<[string, string, (p: Record<string, unknown>) => void]> = [
      ['alerts/defect', 'score as text', (p) => (p.score = '0.9')],
      ['alerts/defect', 'an unknown severity', (p) => (p.severity = 'urgent')],
      ['alerts/defect', 'a timestamp that is not a date', (p) => (p.timestamp = 'yesterday')],
      ['alerts/defect', 'an id that is not a UUID', (p) => (p.id = '42')],
      ['alerts/defect', 'another schema id', (p) => (p.schema = 'vigil.alert.v2')],
      ['alerts/defect', 'a short sha256', (p) => (p.payloadSha256 = 'abc')],
      ['alerts/drift', 'another kind on the drift topic', (p) => (p.kind = 'defect')],
      ['results/inspection', 'a probability above 1', (p) => (p.confidence = 1.5)],
      [
        'results/engines',
        'an alert state in a result',
        (p) => ((p.details as Record<string, unknown>).state = 'raised'),
      ],
      ['status', 'an unknown state', (p) => (p.state = 'sleeping')],
      ['rollout/defect', 'an unknown rollout state', (p) => (p.state = 'paused')],
      ['upstream/readings', 'an alert among readings', (p) => (p.items = [example('alerts/defect').payload])],
      ['upstream/readings', 'no items', (p) => (p.items = [])],
    ];
    for (const [suffix, what, mutate] of cases) {
      const e = example(suffix);
      mutate(e.payload);
      expect(strictErrors(e.topic, e.payload), `${suffix}: ${what}`).not.toEqual([]);
    }
  });

  it('an alert of another kind is checked by its shape; diagnostic statistics may grow', () => {
    // A custom model's alertKind with telemetry details: checked as a telemetry alert.
    const custom = example('alerts/failure_risk');
    custom.payload.kind = 'leak';
    expect(strictErrors('vigil/gw-1/alerts/leak', custom.payload)).toEqual([]);
    delete custom.payload.asset;
    expect(strictErrors('vigil/gw-1/alerts/leak', custom.payload).join('\n')).toContain("'asset'");
    // The counters under status.pipelines.<name> are a diagnostic snapshot (explicitly open).
    const status = example('status', (p) => p.state === 'online');
    const [first] = Object.values(status.payload.pipelines as Record<string, Record<string, unknown>>);
    first!.newCounter = 3;
    expect(strictErrors(status.topic, status.payload)).toEqual([]);
  });
});

describe('released versions are frozen (docs/schemas/SHA256SUMS)', () => {
  const sums = parseSums(readFileSync(path.join(SCHEMAS_DIR, SUMS_FILE), 'utf8'));

  it('every file of a released version is byte for byte as released', () => {
    expect(releasedVersions(sums)).toContain('v1');
    expect(lockProblems(SCHEMAS_DIR, sums)).toEqual([]);
  });

  it('a changed, removed or added file in a released folder is reported with what to do instead', () => {
    const copy = mkdtempSync(path.join(os.tmpdir(), 'vigil-schemas-'));
    try {
      cpSync(SCHEMAS_DIR, copy, { recursive: true });
      const status = path.join(copy, 'v1/status.schema.json');
      writeFileSync(status, readFileSync(status, 'utf8').replace('"online"', '"up"'));
      unlinkSync(path.join(copy, 'v1/rollout.schema.json'));
      writeFileSync(path.join(copy, 'v1/alert.leak.schema.json'), '{}\n');
      // A draft folder (not in the list) may change freely.
      cpSync(path.join(copy, 'v1'), path.join(copy, 'v2'), { recursive: true });
      const problems = lockProblems(copy, sums);
      expect(problems).toHaveLength(3);
      expect(problems).toContain(
        'docs/schemas/v1/status.schema.json changed: v1 is released and frozen. Put the change in a new ' +
          'version folder (v1.<n> for a compatible addition, v2 for a breaking change) and document it in ' +
          'docs/CONTRACTS.md ("Versioning").',
      );
      expect(problems.join('\n')).toContain(
        'docs/schemas/v1/rollout.schema.json was removed: v1 is released',
      );
      expect(problems.join('\n')).toContain(
        'docs/schemas/v1/alert.leak.schema.json was added: v1 is released',
      );
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
