// Options of the running agent, with their defaults in one place.
import { BulkheadError, parseDuration, resolveMetricsAddress } from '@bulkhead/shared';
import { parseControllerList } from './link/controller-address';
import { resolveHostAuditOptions, type HostAuditScheduleInput, type HostAuditScheduleOptions } from './cis/host-audit-options';
import { v8ReducesMemoryItself } from './memory/heap-trim';

export interface AgentOptions {
  stateDir: string;
  /** Docker engine URL; undefined = DOCKER_HOST or the default socket. */
  dockerHost: string | undefined;
  /** Overrides the controller addresses saved at enrollment (one or more, tried in order). */
  controller: string[] | undefined;
  hostLabels: Record<string, string>;
  /** Full re-list of containers, to catch events dockerd dropped. Default 30 s. */
  reconcileIntervalMs: number;
  /** Unix socket of the Docker authorization plugin; undefined = prevention off. */
  authzSocket: string | undefined;
  /** A local policy file enforced until the controller sends a bundle. */
  policyFile: string | undefined;
  /**
   * Prometheus metrics listener (plain HTTP, GET /metrics). Default
   * 127.0.0.1:9465; undefined (--no-metrics) = none. Loopback only unless
   * `metricsAllowRemote`.
   */
  metricsListen: string | undefined;
  /** Allow a non-loopback metrics address. Default false. */
  metricsAllowRemote: boolean;
  /** Live usage: how often every running container's cgroup is read. Default 5 s; 0 (--no-usage) = off. */
  usageIntervalMs: number;
  /** Live usage: how often usage deltas go to the controller. Default 30 s. */
  usageReportIntervalMs: number;
  /**
   * Live usage beyond the cgroup, each on by default: writable layer and log
   * sizes (--no-disk-usage), network namespace counters and sockets
   * (--no-net-usage), block IO (--no-blkio-usage).
   */
  usageSources: { disk: boolean; net: boolean; blkio: boolean };
  /** How often each container's disk and network are read (a whole number of usage intervals). Default 20 s. */
  usageResourceIntervalMs: number;
  /** Host audit: interval (default 1 h, 0 = off), lockdown fixes (all off), host paths. */
  audit: HostAuditScheduleOptions;
  /** How often an idle agent gives back unused V8 heap (memory/heap-trim.ts). Default 30 s; 0 or undefined = off. */
  heapTrimIntervalMs?: number;
  /** Use% (bytes or inodes) of the engine's data root / log filesystem that is a host finding. Default 85 from the CLI; 0 or undefined = off. */
  dataRootThresholdPercent?: number;
  /** Image signatures (signatures/verifier.ts): registry access and verdict cache. */
  signatures: SignatureOptions;
}

export interface SignatureOptions {
  /** Docker's per-registry CA layout (DIR/HOST:PORT/ca.crt). Default /etc/docker/certs.d. */
  registryCertsDir: string;
  /** Registry credentials in Docker's config.json format; undefined = anonymous. Must not be world-readable. */
  registryAuthFile: string | undefined;
  /** One verification, every registry request included. Default 1500 ms. */
  timeoutMs: number;
  /** How long a verified verdict is reused. Default 10 min (unsigned/rejected: at most 60 s; unreachable: 10 s). */
  cacheTtlMs: number;
}

export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9465';

export const DEFAULT_REGISTRY_CERTS_DIR = '/etc/docker/certs.d';

export const DEFAULT_AUTHZ_SOCKET = '/run/docker/plugins/bulkhead.sock';

export interface AgentOptionsInput {
  stateDir: string;
  dockerHost?: string | undefined;
  /** One or more addresses; each string may be a comma-separated list. */
  controller?: string | readonly string[] | undefined;
  hostLabel?: string[] | undefined;
  reconcileInterval?: string | number | undefined;
  /** false (from --no-authz) turns prevention off; a string is the socket path. */
  authzSocket?: string | boolean | undefined;
  policyFile?: string | undefined;
  /** false (from --no-metrics) turns the metrics listener off. */
  metricsListen?: string | false | undefined;
  metricsAllowRemote?: boolean | undefined;
  /** Live usage; false (from --no-usage) turns sampling off. */
  usageInterval?: string | number | false | undefined;
  usageReportInterval?: string | number | undefined;
  /** false (from --no-disk-usage, --no-net-usage, --no-blkio-usage) turns that measurement off. Default true. */
  diskUsage?: boolean | undefined;
  netUsage?: boolean | undefined;
  blkioUsage?: boolean | undefined;
  usageResourceInterval?: string | number | undefined;
  /** Host audit: the `run` flags of cis/host-audit-options.ts. */
  audit?: HostAuditScheduleInput | undefined;
  heapTrimInterval?: string | number | undefined;
  dataRootThreshold?: string | number | undefined;
  registryCertsDir?: string | undefined;
  registryAuthFile?: string | undefined;
  signatureTimeout?: string | number | undefined;
  signatureCacheTtl?: string | number | undefined;
}

