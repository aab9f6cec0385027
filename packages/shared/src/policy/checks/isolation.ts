// Isolation and quota checks (move 6 of the mission): one application must not
// starve its neighbours (memory/CPU/pids limits) nor reach another project's
// containers through a shared network.
import { formatBytes, parseMemorySize } from '../units';
import type { Evidence, Neighbour } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE } from './define';

// ---------------------------------------------------------------- resource-limits

const ResourceLimitsParams = lazySchema((T) => T.Object(
  {
    requireMemory: T.Optional(T.Boolean({ description: 'A memory limit (--memory) is required. Default true.' })),
    requireCpu: T.Optional(T.Boolean({ description: 'A CPU limit (--cpus, or --cpu-quota with --cpu-period) is required. CPU shares are a weight, not a limit. Default true.' })),
    requirePids: T.Optional(T.Boolean({ description: 'A pids limit (--pids-limit) is required. Default true.' })),
    maxMemory: T.Optional(
      T.Union([T.String({ pattern: '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtTpP]?)([iI]?[bB])?\\s*$' }), T.Integer({ minimum: 1 })], {
        description: 'Largest memory limit allowed: bytes or a size like "512m", "2g", "1.5GiB" (binary units, as `docker run --memory`). A container without a memory limit exceeds it.',
      }),
    ),
    maxCpus: T.Optional(T.Number({ exclusiveMinimum: 0, description: 'Largest CPU limit allowed, in CPUs (e.g. 2 or 0.5). A container without a CPU limit exceeds it.' })),
    maxPids: T.Optional(T.Integer({ minimum: 1, description: 'Largest pids limit allowed. A container without a pids limit exceeds it.' })),
  },
  { additionalProperties: false },
));

/** The container's CPU limit in CPUs, or 0 when unlimited. nanoCpus and cpuQuota/cpuPeriod both count. */
export function effectiveCpus(c: { nanoCpus: number; cpuQuota: number; cpuPeriod: number }): number {
  if (c.nanoCpus > 0) return c.nanoCpus / 1e9;
  if (c.cpuQuota > 0) return c.cpuQuota / (c.cpuPeriod > 0 ? c.cpuPeriod : 100_000);
  return 0;
}

