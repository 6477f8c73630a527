import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, ROOT } from '../helpers/daemon.js';

/**
 * The container definitions, checked without a Docker engine (there is none on the machines that
 * run these tests, so no image is built here): every instruction is one Docker knows, stages and
 * build arguments are declared before use, exec-form arguments are valid JSON, every file copied
 * from the build context exists in the repository and is not excluded by the Dockerfile's own
 * .dockerignore, and the config baked into the image passes `vigil config check`.
 */

const execFileAsync = promisify(execFile);

const INSTRUCTIONS = new Set([
  'FROM',
  'ARG',
  'ENV',
  'RUN',
  'COPY',
  'ADD',
  'WORKDIR',
  'USER',
  'VOLUME',
  'EXPOSE',
  'HEALTHCHECK',
  'STOPSIGNAL',
  'ENTRYPOINT',
  'CMD',
  'LABEL',
  'SHELL',
  'ONBUILD',
]);

interface Instruction {
  line: number;
  keyword: string;
  args: string;
}

/** Splits a Dockerfile into instructions: continuation lines joined, comments and parser directives dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { line: number; text: string } | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) || (pending === undefined && line.trim() === '')) return;
    const continued = line.endsWith('\\');
    const piece = continued ? line.slice(0, -1) : line;
    pending = pending
      ? { line: pending.line, text: `${pending.text} ${piece.trim()}` }
      : { line: i + 1, text: piece };
    if (continued) return;
    const m = /^\s*(\S+)\s*(.*)$/.exec(pending.text)!;
    out.push({ line: pending.line, keyword: m[1]!, args: m[2]! });
    pending = undefined;
  });
  if (pending) throw new Error(`line ${pending.line}: the last instruction ends in a line continuation`);
  return out;
}

/** Docker's .dockerignore matching, as far as these files use it: globs, `**`, `!` exceptions. */
function ignored(patterns: string[], file: string): boolean {
  let result = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const re = new RegExp(
      '^' +
        pattern
          .split('/')
          .map((part) =>
            part === '**'
              ? '.*'
              : part
                  .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                  .replace(/\*/g, '[^/]*')
                  .replace(/\?/g, '[^/]'),
          )
          .join('/')
          .replace(/\.\*\//g, '(.*/)?') +
        '(/.*)?$',
    );
    if (re.test(file)) result = !negate;
  }
  return result;
}

async function dockerignore(dockerfile: string): Promise<string[]> {
  const text = await readFile(`${dockerfile}.dockerignore`, 'utf8');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** Problems found in one Dockerfile; an empty list means it passed. */
async function lint(dockerfile: string, context: string): Promise<string[]> {
  const problems: string[] = [];
  const instructions = parseDockerfile(await readFile(dockerfile, 'utf8'));
  const ignore = await dockerignore(dockerfile);
  const globalArgs = new Map<string, string | undefined>();
  const stages: string[] = [];
  let stageArgs = new Map<string, string | undefined>();
  const expand = (s: string, at: Instruction, scope: Map<string, string | undefined>) =>
    s.replace(/\$\{?(\w+)\}?/g, (_, name: string) => {
      if (!scope.has(name)) {
        problems.push(`line ${at.line}: \${${name}} is not declared with ARG`);
        return '';
      }
      return scope.get(name) ?? `<${name}>`;
    });

  for (const ins of instructions) {
    if (!INSTRUCTIONS.has(ins.keyword)) {
      problems.push(`line ${ins.line}: unknown instruction ${ins.keyword}`);
      continue;
    }
    if (ins.keyword === 'ARG') {
      const [name, value] = ins.args.split('=', 2) as [string, string | undefined];
      (stages.length === 0 ? globalArgs : stageArgs).set(name.trim(), value);
      continue;
    }
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) {
        problems.push(`line ${ins.line}: FROM ${ins.args}: expected FROM image [AS name]`);
        continue;
      }
      expand(m[1]!, ins, globalArgs);
      stages.push(m[2] ?? `#${stages.length}`);
      // Global ARGs are visible in a stage only when redeclared; BuildKit's automatic platform args always are.
      stageArgs = new Map(['TARGETARCH', 'TARGETPLATFORM', 'BUILDPLATFORM'].map((a) => [a, `<${a}>`]));
      continue;
    }
    if (stages.length === 0) problems.push(`line ${ins.line}: ${ins.keyword} before the first FROM`);
    if (['ENTRYPOINT', 'CMD', 'VOLUME', 'SHELL'].includes(ins.keyword) || /^CMD\s+\[/.test(ins.args)) {
      const json = ins.keyword === 'HEALTHCHECK' ? ins.args.replace(/^.*?CMD\s+/, '') : ins.args;
      if (json.startsWith('['))
        try {
          const parsed: unknown = JSON.parse(json);
          if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string'))
            problems.push(`line ${ins.line}: ${ins.keyword} exec form must be a JSON array of strings`);
        } catch (err) {
          problems.push(`line ${ins.line}: ${ins.keyword} is not valid JSON: ${(err as Error).message}`);
        }
    }
    if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const words = ins.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      if (paths.length < 2)
        problems.push(`line ${ins.line}: ${ins.keyword} needs a source and a destination`);
      if (from !== undefined) {
        if (!stages.slice(0, -1).includes(from))
          problems.push(`line ${ins.line}: --from=${from} names no earlier stage (${stages.join(', ')})`);
        continue;
      }
      for (const src of paths.slice(0, -1)) {
        const rel = expand(src, ins, stageArgs).replace(/^\.\//, '');
        if (ignored(ignore, rel))
          problems.push(`line ${ins.line}: ${rel} is excluded by ${path.basename(dockerfile)}.dockerignore`);
        else if (!/^vigil-.*\.tar\.gz$/.test(rel) && !existsSync(path.join(context, rel)))
          problems.push(`line ${ins.line}: ${rel} does not exist in the build context`);
      }
    }
  }
  return problems;
}

