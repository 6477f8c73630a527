import { readFileSync, readdirSync } from 'node:fs';
import { access, constants, stat } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { CheckResult, DoctorContext } from './check.js';
import type { ProbeOutcome } from './probe-client.js';
import { SERVICE_USER } from './system.js';

/**
 * Serial ports: which ones this machine shows, and for every serial source of the config,
 * whether its device exists, is a serial device, and can be opened for reading and writing by
 * this user and by the daemon's user (through the device's group, usually dialout).
 */

/** Device nodes of serial ports: UARTs, USB-serial adapters, CDC-ACM, ARM and Jetson UARTs. */
const DEVICE_PATTERN = /^tty(S|USB|ACM|AMA|THS|mxc)\d+$/;

/** Serial device nodes found under /dev, and the stable names udev gives USB adapters. */
export function serialDeviceNodes(dev = '/dev'): string[] {
  const nodes: string[] = [];
  try {
    for (const f of readdirSync(dev)) if (DEVICE_PATTERN.test(f)) nodes.push(path.join(dev, f));
  } catch {
    // no /dev (not Linux): nothing to list
  }
  try {
    for (const f of readdirSync(path.join(dev, 'serial/by-id')))
      nodes.push(path.join(dev, 'serial/by-id', f));
  } catch {
    // no USB-serial adapter plugged in
  }
  return nodes.sort(byNatural);
}

function byNatural(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

export function visiblePortsCheck(serialport: ProbeOutcome | undefined, dev = '/dev'): CheckResult {
  const listed =
    serialport?.ok === true
      ? ((serialport.data.ports as Array<{ path: string; manufacturer?: string }> | undefined) ?? [])
      : [];
  const nodes = serialDeviceNodes(dev);
  const extra = nodes.filter((n) => !listed.some((p) => p.path === n));
  const shown = listed.map((p) => (p.manufacturer ? `${p.path} (${p.manufacturer})` : p.path));
  const listError = serialport?.ok === true ? (serialport.data.listError as string | undefined) : undefined;
  const parts = [
    listError
      ? `serialport cannot list ports (${listError}; it asks udevadm)`
      : listed.length > 0
        ? `serialport lists ${shown.join(', ')}`
        : 'serialport lists none',
    extra.length > 0 ? `device nodes ${compact(extra)}` : '',
  ].filter(Boolean);
  return {
    group: 'serial',
    name: 'ports visible',
    status: 'ok',
    detail: listed.length + extra.length === 0 ? 'no serial ports on this machine' : parts.join('; '),
    data: { listed, nodes, listError: listError ?? null },
  };
}

/** At most 8 names, then a count: a PC shows ttyS0..ttyS31 whether or not they are wired. */
function compact(names: string[]): string {
  return names.length <= 8
    ? names.join(', ')
    : `${names.slice(0, 8).join(', ')} and ${names.length - 8} more`;
}

interface Account {
  name: string;
  gid: number;
}

/** Groups by gid and their member lists, from /etc/group. */
function readGroups(file = '/etc/group'): Map<number, { name: string; members: string[] }> {
  const groups = new Map<number, { name: string; members: string[] }>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [name, , gid, members] = line.split(':');
      if (name && gid) groups.set(Number(gid), { name, members: (members ?? '').split(',').filter(Boolean) });
    }
  } catch {
    // unreadable: group names stay numbers
  }
  return groups;
}

function readAccount(user: string, file = '/etc/passwd'): Account | undefined {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [name, , , gid] = line.split(':');
      if (name === user && gid) return { name, gid: Number(gid) };
    }
  } catch {
    // unreadable: the service user is unknown
  }
  return undefined;
}

export async function serialSourceChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  const sources = Object.entries(ctx.loaded?.config.sources ?? {}).filter(
    ([, s]) => s.type === 'serial-line' || s.type === 'modbus-rtu',
  );
  if (!ctx.loaded) {
    return [
      {
        group: 'serial',
        name: 'serial sources',
        status: 'skip',
        detail: 'no --config: no serial sources to check',
      },
    ];
  }
  if (sources.length === 0) {
    return [
      { group: 'serial', name: 'serial sources', status: 'skip', detail: 'the config has no serial sources' },
    ];
  }
  const groups = readGroups();
  const service = readAccount(SERVICE_USER);
  return Promise.all(
    sources.map(([name, s]) => checkPort(`sources.${name}`, (s as { path: string }).path, groups, service)),
  );
}

async function checkPort(
  where: string,
  device: string,
  groups: Map<number, { name: string; members: string[] }>,
  service: Account | undefined,
): Promise<CheckResult> {
  const name = `${where.replace(/^sources\./, '')} ${device}`;
  const base = { group: 'serial' as const, name, data: { source: where, path: device } };
  let st;
  try {
    st = await stat(device);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return {
      ...base,
      status: 'fail',
      detail: missing
        ? `${where}.path: ${device} does not exist`
        : `${where}.path: ${device} cannot be examined (${errorMessage(err)})`,
      fix: missing
        ? 'plug in the adapter or the cable, or correct the path; `ls -l /dev/serial/by-id/` shows the stable names of USB-serial adapters'
        : 'check the path and the permissions of the folders leading to it',
    };
  }
  if (!st.isCharacterDevice()) {
    return {
      ...base,
      status: 'fail',
      detail: `${where}.path: ${device} is not a serial device (not a character device)`,
      fix: 'point the path at the port, e.g. /dev/ttyUSB0 or /dev/serial/by-id/usb-...',
    };
  }
  const group = groups.get(st.gid)?.name ?? String(st.gid);
  const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
  const data = { ...base.data, group, mode };
  try {
    await access(device, constants.R_OK | constants.W_OK);
  } catch {
    return {
      ...base,
      status: 'fail',
      detail: `${where}.path: ${device} exists but this user cannot read and write it (group ${group}, mode ${mode})`,
      fix: `add the user to group ${group} (usermod -aG ${group} ${SERVICE_USER}; the systemd unit can give it with SupplementaryGroups=${group}), then log in again`,
      data,
    };
  }
  // As root everything is accessible; what matters is whether the daemon's user gets in.
  if (service && process.getuid?.() === 0) {
    const inGroup = service.gid === st.gid || (groups.get(st.gid)?.members ?? []).includes(service.name);
    const groupRw = (st.mode & 0o060) === 0o060;
    if (!inGroup || !groupRw) {
      return {
        ...base,
        status: 'warn',
        detail: `${device} is readable and writable here (root), but the ${SERVICE_USER} user ${inGroup ? 'is in' : 'is not in'} its group ${group} (mode ${mode})`,
        fix: inGroup
          ? `the device's group may not write it: a udev rule giving it MODE="0660" fixes that`
          : `usermod -aG ${group} ${SERVICE_USER}, or SupplementaryGroups=${group} in the systemd unit`,
        data,
      };
    }
  }
  return {
    ...base,
    status: 'ok',
    detail: `${device} is a serial device, readable and writable (group ${group}, mode ${mode})`,
    data,
  };
}
