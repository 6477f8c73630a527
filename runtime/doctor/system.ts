import os from 'node:os';
import type { CheckResult } from './check.js';

/** Node.js majors Vigil is built and tested for (the LTS lines from its minimum up). */
export const SUPPORTED_NODE_MAJORS: readonly number[] = [20, 22, 24];
const MIN_NODE_MAJOR = 20;
const GATEWAY_PLATFORMS = ['linux-x64', 'linux-arm64'];
/** The system user the install script creates and the systemd unit runs the daemon as. */
export const SERVICE_USER = 'vigil';

export function nodeCheck(version: string = process.version): CheckResult {
  const major = Number(/^v?(\d+)/.exec(version)?.[1] ?? 0);
  const base = { group: 'system' as const, name: 'node', data: { version, major } };
  if (major < MIN_NODE_MAJOR) {
    return {
      ...base,
      status: 'fail',
      detail: `Node.js ${version} is too old: Vigil needs ${MIN_NODE_MAJOR} or later`,
      fix: `install Node.js ${SUPPORTED_NODE_MAJORS.at(-1)} LTS (Debian/Ubuntu: from NodeSource or the offline bundle, which brings its own)`,
    };
  }
  if (!SUPPORTED_NODE_MAJORS.includes(major)) {
    return {
      ...base,
      status: 'warn',
      detail: `Node.js ${version}: ${major % 2 === 1 ? 'an odd, short-lived release' : 'a release Vigil is not tested on'} (tested: ${SUPPORTED_NODE_MAJORS.join(', ')})`,
      fix: `prefer an LTS release (${SUPPORTED_NODE_MAJORS.join(', ')}); native modules are built per Node.js ABI`,
    };
  }
  return { ...base, status: 'ok', detail: `Node.js ${version} (LTS line ${major})` };
}

export function platformCheck(platform: string = process.platform, arch: string = process.arch): CheckResult {
  const key = `${platform}-${arch}`;
  const data = {
    platform,
    arch,
    release: os.release(),
    cpus: os.availableParallelism(),
    memoryMiB: mib(os.totalmem()),
  };
  const detail = `${key}, kernel ${os.release()}, ${data.cpus} CPUs, ${data.memoryMiB} MiB memory`;
  if (!GATEWAY_PLATFORMS.includes(key)) {
    return {
      group: 'system',
      name: 'platform',
      status: 'warn',
      detail,
      fix: `gateways are supported on ${GATEWAY_PLATFORMS.join(' and ')}; the native modules may lack prebuilt binaries here`,
      data,
    };
  }
  return { group: 'system', name: 'platform', status: 'ok', detail, data };
}

export function userCheck(uid: number | undefined = process.getuid?.()): CheckResult {
  let name = String(uid);
  try {
    name = os.userInfo().username;
  } catch {
    // a uid without a passwd entry (containers): the number says enough
  }
  const data = { uid, user: name, groups: process.getgroups?.() ?? [] };
  if (uid === 0) {
    return {
      group: 'system',
      name: 'user',
      status: 'warn',
      detail: 'running as root: the daemon itself must not (the systemd unit runs it as the vigil user)',
      fix: `to check what the daemon can reach, run doctor as its user: sudo -u ${SERVICE_USER} vigil doctor --config /etc/vigil/vigil.yaml`,
      data,
    };
  }
  return { group: 'system', name: 'user', status: 'ok', detail: `running as ${name} (uid ${uid})`, data };
}

export function versionsCheck(): CheckResult {
  const v = process.versions;
  return {
    group: 'system',
    name: 'runtime',
    status: 'ok',
    detail: `v8 ${v.v8}, libuv ${v.uv}, OpenSSL ${v.openssl}, N-API ${v.napi}, ABI ${v.modules}`,
    data: { versions: { ...v } },
  };
}

export function systemChecks(): CheckResult[] {
  return [nodeCheck(), platformCheck(), userCheck(), versionsCheck()];
}

function mib(bytes: number): number {
  return Math.round(bytes / 1024 / 1024);
}
