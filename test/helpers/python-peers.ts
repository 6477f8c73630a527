import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The Python of the peers' virtual environment (asyncua and the other PyPI implementations that
 * interoperability tests run against), made by test/provision.sh. VIGIL_PEERS_PYTHON overrides it.
 */
export const PEERS_VENV = path.join(os.homedir(), '.cache', 'vigil', 'venv-peers');

/** The interpreter path, or a clear error saying how to get it; never a silent skip. */
export function peerPython(module = 'asyncua'): string {
  const python = process.env.VIGIL_PEERS_PYTHON ?? path.join(PEERS_VENV, 'bin', 'python');
  if (!existsSync(python)) {
    throw new Error(
      `no Python for the interoperability peers at ${python}: these tests run against a real ${module} ` +
        `server from PyPI. Create the environment with 'bash test/provision.sh' (or ` +
        `'python3 -m venv ${PEERS_VENV} && ${PEERS_VENV}/bin/pip install ${module}'), or point ` +
        `VIGIL_PEERS_PYTHON at a Python that has ${module}.`,
    );
  }
  try {
    // find_spec locates the package without importing it (asyncua takes a second to import).
    const check = `import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('${module}') else 'No module named ${module}')`;
    execFileSync(python, ['-c', check], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim().split('\n').pop() ?? String(err);
    throw new Error(
      `${python} cannot import ${module} (${stderr}): install it with '${python} -m pip install ${module}' ` +
        `or re-run 'bash test/provision.sh'.`,
    );
  }
  return python;
}
