// Runtime usage checks (move 6 of the mission: no application starves its
// neighbours): "CPU above N % of its quota for T seconds", "memory above N %
// of its limit for T seconds", "pids above N (or N % of the limit)", "writable
// layer or logs above N bytes or growing faster than X/min", "network above N
// bytes/s or packets/s", "more than N TCP connections".
//
// They are decided from live usage only (CheckInput.usage: the recent cgroup,
// disk and network-namespace readings the agent's sampler took), so they find nothing at a create
// request or in the controller's dry-run, and the evaluator stays pure: the
// agent hands in the window, the check judges it. "For T seconds" means every
// reading of the last T seconds was above the threshold.
import type { Static, TObject } from '@sinclair/typebox';
import { formatBytes, parseMemorySize } from '../units';
import type { CheckInput, Evidence, Policy, UsagePoint, UsageSeries } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE, type CatalogueEntry, type TypeBuilder } from './define';

/** Longest `forSeconds` a usage rule may ask for: it bounds the window the agent keeps per container. */
export const MAX_USAGE_FOR_SECONDS = 900;

/**
 * Readings are taken on a timer, so a run of readings covers a span a few
 * milliseconds short of a whole number of intervals; this much shortfall
 * still counts as "held for T seconds".
 */
export const USAGE_SLACK_MS = 250;

const ForSeconds = (T: TypeBuilder, dflt: number) =>
  T.Optional(
    T.Number({
      minimum: 0,
      maximum: MAX_USAGE_FOR_SECONDS,
      description: `How long the condition must hold, seconds (every reading in that span above the threshold). 0 = the latest reading decides. Default ${dflt}; at most ${MAX_USAGE_FOR_SECONDS}.`,
    }),
  );

/** A run of readings above a threshold, ending at the newest reading. */
export interface HeldAbove {
  /** How long the condition has held, ms. */
  heldMs: number;
  /** The newest reading's value. */
  latest: number;
  /** The lowest value of the run (every reading of the run was above the threshold). */
  lowest: number;
}

/**
 * How long `value` has been above `threshold` continuously up to the newest
 * point, or undefined when the newest point is not above (or not measurable:
 * null). `interval` values (CPU: averaged since the previous point) held since
 * the point before the first one above; gauges since the first one above.
 */
export function heldAbove(
  points: UsageSeries,
  value: (p: UsagePoint) => number | null,
  threshold: number,
  interval: boolean,
): HeldAbove | undefined {
  const n = points.length;
  if (n === 0) return undefined;
  const newest = points.at(n - 1)!;
  const latest = value(newest);
  if (latest === null || !(latest > threshold)) return undefined;
  let first = n - 1;
  let lowest = latest;
  while (first > 0) {
    const v = value(points.at(first - 1)!);
    if (v === null || !(v > threshold)) break;
    first--;
    if (v < lowest) lowest = v;
  }
  const since = interval && first > 0 ? points.at(first - 1)!.at : points.at(first)!.at;
  return { heldMs: Math.max(0, newest.at - since), latest, lowest };
}

function held(h: HeldAbove | undefined, forSeconds: number): h is HeldAbove {
  return h !== undefined && h.heldMs + USAGE_SLACK_MS >= forSeconds * 1000;
}

function pct(n: number): string {
  return `${Math.round(n * 10) / 10} %`;
}

