// Owns the facts an agent reports about its host: OS, hardware size, the
// Docker engine and its cgroup setup.
//
// Cost matters because the agent is a long-running daemon whose event
// subscriber must never stall (dockerd drops events for a subscriber that
// lags > 100 ms). Measured here: systeminformation's osInfo() takes ~36 ms
// and spawns 5 shells, two of them with execSync (`hostname -f`, which
// blocks the event loop on a slow resolver, and `ip link`), plus `dmesg`.
// So OS facts come from node:os and /etc/os-release (the file osInfo reads
// anyway), and systeminformation is used only for mem(), which reads
// /proc/meminfo without spawning. It is required lazily, and only its memory
// module: the whole package costs ~35 ms of synchronous loading and ~10 MB
// RSS, lib/memory ~8 ms and ~2.4 MB.
import { access, readFile } from 'node:fs/promises';
import * as os from 'node:os';
import { join } from 'node:path';
import { BulkheadError } from '@bulkhead/shared';
import type { HostFacts__Output } from '@bulkhead/shared';
import type { DaemonConfigOptions } from '../lockdown/daemon-config';
import type { DockerApi } from './client';
import { collectDaemonDefaults } from './daemon-defaults';

export interface HostFactsOptions {
  /** Host labels configured on the agent. Default: none. */
  labels?: Record<string, string>;
  /**
   * Where the host's filesystem is visible. Default "/". An agent running
   * in a container with the host's / mounted at /host passes "/host".
   */
  hostRoot?: string;
  /**
   * How to find the dockerd whose defaults (log driver and log-opts, default
   * ulimits, storage driver) the facts carry: its socket, daemon.json, pid.
   * Default: the dockerd behind /var/run/docker.sock. `false` leaves the
   * defaults out (unknown to the checks that need them).
   */
  daemon?: Omit<DaemonConfigOptions, 'docker' | 'hostRoot'> | false;
}

/** Collects host facts; throws BK_ERR_DOCKER_UNAVAILABLE when the engine does not answer. */
export async function collectHostFacts(docker: Pick<DockerApi, 'version' | 'info'>, opts: HostFactsOptions = {}): Promise<HostFacts__Output> {
  const root = opts.hostRoot ?? '/';
  const [engine, osRelease, memoryBytes, cgroupFromFs, daemonDefaults] = await Promise.all([
    engineFacts(docker),
    readOsRelease(root),
    totalMemory(),
    detectCgroupVersion(root),
    opts.daemon === false ? undefined : collectDaemonDefaults({ ...(opts.daemon ?? {}), docker, hostRoot: root }),
  ]);
  return {
    hostname: os.hostname(),
    osPlatform: os.platform(),
    osDistro: osRelease['NAME'] ?? '',
    osRelease: osRelease['VERSION_ID'] ?? '',
    kernel: os.release(),
    arch: os.arch(),
    cpus: os.cpus().length,
    memoryBytes,
    dockerVersion: engine.version,
    dockerApiVersion: engine.apiVersion,
    cgroupVersion: engine.cgroupVersion ?? cgroupFromFs,
    cgroupDriver: engine.cgroupDriver,
    labels: { ...(opts.labels ?? {}) },
    ...(daemonDefaults ? { daemonDefaults } : {}),
  };
}

interface EngineFacts {
  version: string;
  apiVersion: string;
  /** undefined when the engine predates API 1.40's CgroupVersion. */
  cgroupVersion: number | undefined;
  cgroupDriver: string;
}

async function engineFacts(docker: Pick<DockerApi, 'version' | 'info'>): Promise<EngineFacts> {
  let version: { Version?: unknown; ApiVersion?: unknown };
  let info: { CgroupVersion?: unknown; CgroupDriver?: unknown };
  try {
    const [v, i] = await Promise.all([docker.version(), docker.info()]);
    version = v as { Version?: unknown; ApiVersion?: unknown };
    info = (i ?? {}) as { CgroupVersion?: unknown; CgroupDriver?: unknown };
  } catch (cause) {
    throw new BulkheadError('BK_ERR_DOCKER_UNAVAILABLE', undefined, { cause });
  }
  const cg = Number(info.CgroupVersion);
  return {
    version: typeof version.Version === 'string' ? version.Version : '',
    apiVersion: typeof version.ApiVersion === 'string' ? version.ApiVersion : '',
    cgroupVersion: cg === 1 || cg === 2 ? cg : undefined,
    cgroupDriver: typeof info.CgroupDriver === 'string' ? info.CgroupDriver : '',
  };
}

/**
 * 2 when the unified hierarchy is mounted at /sys/fs/cgroup itself, else 1.
 * Hybrid hosts (v1 controllers, v2 at /sys/fs/cgroup/unified) count as 1,
 * because that is what containers get.
 */
export async function detectCgroupVersion(hostRoot = '/'): Promise<1 | 2> {
  try {
    await access(join(hostRoot, 'sys/fs/cgroup/cgroup.controllers'));
    return 2;
  } catch {
    return 1;
  }
}

/** Parses os-release(5): KEY=value lines, values optionally quoted. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    const q = v[0];
    if ((q === '"' || q === "'") && v.endsWith(q) && v.length >= 2) {
      v = v.slice(1, -1);
      if (q === '"') v = v.replace(/\\(["\\$`])/g, '$1');
    }
    out[m[1]!] = v;
  }
  return out;
}

async function readOsRelease(root: string): Promise<Record<string, string>> {
  for (const p of ['etc/os-release', 'usr/lib/os-release']) {
    try {
      return parseOsRelease(await readFile(join(root, p), 'utf8'));
    } catch {
      // try the next location; os-release(5) names both
    }
  }
  return {};
}

type MemFn = typeof import('systeminformation')['mem'];
let memFn: MemFn | undefined;

function loadMem(): MemFn {
  if (!memFn) {
    try {
      // A deep path (the package has no "exports" map, so it resolves);
      // fall back to the whole package should a release move the file.
      memFn = (require('systeminformation/lib/memory') as { mem: MemFn }).mem;
    } catch {
      memFn = (require('systeminformation') as typeof import('systeminformation')).mem;
    }
  }
  return memFn;
}

async function totalMemory(): Promise<number> {
  const mem = await loadMem()();
  return mem.total > 0 ? mem.total : os.totalmem();
}
