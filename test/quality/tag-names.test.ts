import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { VigilConfig } from '../../runtime/config/schema.js';
import { expectationTagWarnings } from '../../runtime/quality/tag-names.js';
import { ROOT } from '../helpers/daemon.js';

// An expectation on a tag the source never delivers (a typo, a renamed mapping) checks nothing,
// silently: `vigil config check` and the daemon's start-up log warn about it, for every source
// whose tag names the config declares.

const run = promisify(execFile);
const CLI = path.join(ROOT, 'dist/runtime/cli/main.js');
const flow = { flow: { staleAfterSeconds: 5 } };

/** Sources of every kind, each with an expectation on `flow` and one on a misspelt `temprature`. */
const sources = {
  json: {
    type: 'mqtt-json',
    url: 'mqtt://127.0.0.1:1',
    subscriptions: [
      { topic: 'a/+', asset: '{1}', tags: { temperature: 't' } },
      { topic: 'b/+', asset: '{1}', tags: { flow: 'f' } },
    ],
    expectations: { tags: { ...flow, temprature: { range: { min: 0 } } } },
  },
  opc: {
    type: 'opcua',
    endpoint: 'opc.tcp://127.0.0.1:4840',
    items: [
      { nodeId: 'ns=1;s=T', asset: 'p-1', tag: 'temperature' },
      { nodeId: 'ns=1;s=F', asset: 'p-1', tag: 'flow' },
    ],
    expectations: { tags: { ...flow, temprature: { notNull: true } } },
  },
  csv: {
    type: 'serial-line',
    path: '/dev/null',
    asset: 'p-1',
    format: { type: 'csv', columns: ['time', 'temperature', '-', 'flow'] },
    expectations: { tags: { ...flow, temprature: { notNull: true } } },
  },
  kv: {
    type: 'serial-line',
    path: '/dev/null',
    asset: 'p-1',
    format: { type: 'kv', tags: { T: 'temperature', F: 'flow' } },
    expectations: { tags: { ...flow, temprature: { notNull: true } } },
  },
  regex: {
    type: 'serial-line',
    path: '/dev/null',
    asset: 'p-1',
    format: { type: 'regex', pattern: '^T=(?<temperature>[-0-9.]+) F=(?<f>[-0-9.]+)$', tags: { f: 'flow' } },
    expectations: { tags: { ...flow, temprature: { notNull: true } } },
  },
  modbus: {
    type: 'modbus-rtu',
    path: '/dev/null',
    asset: 'p-1',
    registers: [
      { tag: 'temperature', table: 'holding', address: 0 },
      { tag: 'flow', table: 'input', address: 1 },
    ],
    expectations: { tags: { ...flow, temprature: { notNull: true } } },
  },
  // Tag names known only at run time: nothing to compare with, so no warning.
  anyJson: {
    type: 'mqtt-json',
    url: 'mqtt://127.0.0.1:1',
    subscriptions: [{ topic: 'c/+', asset: '{1}', allNumericFields: true }],
    expectations: { tags: { temprature: { notNull: true } } },
  },
  sparkplug: {
    type: 'sparkplug-b',
    url: 'mqtt://127.0.0.1:1',
    groupId: 'plant',
    expectations: { tags: { temprature: { notNull: true } } },
  },
  anyKv: {
    type: 'serial-line',
    path: '/dev/null',
    asset: 'p-1',
    format: { type: 'kv' },
    expectations: { tags: { temprature: { notNull: true } } },
  },
};

function parsed(s: Record<string, unknown>) {
  return VigilConfig.parse({ device: { id: 'gw' }, models: {}, sources: s, pipelines: {} });
}

describe('expectation tag names', () => {
  it('warns for a tag the source does not deliver, per source kind whose tags the config declares', () => {
    const warnings = expectationTagWarnings(parsed(sources).sources);
    expect(warnings.map((w) => w.path).sort()).toEqual(
      ['csv', 'json', 'kv', 'modbus', 'opc', 'regex'].map((s) => `sources.${s}.expectations.tags.temprature`),
    );
    expect(warnings.find((w) => w.path.startsWith('sources.json.'))!.message).toBe(
      "source json delivers no tag named 'temprature' (its tags: flow, temperature), so this expectation checks nothing; use the tag name the source gives, or map the tag",
    );
  });

  it('vigil config check prints the warning and still passes the config', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-tagnames-'));
    try {
      const file = path.join(dir, 'vigil.yaml');
      await writeFile(
        file,
        stringify({ device: { id: 'gw' }, models: {}, sources: { json: sources.json }, pipelines: {} }),
      );
      const { stdout, stderr } = await run('node', [CLI, 'config', 'check', file]);
      expect(stderr).toContain(
        "warning: sources.json.expectations.tags.temprature: source json delivers no tag named 'temprature'",
      );
      expect(stdout).toMatch(/: OK/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