function span(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms / 100) / 10} s` : `${Math.round(ms / 1000)} s`;
}

function forText(forSeconds: number, h: HeldAbove): string {
  return forSeconds > 0 ? ` for ${span(h.heldMs)} (lowest ${pct(h.lowest)})` : '';
}

const points = (input: CheckInput): UsageSeries | undefined => {
  const p = input.usage?.points;
  return p && p.length > 0 ? p : undefined;
};

// ---------------------------------------------------------------- cpu-usage

const CpuUsageParams = lazySchema((T) => T.Object(
  {
    abovePercent: T.Optional(
      T.Number({
        exclusiveMinimum: 0,
        maximum: 100_000,
        description: 'Threshold: CPU use above this percentage of the container\'s CPU quota (--cpus), or of one core when it has none. Default 90.',
      }),
    ),
    forSeconds: ForSeconds(T, 60),
    ignoreUnlimited: T.Optional(T.Boolean({ description: 'Containers without a CPU quota are never above it (instead of measuring them against one core). Default false.' })),
  },
  { additionalProperties: false },
));

export const cpuUsage = defineCheck({
  type: 'cpu-usage',
  group: 'isolation',
  runtime: true,
  summary: 'CPU use must not stay above N % of the container\'s CPU quota (or of one core when it has none) for T seconds (live usage, agent only).',
  remedy: 'find out why the container burns CPU, or give it a larger --cpus quota if the load is legitimate',
  params: CpuUsageParams,
  defaults: { abovePercent: 90, forSeconds: 60, ignoreUnlimited: false },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const threshold = params.abovePercent ?? 90;
    const forSeconds = params.forSeconds ?? 60;
    const ignoreUnlimited = params.ignoreUnlimited === true;
    // Judged against the limit in force at each reading: a `docker update` mid-window counts from then on.
    const ofQuota = (p: UsagePoint): number | null =>
      p.cpuPercent === null ? null : p.cpuLimitCores > 0 ? p.cpuPercent / p.cpuLimitCores : ignoreUnlimited ? null : p.cpuPercent;
    return (input) => {
      const ps = points(input);
      if (!ps) return NO_EVIDENCE;
      const h = heldAbove(ps, ofQuota, threshold, true);
      if (!held(h, forSeconds)) return NO_EVIDENCE;
      const cores = ps.at(ps.length - 1)!.cpuLimitCores;
      const basis = cores > 0 ? `of its CPU quota (${Math.round(cores * 1000) / 1000} CPUs)` : 'of one core (no CPU quota)';
      return [{ location: 'usage.cpu', detail: `CPU at ${pct(h.latest)} ${basis}${forText(forSeconds, h)}, above ${pct(threshold)}${forSeconds > 0 ? ` for ${forSeconds} s` : ''}` }];
    };
  },
});

// ---------------------------------------------------------------- memory-usage

const MemoryUsageParams = lazySchema((T) => T.Object(
  {
    abovePercent: T.Optional(
      T.Number({ exclusiveMinimum: 0, maximum: 100, description: 'Threshold: memory working set above this percentage of the container\'s memory limit. Containers without a limit are never above it. Default 90.' }),
    ),
    forSeconds: ForSeconds(T, 30),
  },
  { additionalProperties: false },
));

export const memoryUsage = defineCheck({
  type: 'memory-usage',
  group: 'isolation',
  runtime: true,
  summary: 'Memory use (working set) must not stay above N % of the container\'s memory limit for T seconds (live usage, agent only).',
  remedy: 'find the leak or give the container a larger --memory limit; near its limit it will be OOM-killed',
  params: MemoryUsageParams,
  defaults: { abovePercent: 90, forSeconds: 30 },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const threshold = params.abovePercent ?? 90;
    const forSeconds = params.forSeconds ?? 30;
    const ofLimit = (p: UsagePoint): number | null => (p.memoryLimitBytes > 0 ? (p.memoryBytes / p.memoryLimitBytes) * 100 : null);
    return (input) => {
      const ps = points(input);
      if (!ps) return NO_EVIDENCE;
      const h = heldAbove(ps, ofLimit, threshold, false);
      if (!held(h, forSeconds)) return NO_EVIDENCE;
      const p = ps.at(ps.length - 1)!;
      return [{
        location: 'usage.memory',
        detail: `memory at ${pct(h.latest)} of its limit (${formatBytes(p.memoryBytes)} of ${formatBytes(p.memoryLimitBytes)})${forText(forSeconds, h)}, above ${pct(threshold)}${forSeconds > 0 ? ` for ${forSeconds} s` : ''}`,
      }];
    };
  },
});

// ---------------------------------------------------------------- pids-usage

const PidsUsageParams = lazySchema((T) => T.Object(
  {
    above: T.Optional(T.Integer({ minimum: 0, description: 'Threshold: more than this many processes and threads.' })),
    abovePercent: T.Optional(
      T.Number({ exclusiveMinimum: 0, maximum: 100, description: 'Threshold: more than this percentage of the container\'s pids limit (containers without one are never above it).' }),
    ),
    forSeconds: ForSeconds(T, 0),
  },
  { additionalProperties: false },
));

type PidsParams = Static<ReturnType<typeof PidsUsageParams>>;

export const pidsUsage = defineCheck({
  type: 'pids-usage',
  group: 'isolation',
  runtime: true,
  summary: 'The number of processes and threads must not stay above N, or above N % of the pids limit, for T seconds (live usage, agent only).',
  remedy: 'find what forks (a fork bomb, a leaking worker pool) or raise --pids-limit if the load is legitimate',
  params: PidsUsageParams,
  defaults: { forSeconds: 0 } as PidsParams,
  validate(p) {
    return p.above === undefined && p.abovePercent === undefined ? [{ path: '', message: 'pids-usage needs `above` and/or `abovePercent`' }] : [];
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const forSeconds = params.forSeconds ?? 0;
    const { above, abovePercent } = params;
    const count = (p: UsagePoint): number | null => p.pids;
    const ofLimit = (p: UsagePoint): number | null => (p.pidsLimit > 0 ? (p.pids / p.pidsLimit) * 100 : null);
    return (input) => {
      const ps = points(input);
      if (!ps) return NO_EVIDENCE;
      const p = ps.at(ps.length - 1)!;
      const out: Evidence[] = [];
      if (above !== undefined) {
        const h = heldAbove(ps, count, above, false);
        if (held(h, forSeconds)) {
          out.push({ location: 'usage.pids', detail: `${p.pids} processes/threads${forSeconds > 0 ? ` for ${span(h.heldMs)} (lowest ${h.lowest})` : ''}, above ${above}${forSeconds > 0 ? ` for ${forSeconds} s` : ''}` });
        }
      }
      if (abovePercent !== undefined) {
        const h = heldAbove(ps, ofLimit, abovePercent, false);
        if (held(h, forSeconds)) {
          out.push({ location: 'usage.pids', detail: `${p.pids} processes/threads, ${pct(h.latest)} of its pids limit ${p.pidsLimit}${forText(forSeconds, h)}, above ${pct(abovePercent)}${forSeconds > 0 ? ` for ${forSeconds} s` : ''}` });
        }
      }
      return out.length > 0 ? out : NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- sizes in params

/** A byte quantity as `docker run --memory` writes it ("200m", "1g": binary units) or a byte count. */
const ByteSize = (T: TypeBuilder, description: string) =>
  T.Union([T.Integer({ minimum: 0 }), T.String({ pattern: '^\\s*\\d+(\\.\\d+)?\\s*[kKmMgGtTpP]?([iI]?[bB])?\\s*$' })], { description });

function sizeErrors(p: Record<string, unknown>, keys: readonly string[]): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  for (const k of keys) {
    const v = p[k];
    if (v !== undefined && parseMemorySize(v as string | number) === undefined) out.push({ path: k, message: `"${String(v)}" is not a size (e.g. "200m", "1g" or a byte count)` });
  }
  return out;
}

const bytesOf = (v: string | number | undefined): number | undefined => (v === undefined ? undefined : parseMemorySize(v));

function sum(a: number | null | undefined, b: number | null | undefined): number | null {
  return a === null || a === undefined || b === null || b === undefined ? null : a + b;
}

function rate(n: number): string {
  return n >= 100 ? String(Math.round(n)) : String(Math.round(n * 10) / 10);
}

// ---------------------------------------------------------------- disk-usage

const DiskUsageParams = lazySchema((T) => T.Object(
  {
    writableAbove: T.Optional(ByteSize(T, 'Threshold: the writable layer (files the container wrote outside its volumes) above this size ("200m", "1g": binary units, or bytes).')),
    logsAbove: T.Optional(ByteSize(T, 'Threshold: its log files (json-file/local, current + rotated) above this size.')),
    growthPerMinuteAbove: T.Optional(
      ByteSize(T, 'Threshold: writable layer + logs growing faster than this per minute, averaged over forSeconds (over the last interval when 0).'),
    ),
    forSeconds: ForSeconds(T, 0),
  },
  { additionalProperties: false },
));

type DiskParams = Static<ReturnType<typeof DiskUsageParams>>;

export const diskUsage = defineCheck({
  type: 'disk-usage',
  group: 'isolation',
  runtime: true,
  summary: 'The container\'s writable layer or log files must not stay above N bytes, nor grow faster than X bytes a minute, for T seconds (live usage, agent only).',
  remedy: 'write data to a volume with a quota instead of the container\'s filesystem, rotate its logs (--log-opt max-size / max-file), or find what fills it',
  params: DiskUsageParams,
  defaults: { forSeconds: 0 } as DiskParams,
  validate(p) {
    if (p.writableAbove === undefined && p.logsAbove === undefined && p.growthPerMinuteAbove === undefined) {
      return [{ path: '', message: 'disk-usage needs `writableAbove`, `logsAbove` and/or `growthPerMinuteAbove`' }];
    }
    return sizeErrors(p as Record<string, unknown>, ['writableAbove', 'logsAbove', 'growthPerMinuteAbove']);
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const forSeconds = params.forSeconds ?? 0;
    const writableAbove = bytesOf(params.writableAbove);
    const logsAbove = bytesOf(params.logsAbove);
    const growthAbove = bytesOf(params.growthPerMinuteAbove);
    const writable = (p: UsagePoint): number | null => p.writableBytes ?? null;
    const logs = (p: UsagePoint): number | null => p.logBytes ?? null;
    const total = (p: UsagePoint): number | null => sum(p.writableBytes, p.logBytes) ?? p.writableBytes ?? p.logBytes ?? null;
    const forPart = (h: HeldAbove) => (forSeconds > 0 ? ` for ${span(h.heldMs)} (lowest ${formatBytes(h.lowest)})` : '');
    const overPart = (n: number) => `above ${formatBytes(n)}${forSeconds > 0 ? ` for ${forSeconds} s` : ''}`;
    return (input) => {
      const ps = points(input);
      if (!ps) return NO_EVIDENCE;
      const out: Evidence[] = [];
      if (writableAbove !== undefined) {
        const h = heldAbove(ps, writable, writableAbove, false);
        if (held(h, forSeconds)) out.push({ location: 'usage.disk.writable', detail: `writable layer at ${formatBytes(h.latest)}${forPart(h)}, ${overPart(writableAbove)}` });
      }
      if (logsAbove !== undefined) {
        const h = heldAbove(ps, logs, logsAbove, false);
        if (held(h, forSeconds)) out.push({ location: 'usage.disk.logs', detail: `log files at ${formatBytes(h.latest)}${forPart(h)}, ${overPart(logsAbove)}` });
      }
      if (growthAbove !== undefined) {
        const g = growthPerMinute(ps, total, forSeconds);
        if (g !== undefined && g.perMinute > growthAbove) {
          out.push({
            location: 'usage.disk.growth',
            detail: `writable layer + logs grew ${formatBytes(Math.max(0, g.grownBytes))} in ${span(g.spanMs)} (${formatBytes(Math.round(g.perMinute))}/min), above ${formatBytes(growthAbove)}/min`,
          });
        }
      }
      return out.length > 0 ? out : NO_EVIDENCE;
    };
  },
});

/**
 * Growth of `value` per minute between the newest point and the newest point
 * at least `forSeconds` older (the one before the newest when 0), or
 * undefined when the window does not reach back that far yet or a value is
 * unknown. An average over the span: disk sizes of big trees are refreshed
 * less often than every reading, so reading-to-reading rates would jump.
 */
export function growthPerMinute(
  ps: UsageSeries,
  value: (p: UsagePoint) => number | null,
  forSeconds: number,
): { perMinute: number; grownBytes: number; spanMs: number } | undefined {
  const n = ps.length;
  if (n < 2) return undefined;
  const newest = ps.at(n - 1)!;
  const to = value(newest);
  if (to === null) return undefined;
  const cutoff = newest.at - forSeconds * 1000 + USAGE_SLACK_MS;
  let i = n - 2;
  if (forSeconds > 0) {
    while (i >= 0 && ps.at(i)!.at > cutoff) i--;
    if (i < 0) return undefined;
  }
  const oldest = ps.at(i)!;
  const from = value(oldest);
  const spanMs = newest.at - oldest.at;
  if (from === null || spanMs <= 0) return undefined;
  return { perMinute: ((to - from) / spanMs) * 60_000, grownBytes: to - from, spanMs };
}

// ---------------------------------------------------------------- network-usage

const NetworkUsageParams = lazySchema((T) => T.Object(
  {
    bytesPerSecAbove: T.Optional(ByteSize(T, 'Threshold: received + sent bytes per second (every interface of its network namespace, loopback included: in a namespace of its own, lo carries only its traffic) above this ("10m" = 10 MiB/s, or bytes).')),
    packetsPerSecAbove: T.Optional(T.Number({ exclusiveMinimum: 0, description: 'Threshold: received + sent packets per second above this.' })),
    forSeconds: ForSeconds(T, 30),
  },
  { additionalProperties: false },
));

type NetParams = Static<ReturnType<typeof NetworkUsageParams>>;

export const networkUsage = defineCheck({
  type: 'network-usage',
  group: 'isolation',
  runtime: true,
  summary: 'Network traffic (received + sent, bytes or packets a second) must not stay above N for T seconds (live usage from the container\'s network namespace, agent only).',
  remedy: 'find what floods the network (a scanner, a retry storm, an exfiltration) — quarantine cuts it off and keeps the container for a look',
  params: NetworkUsageParams,
  defaults: { forSeconds: 30 } as NetParams,
  validate(p) {
    if (p.bytesPerSecAbove === undefined && p.packetsPerSecAbove === undefined) return [{ path: '', message: 'network-usage needs `bytesPerSecAbove` and/or `packetsPerSecAbove`' }];
    return sizeErrors(p as Record<string, unknown>, ['bytesPerSecAbove']);
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const forSeconds = params.forSeconds ?? 30;
    const bytesAbove = bytesOf(params.bytesPerSecAbove);
    const packetsAbove = params.packetsPerSecAbove;
    const bytes = (p: UsagePoint): number | null => sum(p.netRxBytesPerSec, p.netTxBytesPerSec);
    const packets = (p: UsagePoint): number | null => sum(p.netRxPacketsPerSec, p.netTxPacketsPerSec);
    return (input) => {
      const ps = points(input);
      if (!ps) return NO_EVIDENCE;
      const p = ps.at(ps.length - 1)!;
      const out: Evidence[] = [];
      const forPart = (h: HeldAbove, f: (n: number) => string) => (forSeconds > 0 ? ` for ${span(h.heldMs)} (lowest ${f(h.lowest)})` : '');
      const over = forSeconds > 0 ? ` for ${forSeconds} s` : '';
      if (bytesAbove !== undefined) {
        const h = heldAbove(ps, bytes, bytesAbove, true);
        if (held(h, forSeconds)) {
          const bps = (n: number) => `${formatBytes(Math.round(n))}/s`;
          out.push({
            location: 'usage.network.bytes',
            detail: `network at ${bps(h.latest)} (rx ${bps(p.netRxBytesPerSec ?? 0)}, tx ${bps(p.netTxBytesPerSec ?? 0)})${forPart(h, bps)}, above ${bps(bytesAbove)}${over}`,
          });
        }
      }
      if (packetsAbove !== undefined) {
        const h = heldAbove(ps, packets, packetsAbove, true);
        if (held(h, forSeconds)) {
          const pps = (n: number) => `${rate(n)} packets/s`;
          out.push({ location: 'usage.network.packets', detail: `network at ${pps(h.latest)}${forPart(h, pps)}, above ${pps(packetsAbove)}${over}` });
        }
      }
      return out.length > 0 ? out : NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- connections

const ConnectionsParams = lazySchema((T) => T.Object(
  {
    above: T.Optional(T.Integer({ minimum: 0, description: 'Threshold: more than this many open TCP connections in the container\'s network namespace (every state but TIME_WAIT and CLOSE, IPv4 + IPv6: the kernel\'s per-namespace counters, listening sockets included).' })),
    socketsAbove: T.Optional(T.Integer({ minimum: 0, description: 'Threshold: more than this many TCP + UDP sockets of the namespace, any state.' })),
    forSeconds: ForSeconds(T, 10),
  },
  { additionalProperties: false },
));

type ConnParams = Static<ReturnType<typeof ConnectionsParams>>;

export const connections = defineCheck({
  type: 'connections',
  group: 'isolation',
  runtime: true,
  summary: 'The container\'s network namespace must not hold more than N TCP connections (or N sockets) for T seconds (live usage, agent only).',
  remedy: 'find the connection leak or the flood (a missing pool limit, a scanner); cap it with --ulimit nofile',
  params: ConnectionsParams,
  defaults: { forSeconds: 10 } as ConnParams,
  validate(p) {
    return p.above === undefined && p.socketsAbove === undefined ? [{ path: '', message: 'connections needs `above` and/or `socketsAbove`' }] : [];
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const forSeconds = params.forSeconds ?? 10;
    const { above, socketsAbove } = params;
    const tcp = (p: UsagePoint): number | null => p.tcpConnections ?? null;
    const socks = (p: UsagePoint): number | null => p.sockets ?? null;
    const over = forSeconds > 0 ? ` for ${forSeconds} s` : '';
    const forPart = (h: HeldAbove) => (forSeconds > 0 ? ` for ${span(h.heldMs)} (lowest ${h.lowest})` : '');
    return (input) => {
      const ps = points(input);
      if (!ps) return NO_EVIDENCE;
      const out: Evidence[] = [];
      if (above !== undefined) {
        const h = heldAbove(ps, tcp, above, false);
        if (held(h, forSeconds)) out.push({ location: 'usage.connections', detail: `${h.latest} open TCP connections${forPart(h)}, above ${above}${over}` });
      }
      if (socketsAbove !== undefined) {
        const h = heldAbove(ps, socks, socketsAbove, false);
        if (held(h, forSeconds)) out.push({ location: 'usage.sockets', detail: `${h.latest} TCP + UDP sockets${forPart(h)}, above ${socketsAbove}${over}` });
      }
      return out.length > 0 ? out : NO_EVIDENCE;
    };
  },
});

export const USAGE_CHECKS = [cpuUsage, memoryUsage, pidsUsage, diskUsage, networkUsage, connections] as const;

/** Check types decided from live usage. */
export const USAGE_CHECK_TYPES: readonly string[] = USAGE_CHECKS.map((c) => c.type);

const usageTypes = new Set(USAGE_CHECK_TYPES);

/** True when the rule's check is decided from live usage. */
export function isUsageRule(rule: { check: { type: string } }): boolean {
  return usageTypes.has(rule.check.type);
}

/**
 * How much history the policy's usage rules need, ms: the longest
 * `forSeconds` (defaults applied), 0 when none watches a duration. The agent
 * keeps at least this much per running container.
 */
export function usageWindowMs(policy: Policy): number {
  let max = 0;
  for (const r of policy.spec.rules) {
    if (!isUsageRule(r)) continue;
    const def = USAGE_CHECKS.find((c) => c.type === r.check.type) as CatalogueEntry<TObject> | undefined;
    const given = r.check['forSeconds'];
    const fs = typeof given === 'number' ? given : ((def?.defaults as { forSeconds?: number } | undefined)?.forSeconds ?? 0);
    if (fs > max) max = fs;
  }
  return Math.min(max, MAX_USAGE_FOR_SECONDS) * 1000;
}
