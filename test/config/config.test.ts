import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseConfig, loadConfigFile, resolvePath } from '../../runtime/config/load.js';
import { ConfigError } from '../../runtime/errors.js';
import { configReferenceMarkdown } from '../../runtime/config/docs.js';
import { readFile as readText } from 'node:fs/promises';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/runtime/cli/main.js');

const valid = () => ({
  device: { id: 'gw1' },
  models: { defect: { package: 'models/defect/packages/defect-int8-onnx' } },
  sources: { cam: { type: 'camera-folder', path: '/tmp/x' } },
  pipelines: { inspection: { sources: ['cam'], model: 'defect' } },
});

function issuesOf(raw: unknown): string[] {
  try {
    parseConfig(raw, 'test.yaml', ROOT);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('config was accepted but should not have been');
}

describe('config schema', () => {
  it('accepts a minimal config and fills in documented defaults', () => {
    const { config } = parseConfig(valid(), 'test.yaml', ROOT);
    expect(config.http).toEqual({ enabled: true, host: '127.0.0.1', port: 8470 });
    expect(config.mqtt.url).toBe('mqtt://127.0.0.1:1883');
    expect(config.mqtt.topicPrefix).toBe('vigil');
    expect(config.pipelines.inspection!.budgetMs).toBe(100);
    expect(config.models.defect!.onnx.executionProviders).toEqual(['cpu']);
    const cam = config.sources.cam!;
    expect(cam.type === 'camera-folder' && cam.stableMs).toBe(150);
  });

  it('names a missing required key', () => {
    const raw = valid() as Record<string, unknown>;
    delete raw.device;
    expect(issuesOf(raw)).toEqual([expect.stringMatching(/^device: /)]);
  });

  it('names a misspelt (unknown) key and where it is', () => {
    const raw = valid();
    (raw.pipelines.inspection as Record<string, unknown>).budgetMS = 50;
    expect(issuesOf(raw)).toEqual([expect.stringMatching(/^pipelines\.inspection: unknown key 'budgetMS'/)]);
  });

  it('names a value of the wrong type with the expected type', () => {
    const raw = valid();
    (raw.pipelines.inspection as Record<string, unknown>).budgetMs = 'fast';
    const issues = issuesOf(raw);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^pipelines\.inspection\.budgetMs: .*number/);
  });

  it('names an unknown source type and lists the valid ones', () => {
    const raw = valid();
    (raw.sources.cam as Record<string, unknown>).type = 'camera-ftp';
    const issues = issuesOf(raw);
    expect(issues[0]).toMatch(/^sources\.cam\.type: .*camera-folder.*camera-http/);
  });

  it('reports references to undefined sources and models', () => {
    const raw = valid();
    raw.pipelines.inspection = { sources: ['cam', 'cam9'], model: 'nope' };
    const issues = issuesOf(raw);
    expect(issues).toContain("pipelines.inspection.sources.1: no source named 'cam9' (defined: cam)");
    expect(issues).toContain("pipelines.inspection.model: no model named 'nope' (defined: defect)");
  });

  it('reports every problem at once, not just the first', () => {
    const raw = valid() as Record<string, unknown>;
    raw.http = { port: 70000 };
    raw.mqtt = { url: 'broker:1883' };
    const issues = issuesOf(raw);
    expect(issues.some((i) => i.startsWith('http.port: '))).toBe(true);
    expect(issues.some((i) => i.startsWith('mqtt.url: ') && i.includes('mqtt://'))).toBe(true);
  });

  it('refuses two listeners on one port', () => {
    const raw = valid();
    raw.sources = { cam: { type: 'camera-http', listen: { host: '127.0.0.1', port: 8470 } } } as never;
    expect(issuesOf(raw)).toContain('sources.cam.listen.port: port 8470 is already used by http.port');
  });

  it('reports YAML syntax errors with line and column', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-cfg-'));
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'device:\n  id: gw1\n sources: [\n');
    await expect(loadConfigFile(file)).rejects.toThrow(/line \d+, column \d+/);
  });
});

