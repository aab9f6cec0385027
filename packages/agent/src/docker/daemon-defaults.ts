// Owns "what does dockerd fill in for a container that does not say": its
// default log driver and log-opts, its default ulimits, and whether its
// storage driver can cap a writable layer. A create request carries none of
// these, so the authz door must learn them from the daemon to judge the
// container dockerd will make (the checks in shared/policy/checks/limits.ts
// merge them as dockerd does). Read through lockdown/daemon-config.ts — the
// dockerd behind OUR socket, its command line and daemon.json — so the
// lockdown audit and the policy never disagree about the daemon's settings.
//
// dockerd's own precedence: a flag and the same daemon.json key together
// make dockerd refuse to start, so the two sources are simply united. The
// log driver comes from `docker info` (LoggingDriver: what dockerd really
// uses) before its flags.
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { DaemonDefaults__Output, Ulimit__Output } from '@bulkhead/shared';
import { loadDaemonConfig, objectSetting, stringSetting, type DaemonConfig, type DaemonConfigOptions } from '../lockdown/daemon-config';

/** Drivers that cap a writable layer whatever their backing filesystem (graphdriver parseStorageOpt). */
const SIZE_ALWAYS = new Set(['devicemapper', 'btrfs', 'zfs', 'windowsfilter']);
/** Drivers that cap it only on xfs mounted with project quota. */
const SIZE_ON_XFS_PQUOTA = new Set(['overlay2', 'vfs']);

/** Collects dockerd's defaults; never throws (what it cannot learn is reported as unknown, with the reason). */
export async function collectDaemonDefaults(o: DaemonConfigOptions): Promise<DaemonDefaults__Output> {
  const config = await loadDaemonConfig(o);
  const d = daemonDefaultsFrom(config);
  if (SIZE_ON_XFS_PQUOTA.has(d.storageDriver) && d.storageBackingFs === 'xfs' && config.pid !== undefined) {
    const root = config.info?.DockerRootDir ?? stringSetting(config, 'data-root')?.value ?? '/var/lib/docker';
    const opts = await mountOptionsOf(join(config.procRoot, String(config.pid), 'mountinfo'), posix.join(root, d.storageDriver));
    if (opts !== undefined) {
      const pquota = opts.some((x) => x === 'prjquota' || x === 'pquota' || x === 'pqnoenforce');
      d.storageSizeSupported = pquota;
      d.storageNote = pquota ? `${d.storageDriver} on xfs with project quota` : `${d.storageDriver} caps the writable layer only on xfs mounted with pquota; ${root} is xfs without it`;
    }
  }
  return d;
}

/** The defaults as far as one read of the daemon's configuration tells them (no I/O). */
export function daemonDefaultsFrom(c: DaemonConfig): DaemonDefaults__Output {
  const why = unknownReason(c);
  const logDriver = c.info?.LoggingDriver || stringSetting(c, 'log-driver')?.value || (why === undefined ? 'json-file' : '');
  const storageDriver = c.info?.Driver ?? '';
  const backing = driverStatus(c, 'Backing Filesystem');
  const out: DaemonDefaults__Output = {
    logDriver,
    logOpts: why === undefined ? logOpts(c) : {},
    ulimits: why === undefined ? defaultUlimits(c) : [],
    configKnown: why === undefined,
    unknownReason: why ?? '',
    storageDriver,
    storageBackingFs: backing,
    storageNote: '',
  };
  if (storageDriver === '') {
    out.storageNote = `docker info did not answer${c.infoError ? ` (${c.infoError})` : ''}`;
  } else if (SIZE_ALWAYS.has(storageDriver)) {
    out.storageSizeSupported = true;
    out.storageNote = `${storageDriver} supports --storage-opt size`;
  } else if (SIZE_ON_XFS_PQUOTA.has(storageDriver)) {
    if (backing !== 'xfs') {
      out.storageSizeSupported = false;
      out.storageNote = `${storageDriver} caps the writable layer only on xfs mounted with pquota; the backing filesystem here is ${backing || 'not reported'}`;
    } else {
      out.storageNote = `${storageDriver} on xfs: whether it is mounted with pquota could not be read`;
    }
  } else {
    out.storageSizeSupported = false;
    out.storageNote = `${storageDriver} has no writable-layer size option`;
  }
  return out;
}

