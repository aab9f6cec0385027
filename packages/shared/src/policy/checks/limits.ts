// Create-time limits against resource exhaustion of the HOST (move 6 of the
// mission, the static half): a container's logs must rotate, its open-file
// limit must be bounded, its block IO throttled where a rule asks, its
// writable layer capped where the storage driver can cap it.
//
// dockerd completes a container's log config and ulimits with ITS defaults
// (--log-driver / --log-opt / --default-ulimit, or daemon.json): at create
// for the log config (daemon.mergeAndVerifyLogConfig, stored, so inspect
// shows it), at every inspect and start for ulimits (daemon.mergeUlimits).
// A create request carries neither, so these checks merge the defaults from
// the host facts exactly as dockerd does — unless the facts say dockerd has
// merged them already (daemonDefaultsMerged: facts from an inspect). When a
// request depends on defaults the agent could not learn, the evidence says
// "cannot tell": an enforce rule then refuses (fail-closed), a monitor rule
// reports it.
import type { ContainerFacts__Output, DaemonDefaults__Output, HostFacts__Output, Ulimit__Output } from '../../proto/index';
import { formatBytes } from '../units';
import type { Evidence } from '../types';
import { defineCheck, lazySchema, NO_EVIDENCE, type TypeBuilder } from './define';

// ---------------------------------------------------------------- sizes as dockerd reads them

const SIZE = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/;

function goSize(s: string, base: number): number | undefined {
  const m = SIZE.exec(s);
  if (!m || !/^\d+(\.\d+)?$/.test(m[1]!)) return undefined;
  const exp = m[2] === undefined ? 0 : 'kmgtp'.indexOf(m[2].toLowerCase()) + 1;
  return Number(m[1]) * base ** exp;
}

/**
 * go-units FromHumanSize, which the json-file and local log drivers use for
 * max-size: DECIMAL units ("10m" and "10MiB" are both 10 000 000 bytes),
 * undefined where it returns an error (a sign, a space before the number).
 */
export function fromHumanSize(s: string): number | undefined {
  return goSize(s, 1000);
}

/** go-units RAMInBytes (`--storage-opt size=`): BINARY units ("10G" is 10 GiB). */
export function ramInBytes(s: string): number | undefined {
  return goSize(s, 1024);
}

const SizeString = (T: TypeBuilder, description: string) =>
  T.String({ pattern: SIZE.source, description });

// ---------------------------------------------------------------- daemon defaults

function defaultsOf(host: HostFacts__Output | undefined): DaemonDefaults__Output | undefined {
  return host?.daemonDefaults ?? undefined;
}

function unknownWhy(d: DaemonDefaults__Output | undefined): string {
  if (!d) return 'the agent has not learnt them (no host facts yet)';
  return d.unknownReason || 'dockerd\'s command line and daemon.json could not be read';
}

/** A container's log config as dockerd runs it, or why that cannot be told. */
export type EffectiveLogConfig =
  | { known: true; driver: string; opts: Readonly<Record<string, string>>; /** What the daemon's defaults added, for messages. */ fromDefaults: string }
  | { known: false; driver: string; opts: Readonly<Record<string, string>>; why: string };

/** dockerd's cache options (logcache.MergeDefaultLogConfig: merged from the defaults whatever the driver). */
const CACHE_OPT = /^cache-(disabled|max-size|max-file|compress)$/;

/**
 * mergeAndVerifyLogConfig: an empty type is the daemon's default driver;
 * when the type IS the default driver, the default log-opts fill in the
 * keys the container leaves out; the cache-* defaults are added for any
 * driver. undefined when the facts carry no log config.
 */
export function effectiveLogConfig(c: ContainerFacts__Output, host: HostFacts__Output | undefined): EffectiveLogConfig | undefined {
  const lc = c.logConfig;
  if (!lc) return undefined;
  const given = lc.config ?? {};
  if (c.daemonDefaultsMerged === true && lc.type !== '') return { known: true, driver: lc.type, opts: given, fromDefaults: '' };
  const d = defaultsOf(host);
  const defaultDriver = d?.logDriver ?? '';
  const driver = lc.type || defaultDriver;
  if (driver === '') return { known: false, driver: '', opts: given, why: `dockerd's default log driver is unknown (${unknownWhy(d)})` };
  if (!d?.configKnown) {
    // The driver is known; whether default log-opts join it is not.
    return { known: false, driver, opts: given, why: `dockerd's default log-opts are unknown (${unknownWhy(d)})` };
  }
  const opts: Record<string, string> = { ...given };
  const added: string[] = [];
  for (const [k, v] of Object.entries(d.logOpts)) {
    if (k in opts) continue;
    if (driver === defaultDriver || CACHE_OPT.test(k)) {
      opts[k] = v;
      added.push(`${k}=${v}`);
    }
  }
  return { known: true, driver, opts, fromDefaults: added.join(', ') };
}