const tmp: string[] = [];
afterAll(async () => {
  for (const d of tmp) await rm(d, { recursive: true, force: true });
});

describe('container definitions (no Docker engine here: checked, not built)', () => {
  it('the checker itself catches an unknown instruction, an undeclared arg, a missing file and an ignored one', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-dockerfile-'));
    tmp.push(dir);
    const file = path.join(dir, 'Dockerfile');
    await writeFile(
      file,
      [
        'FROM ${BASE} AS build',
        'RUNN echo hi',
        'COPY nothing-here /x',
        'COPY node_modules /y',
        'COPY --from=later /a /b',
        'CMD ["node", broken]',
      ].join('\n'),
    );
    await writeFile(`${file}.dockerignore`, '**/node_modules\n');
    const problems = await lint(file, ROOT);
    expect(problems).toEqual([
      'line 1: ${BASE} is not declared with ARG',
      'line 2: unknown instruction RUNN',
      'line 3: nothing-here does not exist in the build context',
      'line 4: node_modules is excluded by Dockerfile.dockerignore',
      'line 5: --from=later names no earlier stage (build)',
      expect.stringMatching(/^line 6: CMD is not valid JSON/),
    ]);
  });

  it.each(['Dockerfile', 'Dockerfile.jetson'])('deploy/container/%s passes the checks', async (name) => {
    expect(await lint(path.join(ROOT, 'deploy/container', name), ROOT)).toEqual([]);
  });

  it('the multi-arch image copies what package.json ships and runs as vigil with a health check', async () => {
    const text = await readFile(path.join(ROOT, 'deploy/container/Dockerfile'), 'utf8');
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    for (const shipped of pkg.files.filter((f) => !f.startsWith('!') && f !== 'dist/'))
      expect(text, shipped).toContain(`COPY ${shipped.replace(/\/$/, '')} `);
    expect(text).toMatch(/^USER vigil$/m);
    expect(text).toMatch(/^VOLUME \["\/var\/lib\/vigil"\]$/m);
    expect(text).toMatch(/^HEALTHCHECK .*\n.*\/healthz/m);
    expect(text).toContain('TARGETARCH');
  });

  it('the config baked into the images passes vigil config check', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-container-config-'));
    tmp.push(dir);
    // The image has the packages under /opt/vigil/current/app; here they are in the checkout.
    const config = (await readFile(path.join(ROOT, 'deploy/container/vigil.yaml'), 'utf8')).replaceAll(
      '/opt/vigil/current/app/',
      `${ROOT}/`,
    );
    await writeFile(path.join(dir, 'vigil.yaml'), config);
    const r = await execFileAsync(process.execPath, [
      CLI,
      'config',
      'check',
      path.join(dir, 'vigil.yaml'),
    ]).catch((err: { stdout: string; stderr: string; code: number }) => err);
    expect('code' in r ? r.code : 0, `${r.stdout}${r.stderr}`).toBe(0);
  });
});