export function resolveAgentOptions(input: AgentOptionsInput): AgentOptions {
  if (!input.stateDir) throw new BulkheadError('BK_ERR_CONFIG_INVALID', '--state-dir is required');
  const controller = input.controller === undefined || input.controller === '' || (Array.isArray(input.controller) && input.controller.length === 0)
    ? undefined
    : parseControllerList(input.controller);
  const hostLabels: Record<string, string> = {};
  for (const l of input.hostLabel ?? []) {
    const i = l.indexOf('=');
    if (i <= 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `host label "${l}" is not key=value`);
    hostLabels[l.slice(0, i)] = l.slice(i + 1);
  }
  const reconcileIntervalMs = parseDuration(input.reconcileInterval ?? '30s', 'reconcile-interval');
  if (reconcileIntervalMs < 1000) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'reconcile-interval must be at least 1s');
  let dockerHost = input.dockerHost || undefined;
  if (dockerHost?.startsWith('/')) dockerHost = `unix://${dockerHost}`; // a bare socket path
  if (dockerHost && !/^(unix|tcp|https?|npipe):\/\//.test(dockerHost)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `docker host "${dockerHost}" must be a socket path or a URL like unix:///var/run/docker.sock or tcp://127.0.0.1:2376`);
  }
  const metricsListen = input.metricsListen === false ? undefined : input.metricsListen || DEFAULT_METRICS_LISTEN;
  const metricsAllowRemote = input.metricsAllowRemote === true;
  if (metricsListen !== undefined) resolveMetricsAddress(metricsListen, metricsAllowRemote);
  return {
    stateDir: input.stateDir,
    dockerHost,
    controller,
    hostLabels,
    reconcileIntervalMs,
    authzSocket: authzSocket(input.authzSocket),
    policyFile: input.policyFile || undefined,
    metricsListen,
    metricsAllowRemote,
    ...resolveUsageIntervals(input),
    usageSources: { disk: input.diskUsage !== false, net: input.netUsage !== false, blkio: input.blkioUsage !== false },
    usageResourceIntervalMs: resolveResourceInterval(input),
    audit: resolveHostAuditOptions(input.audit),
    heapTrimIntervalMs: heapTrimInterval(input.heapTrimInterval),
    dataRootThresholdPercent: dataRootThreshold(input.dataRootThreshold),
    signatures: resolveSignatureOptions(input),
  };
}

/** Registry access for image signatures; the auth file's mode is checked when the agent starts. */
export function resolveSignatureOptions(input: AgentOptionsInput): SignatureOptions {
  const timeoutMs = parseDuration(input.signatureTimeout ?? '1500ms', 'signature-timeout');
  if (!(timeoutMs >= 100 && timeoutMs <= 60_000)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'signature-timeout must be from 100ms to 60s');
  const ttl = input.signatureCacheTtl ?? '10m';
  const cacheTtlMs = typeof ttl === 'string' && /^\s*0+\s*$/.test(ttl) ? 0 : parseDuration(ttl, 'signature-cache-ttl');
  if (!(cacheTtlMs >= 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'signature-cache-ttl must be a duration (0 = no cache)');
  const registryCertsDir = input.registryCertsDir || DEFAULT_REGISTRY_CERTS_DIR;
  if (!registryCertsDir.startsWith('/')) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `registry-certs-dir "${registryCertsDir}" must be an absolute path`);
  const registryAuthFile = input.registryAuthFile || undefined;
  if (registryAuthFile && !registryAuthFile.startsWith('/')) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `registry-auth-file "${registryAuthFile}" must be an absolute path`);
  return { registryCertsDir, registryAuthFile, timeoutMs, cacheTtlMs };
}

function dataRootThreshold(v: string | number | undefined): number {
  if (v === undefined) return 85;
  const n = typeof v === 'number' ? v : Number(String(v).trim().replace(/%$/, ''));
  if (!Number.isFinite(n) || n < 0 || n > 100 || (typeof v === 'string' && v.trim() === '')) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `data-root-threshold must be a percentage from 1 to 100 (or 0 = off), got "${v}"`);
  }
  return n;
}

/** Disk and network reads: at least one usage interval apart. */
function resolveResourceInterval(input: AgentOptionsInput): number {
  const ms = parseDuration(input.usageResourceInterval ?? '60s', 'usage-resource-interval');
  const usage = resolveUsageIntervals(input).usageIntervalMs;
  if (!(ms > 0)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'usage-resource-interval must be a positive duration');
  if (usage > 0 && ms < usage) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'usage-resource-interval must not be shorter than usage-interval');
  return ms;
}

function heapTrimInterval(v: string | number | undefined): number {
  // auto (the default): 30 s, unless V8 already gives memory back by itself — see heap-trim.ts.
  if (v === undefined || (typeof v === 'string' && v.trim() === 'auto')) return v8ReducesMemoryItself() ? 0 : 30_000;
  if (typeof v === 'string' && /^\s*0+\s*$/.test(v)) return 0;
  const ms = parseDuration(v, 'heap-trim-interval');
  if (ms !== 0 && ms < 10_000) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'heap-trim-interval must be at least 10s (or 0 = off)');
  return ms;
}

function authzSocket(v: string | boolean | undefined): string | undefined {
  if (v === false) return undefined;
  if (v === undefined || v === true || v === '') return DEFAULT_AUTHZ_SOCKET;
  if (!v.startsWith('/') || !v.endsWith('.sock')) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `authz socket "${v}" must be an absolute path ending in .sock (dockerd finds plugins as /run/docker/plugins/NAME.sock)`);
  }
  return v;
}

/** Live usage: the sampling and report intervals, checked at start. */
function resolveUsageIntervals(input: AgentOptionsInput): { usageIntervalMs: number; usageReportIntervalMs: number } {
  const given = input.usageInterval ?? '5s';
  const usageIntervalMs = given === false || (typeof given === 'string' && /^\s*0+\s*$/.test(given)) ? 0 : parseDuration(given, 'usage-interval');
  const usageReportIntervalMs = parseDuration(input.usageReportInterval ?? '30s', 'usage-report-interval');
  if (usageIntervalMs === 0) return { usageIntervalMs, usageReportIntervalMs };
  if (usageIntervalMs < 1000) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'usage-interval must be at least 1s (or --no-usage)');
  if (usageReportIntervalMs < usageIntervalMs) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'usage-report-interval must not be shorter than usage-interval');
  return { usageIntervalMs, usageReportIntervalMs };
}