function describeDefaults(d: DaemonDefaults__Output | undefined): string {
  const opts = Object.entries(d?.logOpts ?? {}).map(([k, v]) => `${k}=${v}`).sort();
  return `daemon default log driver ${d?.logDriver || 'unknown'}, default log-opts: ${opts.length > 0 ? opts.join(', ') : 'none'}`;
}

// ---------------------------------------------------------------- log-rotation

/** Drivers that keep logs in files on this host (json-file grows without bound unless max-size is set). */
const FILE_DRIVERS = new Set(['json-file', 'local']);

const LogRotationParams = lazySchema((T) => T.Object(
  {
    maxSize: T.Optional(SizeString(T, 'Largest max-size a json-file or local log may rotate at (e.g. "100m"; decimal units, as dockerd reads max-size). Default: any max-size.')),
  },
  { additionalProperties: false },
));

export const logRotation = defineCheck({
  type: 'log-rotation',
  group: 'isolation',
  summary: 'Container logs must not grow without bound on the host: json-file needs `--log-opt max-size` (the container\'s, or dockerd\'s default log-opts); `local` rotates by default (20 MB × 5); drivers that ship logs elsewhere (journald, syslog, fluentd …, or none) pass.',
  remedy: 'run with `--log-opt max-size=10m --log-opt max-file=3` (compose: `logging.options`), use `--log-driver local`, or give dockerd default log-opts ("log-opts": {"max-size": "10m", "max-file": "3"} in daemon.json)',
  params: LogRotationParams,
  defaults: {},
  validate(p) {
    return p.maxSize !== undefined && fromHumanSize(p.maxSize) === undefined ? [{ path: 'maxSize', message: `"${p.maxSize}" is not a size dockerd reads (e.g. "100m")` }] : [];
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const max = params.maxSize !== undefined ? fromHumanSize(params.maxSize) : undefined;
    return ({ container: c, host }) => {
      const lc = effectiveLogConfig(c, host);
      if (!lc || (lc.driver !== '' && !FILE_DRIVERS.has(lc.driver))) return NO_EVIDENCE;
      const size = lc.opts['max-size'];
      const d = defaultsOf(host);
      if (!lc.known) {
        // A size the container gives itself decides, whatever the defaults.
        if (size !== undefined && lc.driver !== '') return judgeSize(lc.driver, size, max, '');
        if (lc.driver === 'local' && max === undefined) return NO_EVIDENCE;
        const what = lc.driver === '' ? 'the daemon\'s default log driver' : lc.driver;
        return [{ location: 'logConfig', detail: `cannot tell whether the logs rotate: the request sets ${size === undefined ? 'no max-size' : `max-size=${size}`} for ${what} and ${lc.why}` }];
      }
      const via = lc.fromDefaults !== '' && size !== undefined && !(c.logConfig?.config ?? {})['max-size'] ? ' (from dockerd\'s default log-opts)' : '';
      if (lc.driver === 'local') {
        // local rotates by itself: 20 MB (decimal: FromHumanSize) files, 5 of them.
        if (max === undefined) return NO_EVIDENCE;
        return judgeSize('local', size ?? '20m', max, size === undefined ? ' (local\'s default)' : via);
      }
      if (size === undefined) {
        const why = c.daemonDefaultsMerged === true ? 'as dockerd stored it, its defaults merged in' : describeDefaults(d);
        return [{ location: 'logConfig', detail: `no log rotation: json-file without max-size (${why})` }];
      }
      return judgeSize('json-file', size, max, via);
    };
  },
});

function judgeSize(driver: string, size: string, max: number | undefined, via: string): Evidence[] {
  const bytes = fromHumanSize(size);
  if (bytes === undefined || bytes <= 0) {
    if (driver === 'local' && bytes === 0) return NO_EVIDENCE;
    return [{ location: 'logConfig.max-size', detail: `no log rotation: ${driver} max-size="${size}"${via} is not a positive size (dockerd refuses to start the container's logger with it)` }];
  }
  if (max !== undefined && bytes > max) {
    return [{ location: 'logConfig.max-size', detail: `${driver} rotates at max-size=${size}${via} (${formatDecimal(bytes)}), above the rule's ${formatDecimal(max)}` }];
  }
  return NO_EVIDENCE;
}

