// Owns how the ops CLI shows agents and containers to a human. Pure
// functions of (API data, now) → text, so tests need no terminal.
import { formatSize } from '@bulkhead/client';
import type { Agent as AgentDto, Container as ContainerDto, ContainerUsageHistory } from '@bulkhead/client';
import { formatKeyValues, formatTable } from './table';

/**
 * The table, then one line per agent whose policy is not applied with the
 * agent's reason: too long for a column, and the one thing an operator must
 * act on (an agent enforcing an older policy than the fleet's).
 */
export function renderAgentTable(agents: AgentDto[], now: Date): string {
  const table = formatTable(
    ['ID', 'HOSTNAME', 'STATUS', 'VERSION', 'CONTAINERS', 'LAST SEEN', 'CERT EXPIRES', 'POLICY'],
    agents.map((a) => [
      a.id,
      a.hostname,
      a.status,
      a.agentVersion || '-',
      String(a.containerCount),
      a.lastSeenAt === null ? 'never' : ago(a.lastSeenAt, now),
      a.certNotAfter.slice(0, 10),
      a.policy === null ? '-' : `v${a.policy.version}${a.policy.applied ? '' : ' NOT APPLIED'}`,
    ]),
  );
  const failed = agents.filter((a) => a.policy !== null && !a.policy.applied);
  if (failed.length === 0) return table;
  return table + '\n' + formatKeyValues(failed.map((a) => [a.id, policyText(a.policy!, now)]));
}

function policyText(p: NonNullable<AgentDto['policy']>, now: Date): string {
  return p.applied ? `v${p.version} applied ${when(p.updatedAt, now)}` : `v${p.version} not applied: ${p.error || 'no reason given'} (${ago(p.updatedAt, now)})`;
}

export function renderAgent(a: AgentDto, now: Date): string {
  const h = (a.host ?? {}) as Record<string, unknown>;
  const pairs: Array<[string, string]> = [
    ['ID', a.id],
    ['Hostname', a.hostname],
    ['Status', a.status],
    ['Agent version', a.agentVersion || '-'],
  ];
  if (a.host !== null) {
    pairs.push(
      ['OS', join([str(h['osPlatform']), str(h['osDistro']), str(h['osRelease']), str(h['arch']) && `(${str(h['arch'])})`]) || '-'],
      ['Kernel', str(h['kernel']) || '-'],
      ['Docker', join([str(h['dockerVersion']), str(h['dockerApiVersion']) && `(API ${str(h['dockerApiVersion'])})`]) || '-'],
      ['Cgroups', join([num(h['cgroupVersion']) ? `v${num(h['cgroupVersion'])}` : '', str(h['cgroupDriver'])]) || '-'],
      ['CPUs', num(h['cpus']) ? String(num(h['cpus'])) : '-'],
      ['Memory', num(h['memoryBytes']) ? formatSize(num(h['memoryBytes'])) : '-'],
    );
  }
  pairs.push(
    ['Containers', String(a.containerCount)],
    ['Enrolled', when(a.enrolledAt, now)],
    ['Connected', a.connectedAt === null ? 'never' : when(a.connectedAt, now)],
    ['Last seen', a.lastSeenAt === null ? 'never' : when(a.lastSeenAt, now)],
    ['Cert expires', when(a.certNotAfter, now)],
    ['Cert serial', a.certSerial],
    ['Policy', a.policy === null ? 'none reported yet' : policyText(a.policy, now)],
  );
  if (a.revokedAt !== null) pairs.push(['Revoked', when(a.revokedAt, now)]);
  return formatKeyValues(pairs);
}

export function renderContainerTable(containers: ContainerDto[], now: Date): string {
  return formatTable(
    ['AGENT', 'CONTAINER ID', 'NAME', 'IMAGE', 'STATE', 'CPU', 'MEM', 'DISK', 'NET', 'CONNS', 'UPDATED'],
    containers.map((c) => [
      c.agentId,
      c.id.slice(0, 12),
      displayName(c.name),
      c.imageRef,
      c.removed ? `${c.state || '-'} (removed)` : c.state || '-',
      c.usage ? cpuText(c.usage) : '-',
      c.usage ? memText(c.usage) : '-',
      c.usage ? diskText(c.usage) : '-',
      c.usage ? netText(c.usage) : '-',
      c.usage && c.usage.tcpConnections !== null ? String(c.usage.tcpConnections) : '-',
      ago(c.updatedAt, now),
    ]),
  );
}

/** Live usage: CPU as % of one core ("12.5%", "200%" = two cores busy). */
function cpuText(u: NonNullable<ContainerDto['usage']>): string {
  const pct = (n: number) => `${n >= 10 ? Math.round(n) : Math.round(n * 10) / 10}%`;
  return pct(u.cpuPercent);
}

/** "24.0 MiB" or "24.0 MiB/64.0 MiB" with a limit. */
function memText(u: NonNullable<ContainerDto['usage']>): string {
  return u.memoryLimitBytes > 0 ? `${formatSize(u.memoryBytes)}/${formatSize(u.memoryLimitBytes)}` : formatSize(u.memoryBytes);
}