function unknownReason(c: DaemonConfig): string | undefined {
  if (c.pid === undefined) return `the dockerd behind ${c.dockerSocketPath} was not found in ${c.procRoot}, so its command line is unknown`;
  if (c.argv.length === 0) return `dockerd's command line (pid ${c.pid}) could not be read`;
  if (c.daemonJsonError !== undefined) return `${c.daemonJsonPath}: ${c.daemonJsonError}`;
  return undefined;
}

function driverStatus(c: DaemonConfig, key: string): string {
  const status = (c.info as { DriverStatus?: unknown } | undefined)?.DriverStatus;
  if (!Array.isArray(status)) return '';
  for (const pair of status) if (Array.isArray(pair) && pair[0] === key && typeof pair[1] === 'string') return pair[1];
  return '';
}

/** --log-opt k=v (repeatable) and daemon.json "log-opts" (string values only, as dockerd requires). */
function logOpts(c: DaemonConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of c.flags.all('log-opt')) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  for (const [k, v] of Object.entries(objectSetting(c, 'log-opts') ?? {})) if (typeof v === 'string') out[k] = v;
  return out;
}

/**
 * go-units ParseUlimit: "name=soft[:hard]", hard = soft when left out,
 * soft ≤ hard; undefined where dockerd would refuse it (and not start).
 */
export function parseUlimit(s: string): Ulimit__Output | undefined {
  // strconv.ParseInt takes a leading "+" as well as "-".
  const m = /^([a-z]+)=([+-]?\d+)(?::([+-]?\d+))?$/.exec(s);
  if (!m) return undefined;
  const soft = Number(m[2]);
  const hard = m[3] === undefined ? soft : Number(m[3]);
  return { name: m[1]!, soft, hard };
}

/** --default-ulimit (repeatable, keyed by name: the last wins) and daemon.json "default-ulimits" ({name: {Name, Soft, Hard}}). */
function defaultUlimits(c: DaemonConfig): Ulimit__Output[] {
  const byName = new Map<string, Ulimit__Output>();
  for (const s of c.flags.all('default-ulimit')) {
    const u = parseUlimit(s);
    if (u) byName.set(u.name, u);
  }
  for (const [name, v] of Object.entries(objectSetting(c, 'default-ulimits') ?? {})) {
    if (v === null || typeof v !== 'object') continue;
    // units.Ulimit has no JSON tags: Go matches "Name"/"Soft"/"Hard" case-insensitively (the
    // last spelling in the object wins, as in Go's decoder).
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) o[k.toLowerCase()] = x;
    const num = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) ? Math.trunc(x) : 0);
    byName.set(name, { name: typeof o['name'] === 'string' && o['name'] !== '' ? o['name'] : name, soft: num(o['soft']), hard: num(o['hard']) });
  }
  return [...byName.values()];
}

/**
 * The super-block options of the filesystem holding `path`, from a
 * mountinfo file (the longest mount point that is `path` or a parent of
 * it); undefined when the file cannot be read.
 */
export async function mountOptionsOf(mountinfo: string, path: string): Promise<string[] | undefined> {
  let text: string;
  try {
    text = await readFile(mountinfo, 'utf8');
  } catch {
    return undefined;
  }
  let best: { point: string; opts: string[] } | undefined;
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    const dash = parts.indexOf('-');
    if (dash < 0 || parts.length < dash + 4) continue;
    const point = parts[4]!.replace(/\\040/g, ' ');
    const under = point === '/' || path === point || path.startsWith(`${point}/`);
    if (!under || (best && best.point.length > point.length)) continue;
    best = { point, opts: [...parts[5]!.split(','), ...parts[dash + 3]!.split(',')] };
  }
  return best?.opts;
}