export const resourceLimits = defineCheck({
  type: 'resource-limits',
  group: 'isolation',
  summary: 'Containers must have memory, CPU and pids limits, optionally no larger than given maxima.',
  remedy: 'set --memory, --cpus and --pids-limit (compose: `mem_limit`, `cpus`, `pids_limit`) within the rule\'s maxima',
  params: ResourceLimitsParams,
  defaults: { requireMemory: true, requireCpu: true, requirePids: true },
  validate(p) {
    if (p.maxMemory !== undefined && parseMemorySize(p.maxMemory) === undefined) {
      return [{ path: 'maxMemory', message: `"${String(p.maxMemory)}" is not a memory size (use bytes or e.g. "512m", "2g")` }];
    }
    return [];
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const maxMem = params.maxMemory !== undefined ? parseMemorySize(params.maxMemory) : undefined;
    const reqMem = params.requireMemory !== false;
    const reqCpu = params.requireCpu !== false;
    const reqPids = params.requirePids !== false;
    const { maxCpus, maxPids } = params;
    return ({ container: c }) => {
      let out: Evidence[] | undefined;
      const mem = c.memoryLimitBytes > 0 ? c.memoryLimitBytes : 0;
      if (mem === 0) {
        if (reqMem || maxMem !== undefined) (out ??= []).push({ location: 'memory', detail: `no memory limit${maxMem !== undefined ? ` (max ${formatBytes(maxMem)})` : ''}` });
      } else if (maxMem !== undefined && mem > maxMem) {
        (out ??= []).push({ location: 'memory', detail: `memory limit ${formatBytes(mem)} exceeds the maximum ${formatBytes(maxMem)}` });
      }
      const cpus = effectiveCpus(c);
      if (cpus === 0) {
        if (reqCpu || maxCpus !== undefined) (out ??= []).push({ location: 'cpu', detail: `no CPU limit${maxCpus !== undefined ? ` (max ${maxCpus} CPUs)` : ''}` });
      } else if (maxCpus !== undefined && cpus > maxCpus + 1e-9) {
        (out ??= []).push({ location: 'cpu', detail: `CPU limit ${round(cpus)} CPUs exceeds the maximum ${maxCpus}` });
      }
      const pids = c.pidsLimit > 0 ? c.pidsLimit : 0;
      if (pids === 0) {
        if (reqPids || maxPids !== undefined) (out ??= []).push({ location: 'pids', detail: `no pids limit${maxPids !== undefined ? ` (max ${maxPids})` : ''}` });
      } else if (maxPids !== undefined && pids > maxPids) {
        (out ??= []).push({ location: 'pids', detail: `pids limit ${pids} exceeds the maximum ${maxPids}` });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

// ---------------------------------------------------------------- project-network-sharing

const ProjectNetworkParams = lazySchema((T) => T.Object(
  {
    ignoreNetworks: T.Optional(
      T.Array(T.String({ minLength: 1 }), { description: 'Networks never considered (names). Default: bridge, host, none — the default bridge has its own rule.' }),
    ),
    ignoreUnlabelled: T.Optional(
      T.Boolean({ description: 'Containers without a project label never count as "another project". Default false: no project is a project of its own.' }),
    ),
  },
  { additionalProperties: false },
));

export const projectNetworkSharing = defineCheck({
  type: 'project-network-sharing',
  group: 'isolation',
  summary: "A container must not share a user-defined network (or a network namespace) with another project's containers.",
  remedy: 'give each project its own user-defined network (`docker network create <project>-net`) and disconnect the container from the shared one',
  params: ProjectNetworkParams,
  defaults: { ignoreNetworks: ['bridge', 'host', 'none'], ignoreUnlabelled: false },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const ignored = new Set(params.ignoreNetworks ?? ['bridge', 'host', 'none']);
    const ignoreUnlabelled = params.ignoreUnlabelled === true;
    const MAX = 10;
    return ({ container: c, ctx, project }) => {
      if (ignoreUnlabelled && !project) return NO_EVIDENCE;
      // Before reading ctx.neighbours: a caller may compute them lazily, and
      // most containers (--network none, only ignored networks) never need them.
      if (!c.networkMode.startsWith('container:') && !c.networks.some((a) => !ignored.has(a.name))) return NO_EVIDENCE;
      const neighbours = ctx.neighbours;
      if (!neighbours || neighbours.length === 0) return NO_EVIDENCE;
      const differs = (n: Neighbour) => n.id !== c.id && (n.project || undefined) !== (project || undefined) && !(ignoreUnlabelled && !n.project);
      let out: Evidence[] | undefined;
      let extra = 0;
      const add = (e: Evidence) => {
        if ((out ??= []).length < MAX) out.push(e);
        else extra++;
      };
      // --network container:<id|name> shares the whole network namespace.
      if (c.networkMode.startsWith('container:')) {
        const target = c.networkMode.slice('container:'.length);
        const n = neighbours.find((x) => x.id === target || x.name === target || x.name === `/${target}` || (target.length >= 12 && x.id.startsWith(target)));
        if (n && differs(n)) add({ location: 'networkMode', detail: `shares the network namespace of ${trimName(n.name)} (project ${n.project ?? '(none)'})` });
      }
      const index = networkIndex(neighbours);
      for (const a of c.networks) {
        if (ignored.has(a.name)) continue;
        const seen = new Set<Neighbour>();
        for (const key of a.networkId && a.networkId !== a.name ? [a.name, a.networkId] : [a.name]) {
          for (const n of index.get(key) ?? NONE) {
            if (seen.has(n) || !differs(n)) continue;
            seen.add(n);
            add({ location: `networks[${a.name}]`, detail: `shares network ${a.name} with ${trimName(n.name)} of project ${n.project ?? '(none)'}` });
          }
        }
      }
      if (out && extra > 0) out.push({ location: 'networks', detail: `and ${extra} more shared attachments` });
      return out ?? NO_EVIDENCE;
    };
  },
});

const NONE: readonly Neighbour[] = [];

// Neighbour lists are shared by every container of a host in one pass, so the
// network → containers index is built once per list (keyed by identity).
const indexes = new WeakMap<readonly Neighbour[], Map<string, Neighbour[]>>();

function networkIndex(neighbours: readonly Neighbour[]): Map<string, Neighbour[]> {
  let idx = indexes.get(neighbours);
  if (!idx) {
    idx = new Map();
    for (const n of neighbours) {
      for (const net of n.networks) {
        const list = idx.get(net);
        if (list) list.push(n);
        else idx.set(net, [n]);
      }
    }
    indexes.set(neighbours, idx);
  }
  return idx;
}

function trimName(n: string): string {
  return n.startsWith('/') ? n.slice(1) : n;
}

// ---------------------------------------------------------------- default-bridge

export const defaultBridge = defineCheck({
  type: 'default-bridge',
  group: 'isolation',
  summary: "Containers must not use Docker's default bridge network (every container on it can reach every other).",
  remedy: 'attach the container to a user-defined network (`--network <project>-net`, compose does this by default)',
  params: lazySchema((T) => T.Object({}, { additionalProperties: false })),
  defaults: {},
  check({ container: c }) {
    const mode = c.networkMode;
    if (mode === 'bridge' || mode === 'default') return [{ location: 'networkMode', detail: `network mode "${mode}" is the default bridge` }];
    // --network container:<id> of a container on the default bridge is on it too (resolved by the agent).
    const joined = c.effectiveNetworkMode;
    if (mode.startsWith('container:') && (joined === 'bridge' || joined === 'default')) {
      return [{ location: 'networkMode', detail: `joins the network namespace of container ${mode.slice(10, 22)}, which is on the default bridge` }];
    }
    for (const n of c.networks) if (n.name === 'bridge') return [{ location: 'networks[bridge]', detail: 'attached to the default bridge network' }];
    // No mode and no network at all is what `docker create` without --network means.
    if (mode === '' && c.networks.length === 0) return [{ location: 'networkMode', detail: 'no network given, so the container uses the default bridge' }];
    return NO_EVIDENCE;
  },
});

export const ISOLATION_CHECKS = [resourceLimits, projectNetworkSharing, defaultBridge] as const;