/** Writable layer + logs ("212.0 MiB"); "-" when neither is measured. */
function diskText(u: NonNullable<ContainerDto['usage']>): string {
  if (u.writableBytes === null && u.logBytes === null) return '-';
  return formatSize((u.writableBytes ?? 0) + (u.logBytes ?? 0));
}

/** Received + sent per second ("1.2 MiB/s"); "-" when not measured. */
function netText(u: NonNullable<ContainerDto['usage']>): string {
  if (u.netRxBytesPerSec === null || u.netTxBytesPerSec === null) return '-';
  return `${formatSize(Math.round(u.netRxBytesPerSec + u.netTxBytesPerSec))}/s`;
}

/** The usage lines beyond the cgroup, each only when measured. */
function resourceLines(u: NonNullable<ContainerDto['usage']>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const size = (n: number | null) => (n === null ? '-' : formatSize(n));
  if (u.writableBytes !== null || u.logBytes !== null) out.push(['Disk', `writable layer ${size(u.writableBytes)}, logs ${size(u.logBytes)}`]);
  if (u.blkioReadBytes !== null || u.blkioWriteBytes !== null) {
    out.push(['Block IO', `read ${size(u.blkioReadBytes)} (${u.blkioReadOps ?? '-'} ops), written ${size(u.blkioWriteBytes)} (${u.blkioWriteOps ?? '-'} ops)`]);
  }
  if (u.netRxBytes !== null || u.netTxBytes !== null) {
    const r = (n: number | null) => (n === null ? '-' : `${formatSize(Math.round(n))}/s`);
    out.push(['Network', `rx ${size(u.netRxBytes)} (${r(u.netRxBytesPerSec)}, ${u.netRxPackets ?? '-'} packets, ${u.netRxDropped ?? '-'} dropped), tx ${size(u.netTxBytes)} (${r(u.netTxBytesPerSec)}, ${u.netTxPackets ?? '-'} packets, ${u.netTxDropped ?? '-'} dropped)`]);
  }
  if (u.tcpConnections !== null || u.sockets !== null) out.push(['Connections', `${u.tcpConnections ?? '-'} TCP connections, ${u.sockets ?? '-'} sockets`]);
  return out;
}

export function renderContainer(c: ContainerDto, now: Date): string {
  const f = c.facts as Record<string, unknown>;
  const list = (k: string) => (Array.isArray(f[k]) ? (f[k] as unknown[]).map(String) : []);
  const mounts = Array.isArray(f['mounts'])
    ? (f['mounts'] as Array<Record<string, unknown>>).map(
        (m) => `${str(m['type']) || 'mount'} ${str(m['source']) || '-'} -> ${str(m['destination'])}${m['readOnly'] ? ' (ro)' : ''}`,
      )
    : [];
  const networks = Array.isArray(f['networks'])
    ? (f['networks'] as Array<Record<string, unknown>>).map((n) => join([str(n['name']), str(n['ipAddress'])]))
    : [];
  const labels = f['labels'] && typeof f['labels'] === 'object' ? Object.entries(f['labels'] as Record<string, unknown>).map(([k, v]) => `${k}=${String(v)}`).sort() : [];
  const pairs: Array<[string, string]> = [
    ['Agent', c.agentId],
    ['ID', c.id],
    ['Name', displayName(c.name)],
    ['Image', c.imageRef],
    ['Image ID', str(f['imageId']) || '-'],
    ['State', c.removed ? `${c.state} (removed)` : c.state],
    ['User', str(f['user']) || '(image default' + (str(f['imageUser']) ? `: ${str(f['imageUser'])})` : ')')],
    ['Privileged', f['privileged'] ? 'yes' : 'no'],
    ['Read-only rootfs', f['readOnlyRootfs'] ? 'yes' : 'no'],
    ['Network mode', str(f['networkMode']) || '-'],
    ['Networks', networks.join('\n') || '-'],
    ['PID mode', str(f['pidMode']) || '-'],
    ['Cap add', list('capAdd').join(', ') || '-'],
    ['Cap drop', list('capDrop').join(', ') || '-'],
    ['Security opt', list('securityOpt').join(', ') || '-'],
    ['Devices', list('devices').join(', ') || '-'],
    ['Mounts', mounts.join('\n') || '-'],
    ['Command', list('command').join(' ') || '-'],
    ['Labels', labels.join('\n') || '-'],
    ['Updated', when(c.updatedAt, now)],
  ];
  // Live usage.
  if (c.usage) {
    const u = c.usage;
    pairs.push(
      ['CPU', `${cpuText(u)} of one core${u.cpuPercentOfQuota !== null ? ` (${Math.round(u.cpuPercentOfQuota * 10) / 10}% of its quota)` : ' (no quota)'}`],
      ['Memory', `${memText(u)}${u.memoryLimitBytes > 0 ? '' : ' (no limit)'}`],
      ['Pids', u.pidsLimit > 0 ? `${u.pids}/${u.pidsLimit}` : `${u.pids} (no limit)`],
      ...resourceLines(u),
      ['Usage at', when(u.takenAt, now)],
    );
  }
  return formatKeyValues(pairs);
}