describe('docs/CONFIG.md', () => {
  it('is the reference generated from the schema (regenerate with `vigil config docs > docs/CONFIG.md`)', async () => {
    expect(await readText(path.join(ROOT, 'docs/CONFIG.md'), 'utf8')).toBe(configReferenceMarkdown());
  });
});

describe('vigil config check', () => {
  it('prints every error as `path: message` and exits non-zero', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-cfg-'));
    const file = path.join(dir, 'bad.yaml');
    await writeFile(
      file,
      [
        'device: { id: "gw 1" }',
        'http: { port: -1 }',
        'models: {}',
        'sources:',
        '  cam: { type: camera-folder }',
        'pipelines:',
        '  p: { sources: [cam], model: defect, budgetMs: 0 }',
      ].join('\n'),
    );
    const err = await run('node', [CLI, 'config', 'check', file]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toBeDefined();
    expect(err!.code).toBe(2);
    const lines = err!.stderr.trim().split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^device\.id: /),
        expect.stringMatching(/^http\.port: /),
        expect.stringMatching(/^sources\.cam\.path: /),
        expect.stringMatching(/^pipelines\.p\.budgetMs: /),
        "pipelines.p.model: no model named 'defect' (defined: none)",
      ]),
    );
  });

  it('accepts the shipped example configs, model packages included', async () => {
    for (const f of ['gateway.example.yaml', 'tflite-npu.example.yaml', 'telemetry.example.yaml']) {
      const { stdout } = await run('node', [CLI, 'config', 'check', path.join(ROOT, 'deploy/config', f)]);
      expect(stdout).toMatch(/: OK/);
    }
  });

  it('reports a model package that does not verify under its config key', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-cfg-'));
    const file = path.join(dir, 'c.yaml');
    await writeFile(
      file,
      [
        'device: { id: gw1 }',
        `models: { defect: { package: ${dir}/no-such-package } }`,
        `sources: { cam: { type: camera-folder, path: ${dir}/in } }`,
        'pipelines: { p: { sources: [cam], model: defect } }',
      ].join('\n'),
    );
    const err = await run('node', [CLI, 'config', 'check', file]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err!.stderr).toMatch(/^models\.defect\.package: /m);
  });
});

describe('resolvePath', () => {
  const loaded = { baseDir: '/etc/vigil' } as Parameters<typeof resolvePath>[0];
  const withState = (value: string | undefined, fn: () => void) => {
    const before = process.env.STATE_DIRECTORY;
    if (value === undefined) delete process.env.STATE_DIRECTORY;
    else process.env.STATE_DIRECTORY = value;
    try {
      fn();
    } finally {
      if (before === undefined) delete process.env.STATE_DIRECTORY;
      else process.env.STATE_DIRECTORY = before;
    }
  };

  it('resolves relative paths against the config folder', () => {
    withState(undefined, () => {
      expect(resolvePath(loaded, 'vigil-data/vigil.db')).toBe('/etc/vigil/vigil-data/vigil.db');
      expect(resolvePath(loaded, 'models/x')).toBe('/etc/vigil/models/x');
      expect(resolvePath(loaded, '/abs/y')).toBe('/abs/y');
    });
  });

  it("puts the vigil-data defaults in systemd's state directory, and nothing else", () => {
    withState('/var/lib/vigil', () => {
      expect(resolvePath(loaded, 'vigil-data/vigil.db')).toBe('/var/lib/vigil/vigil.db');
      expect(resolvePath(loaded, 'vigil-data/pki/opcua')).toBe('/var/lib/vigil/pki/opcua');
      expect(resolvePath(loaded, './vigil-data/models')).toBe('/var/lib/vigil/models');
      // Model packages and other relative paths stay next to the config.
      expect(resolvePath(loaded, 'models/x')).toBe('/etc/vigil/models/x');
      expect(resolvePath(loaded, 'vigil-database')).toBe('/etc/vigil/vigil-database');
      expect(resolvePath(loaded, '/abs/y')).toBe('/abs/y');
    });
    withState('/var/lib/vigil:/var/lib/other', () => {
      expect(resolvePath(loaded, 'vigil-data/vigil.db')).toBe('/var/lib/vigil/vigil.db');
    });
  });
});