function formatDecimal(n: number): string {
  for (const [u, f] of [['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) if (n >= f) return `${Math.round((n / f) * 100) / 100} ${u}`;
  return `${n} B`;
}

// ---------------------------------------------------------------- ulimits

/**
 * The ulimits runc will set, in the order dockerd hands them over: the
 * container's, then the daemon's defaults whose exact name the container
 * does not use (mergeUlimits). undefined when the defaults matter and are
 * unknown.
 */
export function effectiveUlimits(c: ContainerFacts__Output, host: HostFacts__Output | undefined): { list: Ulimit__Output[]; why?: string } {
  const own = c.ulimits?.values ?? [];
  if (c.daemonDefaultsMerged === true) return { list: own };
  const d = defaultsOf(host);
  if (!d?.configKnown) return { list: own, why: `dockerd's default ulimits are unknown (${unknownWhy(d)})` };
  const names = new Set(own.map((u) => u.name));
  return { list: [...own, ...d.ulimits.filter((u) => !names.has(u.name))] };
}

const UlimitsParams = lazySchema((T) => T.Object(
  {
    max: T.Optional(
      T.Record(T.String({ pattern: '^[a-z]+$' }), T.Integer({ minimum: 0 }), {
        description: 'Largest soft and hard value per ulimit name (lower case, as `--ulimit`: nofile, nproc, memlock …). Default {"nofile": 1048576}. Unlimited (-1) exceeds any maximum.',
      }),
    ),
    requireSet: T.Optional(T.Boolean({ description: 'A ulimit named in `max` that neither the container nor dockerd\'s --default-ulimit sets breaks the rule (the container then inherits the runtime\'s limit, which the facts do not show). Default true.' })),
  },
  { additionalProperties: false },
));

function showLimit(n: number): string {
  return n < 0 ? 'unlimited' : String(n);
}

export const ulimits = defineCheck({
  type: 'ulimits',
  group: 'isolation',
  summary: 'Ulimits (`--ulimit nofile=…`) must be set — by the container or by dockerd\'s --default-ulimit — and within a maximum: an unbounded open-file limit lets one container exhaust the host\'s file table.',
  remedy: 'run with `--ulimit nofile=65536:65536` (compose: `ulimits: { nofile: 65536 }`) within the rule\'s maximum, or give dockerd a default (`--default-ulimit nofile=65536:65536`, daemon.json "default-ulimits")',
  params: UlimitsParams,
  defaults: { max: { nofile: 1_048_576 }, requireSet: true },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const max = Object.entries(params.max ?? { nofile: 1_048_576 });
    const requireSet = params.requireSet !== false;
    return ({ container: c, host }) => {
      // Facts that do not say whether dockerd's defaults are in (built by
      // an agent that predates ulimits) cannot tell "none" from "not read".
      if (c.daemonDefaultsMerged === undefined) return NO_EVIDENCE;
      const eff = effectiveUlimits(c, host);
      let out: Evidence[] | undefined;
      for (const [name, limit] of max) {
        // runc gets "RLIMIT_" + upper case, in order: the last entry of a name wins.
        const upper = name.toUpperCase();
        const entries = eff.list.filter((u) => u.name.toUpperCase() === upper);
        const u = entries.at(-1);
        if (!u) {
          if (eff.why !== undefined) (out ??= []).push({ location: `ulimits[${name}]`, detail: `cannot tell the ${name} ulimit: the request sets none and ${eff.why}` });
          else if (requireSet) {
            (out ??= []).push({ location: `ulimits[${name}]`, detail: `no ${name} ulimit: the container sets none and dockerd has no --default-ulimit for it, so it inherits the runtime's limit (max ${limit})` });
          }
          continue;
        }
        const own = (c.ulimits?.values ?? []).includes(u) ? '' : ' (dockerd\'s --default-ulimit)';
        const over = (n: number): boolean => n < 0 || n > limit;
        if (over(u.soft) || over(u.hard)) {
          (out ??= []).push({ location: `ulimits[${name}]`, detail: `${name} ulimit soft ${showLimit(u.soft)} / hard ${showLimit(u.hard)}${own} is above the maximum ${limit}` });
        }
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- blkio-limits

const BLKIO_KINDS = ['read-bps', 'write-bps', 'read-iops', 'write-iops'] as const;
const BLKIO_FLAG: Readonly<Record<string, string>> = {
  'read-bps': '--device-read-bps', 'write-bps': '--device-write-bps', 'read-iops': '--device-read-iops', 'write-iops': '--device-write-iops',
};

const BlkioParams = lazySchema((T) => T.Object(
  {
    require: T.Optional(
      T.Array(T.Union(BLKIO_KINDS.map((k) => T.Literal(k))), {
        minItems: 1,
        uniqueItems: true,
        description: 'Which throttles must be set: read-bps, write-bps, read-iops, write-iops (--device-read-bps …). Default ["write-bps"]. BlkioWeight (--blkio-weight) is a weight, not a limit, and does not count.',
      }),
    ),
    devices: T.Optional(
      T.Array(T.String({ pattern: '^/' }), {
        description: 'Host block devices each required throttle must cover (e.g. "/dev/sda"). Default: a throttle on any device counts.',
      }),
    ),
  },
  { additionalProperties: false },
));

export const blkioLimits = defineCheck({
  type: 'blkio-limits',
  group: 'isolation',
  summary: 'Block-IO throttles (`--device-read-bps`, `--device-write-bps`, `--device-read-iops`, `--device-write-iops`) must be set, optionally on given devices: one container must not saturate a disk its neighbours share.',
  remedy: 'run with e.g. `--device-write-bps /dev/sda:50mb` (compose: `blkio_config.device_write_bps`) for each throttle and device the rule names',
  params: BlkioParams,
  defaults: { require: ['write-bps'] },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const require = params.require ?? ['write-bps'];
    const devices = params.devices ?? [];
    return ({ container: c }) => {
      // A rate of 0 sets no throttle (the kernel reads 0 as "no limit").
      const set = (c.blkioThrottles?.values ?? []).filter((b) => b.rate > 0);
      let out: Evidence[] | undefined;
      for (const kind of require) {
        const have = set.filter((b) => b.kind === kind);
        if (devices.length === 0) {
          if (have.length === 0) (out ??= []).push({ location: `blkio[${kind}]`, detail: `no ${kind} throttle (${BLKIO_FLAG[kind]})` });
          continue;
        }
        const missing = devices.filter((dev) => !have.some((b) => b.path === dev));
        if (missing.length > 0) (out ??= []).push({ location: `blkio[${kind}]`, detail: `no ${kind} throttle (${BLKIO_FLAG[kind]}) on ${missing.join(', ')}` });
      }
      return out ?? NO_EVIDENCE;
    };
  },
});

// ---------------------------------------------------------------- storage-size

const StorageSizeParams = lazySchema((T) => T.Object(
  {
    maxSize: T.Optional(SizeString(T, 'Largest writable-layer size allowed (e.g. "20G"; binary units, as dockerd reads `--storage-opt size=`). Default: any size.')),
    unsupportedIsViolation: T.Optional(T.Boolean({ description: 'On a host whose storage driver cannot cap the writable layer (overlay2 without xfs project quota, vfs, fuse-overlayfs …), a container without a size breaks the rule anyway. Default false: such hosts pass, and the finding-free result is explained in the docs.' })),
  },
  { additionalProperties: false },
));

export const storageSize = defineCheck({
  type: 'storage-size',
  group: 'isolation',
  summary: 'The writable layer must be capped (`--storage-opt size=`) where the storage driver supports it (overlay2 on xfs with pquota, devicemapper, btrfs, zfs, windowsfilter); elsewhere the check passes unless `unsupportedIsViolation`.',
  remedy: 'run with `--storage-opt size=10G` (compose: `storage_opt: { size: 10G }`), or mount volumes with their own quota for what the container writes',
  params: StorageSizeParams,
  defaults: { unsupportedIsViolation: false },
  validate(p) {
    return p.maxSize !== undefined && ramInBytes(p.maxSize) === undefined ? [{ path: 'maxSize', message: `"${p.maxSize}" is not a size dockerd reads (e.g. "20G")` }] : [];
  },
  check(input, params) {
    return this.compile!(params)(input);
  },
  compile(params) {
    const max = params.maxSize !== undefined ? ramInBytes(params.maxSize) : undefined;
    const strict = params.unsupportedIsViolation === true;
    return ({ container: c, host }) => {
      const size = c.storageOpt?.values['size'];
      if (size !== undefined) {
        const bytes = ramInBytes(size);
        if (bytes === undefined || bytes <= 0) return [{ location: 'storageOpt.size', detail: `--storage-opt size=${size} is not a positive size` }];
        if (max !== undefined && bytes > max) return [{ location: 'storageOpt.size', detail: `writable layer capped at ${formatBytes(bytes)}, above the rule's ${formatBytes(max)}` }];
        return NO_EVIDENCE;
      }
      const d = defaultsOf(host);
      const driver = d?.storageDriver || 'unknown';
      const note = d?.storageNote ? `: ${d.storageNote}` : '';
      const supported = d?.storageSizeSupported;
      if (supported === true) return [{ location: 'storageOpt.size', detail: `no writable-layer size limit (--storage-opt size=), which storage driver ${driver} supports here${note}` }];
      if (supported === false) {
        return strict ? [{ location: 'storageOpt.size', detail: `no writable-layer size limit: not supported by storage driver ${driver}${note}` }] : NO_EVIDENCE;
      }
      return [{ location: 'storageOpt.size', detail: `cannot tell whether storage driver ${driver} supports a writable-layer size limit (${d ? d.storageNote || 'not reported' : unknownWhy(d)}) and the container sets none` }];
    };
  },
});

export const LIMIT_CHECKS = [logRotation, ulimits, blkioLimits, storageSize] as const;