function displayName(name: string): string {
  return name.startsWith('/') ? name.slice(1) : name;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : 0;
}

function join(parts: string[]): string {
  return parts.filter((p) => p !== '').join(' ');
}

/** "2025-01-31T12:00:00.000Z (5m ago)" / "(in 89d)". */
function when(iso: string, now: Date): string {
  return `${iso} (${ago(iso, now)})`;
}

/** Coarse relative time: "12s ago", "3m ago", "in 89d". */
export function ago(iso: string, now: Date): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const d = now.getTime() - t;
  const a = Math.abs(d);
  const s = a < 60_000 ? `${Math.floor(a / 1000)}s` : a < 3_600_000 ? `${Math.floor(a / 60_000)}m` : a < 86_400_000 ? `${Math.floor(a / 3_600_000)}h` : `${Math.floor(a / 86_400_000)}d`;
  return d >= 0 ? `${s} ago` : `in ${s}`;
}

const SPARK = '▁▂▃▄▅▆▇█';

/** One character per value, scaled to the largest; "·" where not measured. */
export function sparkline(values: Array<number | null>): string {
  const max = Math.max(0, ...values.filter((v): v is number => v !== null));
  return values.map((v) => (v === null ? '·' : SPARK[max <= 0 ? 0 : Math.min(SPARK.length - 1, Math.round((v / max) * (SPARK.length - 1)))])).join('');
}

/** Block IO as bytes/s between a point and the one before it; null for the first or when not measured (or a counter reset). */
function rates(points: ContainerUsageHistory['points'], k: 'blkioReadBytes' | 'blkioWriteBytes'): Array<number | null> {
  return points.map((p, i) => {
    const prev = points[i - 1];
    if (!prev || p[k] === null || prev[k] === null) return null;
    const dt = (Date.parse(p.at) - Date.parse(prev.at)) / 1000;
    const d = p[k]! - prev[k]!;
    return dt > 0 && d >= 0 ? d / dt : null;
  });
}

/** `bulkhead containers usage`: sparklines (min … max) per figure, then the points. */
export function renderUsageHistory(h: ContainerUsageHistory): string {
  const head = `Container ${h.containerId.slice(0, 12)} on ${h.agentId}: ${h.points.length} point${h.points.length === 1 ? '' : 's'}, one per ${h.intervalSeconds} s, last ${Math.round(h.windowSeconds / 60)} min kept\n`;
  if (h.points.length === 0) return head + 'No history: the container is not running, was removed, or its agent has reported no usage yet.\n';
  const size = (n: number | null) => (n === null ? '-' : formatSize(Math.round(n)));
  const rate = (n: number | null) => (n === null ? '-' : `${formatSize(Math.round(n))}/s`);
  const pct = (n: number | null) => (n === null ? '-' : `${n >= 10 ? Math.round(n) : Math.round(n * 10) / 10}%`);
  const P = h.points;
  const net = P.map((p) => (p.netRxBytesPerSec === null || p.netTxBytesPerSec === null ? null : p.netRxBytesPerSec + p.netTxBytesPerSec));
  const disk = P.map((p) => (p.writableBytes === null && p.logBytes === null ? null : (p.writableBytes ?? 0) + (p.logBytes ?? 0)));
  const rd = rates(P, 'blkioReadBytes');
  const wr = rates(P, 'blkioWriteBytes');
  const io = rd.map((r, i) => (r === null && wr[i] === null ? null : (r ?? 0) + (wr[i] ?? 0)));
  const range = (vs: Array<number | null>, f: (n: number | null) => string) => {
    const xs = vs.filter((v): v is number => v !== null);
    return xs.length === 0 ? 'not measured' : `${f(Math.min(...xs))} … ${f(Math.max(...xs))}, now ${f(vs[vs.length - 1] ?? null)}`;
  };
  const lines = formatKeyValues([
    ['CPU', `${sparkline(P.map((p) => p.cpuPercent))}  ${range(P.map((p) => p.cpuPercent), pct)}`],
    ['Memory', `${sparkline(P.map((p) => p.memoryBytes))}  ${range(P.map((p) => p.memoryBytes), size)}`],
    ['Disk', `${sparkline(disk)}  ${range(disk, size)}`],
    ['Network', `${sparkline(net)}  ${range(net, rate)}`],
    ['Block IO', `${sparkline(io)}  ${range(io, rate)}`],
  ]);
  const table = formatTable(
    ['TIME (UTC)', 'CPU', 'MEM', 'PIDS', 'DISK', 'NET RX', 'NET TX', 'BLKIO READ', 'BLKIO WRITE', 'CONNS'],
    P.map((p, i) => [
      p.at.slice(11, 19),
      pct(p.cpuPercent),
      size(p.memoryBytes),
      p.pids === null ? '-' : String(Math.round(p.pids)),
      size(disk[i] ?? null),
      rate(p.netRxBytesPerSec),
      rate(p.netTxBytesPerSec),
      rate(rd[i] ?? null),
      rate(wr[i] ?? null),
      p.tcpConnections === null ? '-' : String(Math.round(p.tcpConnections)),
    ]),
  );
  return head + lines + '\n' + table;
}
