import { existsSync } from 'node:fs';
import { access, constants, open, rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { resolvePath } from '../config/load.js';
import { StoreConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import type { CheckResult, DoctorContext } from './check.js';

/**
 * Disk: the store's folder and the model store's folder have room (the store's minFreeDiskMiB;
 * below it the store stops growing and starts evicting) and can be written by this user.
 */

/** Where the installed daemon keeps its data (deploy/install.sh); checked when no config is given. */
export const DEFAULT_DATA_DIR = '/var/lib/vigil';

interface Place {
  name: string;
  /** Config path of the setting, for fixes. */
  setting: string;
  /** The folder that must be writable (it may not exist yet). */
  dir: string;
  minFreeMiB: number;
}

function places(ctx: DoctorContext): Place[] {
  const minFreeMiB = ctx.loaded?.config.store.minFreeDiskMiB ?? StoreConfig.parse({}).minFreeDiskMiB;
  if (!ctx.loaded) {
    const dir = existsSync(DEFAULT_DATA_DIR) ? DEFAULT_DATA_DIR : process.cwd();
    return [{ name: 'data folder', setting: 'store.path', dir, minFreeMiB }];
  }
  const loaded = ctx.loaded;
  const list: Place[] = [
    {
      name: 'store',
      setting: 'store.path',
      dir: path.dirname(resolvePath(loaded, loaded.config.store.path)),
      minFreeMiB,
    },
  ];
  if (loaded.config.registry) {
    list.push({
      name: 'model store',
      setting: 'registry.storeDir',
      dir: resolvePath(loaded, loaded.config.registry.storeDir),
      minFreeMiB,
    });
  }
  return list;
}

/** The folder itself, or the nearest one above it that exists (where it would be created). */
function existingAncestor(dir: string): string {
  let d = dir;
  while (!existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

export async function diskChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  return Promise.all(places(ctx).map((p) => checkPlace(p)));
}

async function checkPlace(p: Place): Promise<CheckResult> {
  const base = { group: 'disk' as const, name: p.name };
  const at = existingAncestor(p.dir);
  const exists = at === p.dir;
  try {
    if (!(await stat(at)).isDirectory()) {
      return {
        ...base,
        status: 'fail',
        detail: `${at} is not a folder`,
        fix: `${p.setting} must lead to a folder`,
      };
    }
  } catch (err) {
    return {
      ...base,
      status: 'fail',
      detail: `cannot examine ${at}: ${errorMessage(err)}`,
      fix: `check ${p.setting}`,
    };
  }
  const fs = await statfs(at);
  const freeMiB = Math.floor((fs.bavail * fs.bsize) / 1024 / 1024);
  const totalMiB = Math.floor((fs.blocks * fs.bsize) / 1024 / 1024);
  const data = { dir: p.dir, exists, freeMiB, totalMiB, minFreeMiB: p.minFreeMiB };
  const writable = await canWrite(at, exists);
  const where = exists ? p.dir : `${p.dir} (not there yet; ${at} is where it would be created)`;
  if (writable !== true) {
    return {
      ...base,
      status: 'fail',
      detail: `${where}: not writable by this user (${writable})`,
      fix: `give the daemon's user the folder (install.sh: chown vigil:vigil ${DEFAULT_DATA_DIR}), or change ${p.setting}`,
      data,
    };
  }
  const space = `${freeMiB} MiB free of ${totalMiB} MiB (minimum ${p.minFreeMiB} MiB, store.minFreeDiskMiB)`;
  if (freeMiB < p.minFreeMiB) {
    return {
      ...base,
      status: 'fail',
      detail: `${where}: only ${space}; the store stops growing and evicts the oldest rows`,
      fix: 'free space on that file system, or move the data to a larger one',
      data,
    };
  }
  if (freeMiB < p.minFreeMiB * 2) {
    return {
      ...base,
      status: 'warn',
      detail: `${where}: ${space}: close to the minimum`,
      fix: 'free space on that file system before the store starts evicting',
      data,
    };
  }
  return { ...base, status: 'ok', detail: `${where}: writable, ${space}`, data };
}

/** true, or why not: writes and removes a small file where the folder exists, else checks the parent's permission. */
async function canWrite(dir: string, exists: boolean): Promise<true | string> {
  if (!exists) {
    try {
      await access(dir, constants.W_OK | constants.X_OK);
      return true;
    } catch (err) {
      return errorMessage(err);
    }
  }
  const probe = path.join(dir, `.vigil-doctor-${process.pid}`);
  try {
    const handle = await open(probe, 'wx');
    await handle.write('ok');
    await handle.sync();
    await handle.close();
    return true;
  } catch (err) {
    return errorMessage(err);
  } finally {
    await rm(probe, { force: true });
  }
}
