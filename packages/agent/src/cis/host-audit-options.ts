// Options of the agent's periodic host audit (lockdown + CIS + image
// hygiene, reported to the controller), with their defaults in one place, and
// the `bulkhead-agent run` flags that set them. Every lockdown fix is OFF
// unless named in --lockdown-fix; the image prune policy is OFF unless
// --image-prune.
import { Option, type Command } from 'commander';
import { BulkheadError, parseDuration } from '@bulkhead/shared';
import { LOCKDOWN_FIX_NAMES, type LockdownFixName } from '../lockdown/lockdown-options';
import { collect, parseOnOff, resolvePrunePolicy, splitList, type ImagePruneInput, type ImagePrunePolicy } from '../hygiene/prune-policy';

export const DEFAULT_AUDIT_INTERVAL = '1h';
export const DEFAULT_IMAGE_UNUSED_DAYS = 30;
/** Shorter intervals would make the audit a constant load on the engine. */
export const MIN_AUDIT_INTERVAL_MS = 1000;

/** The flag spelling of each fix: `dockerSocketMode` → `docker-socket-mode`. */
export const LOCKDOWN_FIX_FLAGS: Readonly<Record<string, LockdownFixName>> = Object.fromEntries(
  LOCKDOWN_FIX_NAMES.map((n) => [n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), n]),
);

export interface HostAuditScheduleOptions {
  /** Time between audits; the first runs at start. 0 = no periodic audit at all. Default 1 h. */
  intervalMs: number;
  /** Fixes applied when their finding is present; each off unless true. */
  fixes: Partial<Record<LockdownFixName, boolean>>;
  /** Group the dockerSocketOwnership fix gives the socket. Default "docker". */
  dockerGroup: string;
  /** Where the host's filesystem is visible. Default "/" (an agent in a container: "/host"). */
  hostRoot: string;
  /** The host's /proc. Default `<hostRoot>/proc`. */
  procRoot: string | undefined;
  /** containerd's socket (host path). Default: dockerd's --containerd, else /run/containerd/containerd.sock. */
  containerdSocketPath: string | undefined;
  /** daemon.json (host path). Default: dockerd's --config-file, else /etc/docker/daemon.json. */
  daemonJsonPath: string | undefined;
  /** Expected members of the docker group; anybody else is a finding. Default: none given (every member listed). */
  trustedUsers: string[] | undefined;
  /** Images idle this many days are stale in the hygiene summary. Default 30. */
  imageUnusedDays: number;
  /**
   * The image prune policy, run by each audit after the hygiene summary;
   * undefined (the default) = off. Its scope's age defaults to imageUnusedDays.
   */
  imagePrune: ImagePrunePolicy | undefined;
}

export interface HostAuditScheduleInput {
  /** A duration ("1h", "15m"), or "0"/"off" to switch the audit off. */
  auditInterval?: string | number | undefined;
  /** Fix names, kebab-case (`docker-socket-mode`) or camelCase; comma-separated entries are split. */
  lockdownFix?: readonly string[] | undefined;
  dockerGroup?: string | undefined;
  hostRoot?: string | undefined;
  procRoot?: string | undefined;
  containerdSocket?: string | undefined;
  daemonJson?: string | undefined;
  trustedUsers?: readonly string[] | undefined;
  imageUnusedDays?: string | number | undefined;
  /** --image-prune: true switches the prune policy on; false (explicitly off) ignores its scope flags. */
  imagePrune?: boolean | undefined;
  imagePruneOlderThan?: string | number | undefined;
  imagePruneInclude?: readonly string[] | undefined;
  imagePruneExclude?: readonly string[] | undefined;
  imagePruneDangling?: boolean | undefined;
  imagePruneLabel?: readonly string[] | undefined;
  imagePruneDryRun?: boolean | undefined;
}

/** The scope flags of the prune policy, as `run` spells them. */
const PRUNE_FLAGS: Record<keyof ImagePruneInput, string> = {
  olderThan: 'image-prune-older-than', include: 'image-prune-include', exclude: 'image-prune-exclude',
  dangling: 'image-prune-dangling', label: 'image-prune-label', dryRun: 'image-prune-dry-run',
};

export function resolveHostAuditOptions(input: HostAuditScheduleInput = {}): HostAuditScheduleOptions {
  const raw = input.auditInterval ?? DEFAULT_AUDIT_INTERVAL;
  const off = raw === 0 || (typeof raw === 'string' && /^\s*(0|off)\s*$/i.test(raw));
  const intervalMs = off ? 0 : parseDuration(raw, 'audit-interval');
  if (!off && intervalMs < MIN_AUDIT_INTERVAL_MS) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'audit-interval must be at least 1s, or 0 to switch the host audit off');
  }
  const fixes: Partial<Record<LockdownFixName, boolean>> = {};
  for (const name of splitList(input.lockdownFix)) {
    const fix = LOCKDOWN_FIX_FLAGS[name] ?? (LOCKDOWN_FIX_NAMES as readonly string[]).find((n) => n === name);
    if (fix === undefined) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `lockdown fix "${name}" is unknown (known: ${Object.keys(LOCKDOWN_FIX_FLAGS).join(', ')})`);
    }
    fixes[fix as LockdownFixName] = true;
  }
  if (off && Object.keys(fixes).length > 0) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'lockdown fixes run as part of the host audit; they cannot be enabled with audit-interval 0');
  }
  const unused = Number(input.imageUnusedDays ?? DEFAULT_IMAGE_UNUSED_DAYS);
  if (!Number.isFinite(unused) || unused < 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `image-unused-days must be a non-negative number, got "${String(input.imageUnusedDays)}"`);
  const hostRoot = input.hostRoot || '/';
  for (const [flag, v] of [['host-root', hostRoot], ['proc-root', input.procRoot], ['containerd-socket', input.containerdSocket], ['daemon-json', input.daemonJson]] as const) {
    if (v && !v.startsWith('/')) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${flag} must be an absolute path, got "${v}"`);
  }
  const dockerGroup = input.dockerGroup || 'docker';
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(dockerGroup)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `docker-group "${dockerGroup}" is not a group name`);
  const trusted = splitList(input.trustedUsers);
  return {
    intervalMs,
    fixes,
    dockerGroup,
    hostRoot,
    procRoot: input.procRoot || undefined,
    containerdSocketPath: input.containerdSocket || undefined,
    daemonJsonPath: input.daemonJson || undefined,
    trustedUsers: trusted.length > 0 ? trusted : undefined,
    imageUnusedDays: unused,
    imagePrune: resolveImagePrune(input, unused, off),
  };
}

/**
 * The prune policy of `run`. Scope flags without --image-prune are refused
 * (somebody meant to prune and forgot to switch it on) unless the policy
 * was switched off explicitly (--image-prune off / BULKHEAD_IMAGE_PRUNE=off:
 * a scope kept in the environment file while pruning is paused).
 */
function resolveImagePrune(input: HostAuditScheduleInput, unusedDays: number, auditOff: boolean): ImagePrunePolicy | undefined {
  const scope: ImagePruneInput = {
    olderThan: input.imagePruneOlderThan, include: input.imagePruneInclude, exclude: input.imagePruneExclude,
    dangling: input.imagePruneDangling, label: input.imagePruneLabel, dryRun: input.imagePruneDryRun,
  };
  if (input.imagePrune !== true) {
    const given = (Object.keys(scope) as Array<keyof ImagePruneInput>).filter((k) => scope[k] !== undefined);
    if (input.imagePrune === undefined && given.length > 0) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${given.map((k) => `--${PRUNE_FLAGS[k]}`).join(', ')} given without --image-prune; add --image-prune to switch the prune policy on`);
    }
    return undefined;
  }
  if (auditOff) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'the image prune policy runs as part of the host audit; it cannot be enabled with audit-interval 0');
  return resolvePrunePolicy(scope, { defaultOlderThanDays: unusedDays, flag: (k) => PRUNE_FLAGS[k] });
}

/** Adds the host audit flags to `bulkhead-agent run`. */
export function addHostAuditRunOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--audit-interval <duration>', 'run the host audit (socket/daemon lockdown, CIS benchmark, image hygiene) at start and then this often, reporting to the controller; 0 = off').env('BULKHEAD_AUDIT_INTERVAL').default(DEFAULT_AUDIT_INTERVAL))
    .addOption(new Option('--lockdown-fix <fix>', `let the audit apply this lockdown fix when its finding is present (repeatable or comma-separated: ${Object.keys(LOCKDOWN_FIX_FLAGS).join(', ')}); all off by default`).env('BULKHEAD_LOCKDOWN_FIXES').argParser(collect))
    .addOption(new Option('--docker-group <group>', 'group the docker-socket-ownership fix gives the Docker socket').default('docker'))
    .addOption(new Option('--host-root <dir>', "where the host's filesystem is visible to the audit (an agent in a container: /host)").default('/'))
    .option('--proc-root <dir>', "the host's /proc for the audit (default <host-root>/proc)")
    .option('--containerd-socket <path>', 'containerd socket the audit checks (host path; default: dockerd\'s --containerd, else /run/containerd/containerd.sock)')
    .option('--daemon-json <path>', "daemon.json the audit reads (host path; default dockerd's --config-file, else /etc/docker/daemon.json)")
    .addOption(new Option('--trusted-users <users>', 'expected members of the docker group (repeatable or comma-separated); anybody else is a finding').argParser(collect))
    .addOption(new Option('--image-unused-days <days>', 'images no container used for this many days are stale in the audit\'s image hygiene summary').env('BULKHEAD_IMAGE_UNUSED_DAYS').default(String(DEFAULT_IMAGE_UNUSED_DAYS)))
    // The image prune policy (move 1): off unless --image-prune.
    .addOption(new Option('--image-prune [on|off]', 'let each host audit remove stale images in the --image-prune-* scope (never an image a container uses or was made from); off by default').env('BULKHEAD_IMAGE_PRUNE').argParser(parseOnOff))
    .addOption(new Option('--image-prune-older-than <days>', 'prune only images no container used for this many days (default: --image-unused-days)').env('BULKHEAD_IMAGE_PRUNE_OLDER_THAN'))
    .addOption(new Option('--image-prune-include <glob>', 'prune only tags matching this glob (repeatable or comma-separated; * and ?); default every tag').env('BULKHEAD_IMAGE_PRUNE_INCLUDE').argParser(collect))
    .addOption(new Option('--image-prune-exclude <glob>', 'never prune tags matching this glob (repeatable or comma-separated)').env('BULKHEAD_IMAGE_PRUNE_EXCLUDE').argParser(collect))
    .addOption(new Option('--image-prune-dangling [on|off]', 'prune dangling (untagged) images too; default on without --image-prune-include, off with it').env('BULKHEAD_IMAGE_PRUNE_DANGLING').argParser(parseOnOff))
    .addOption(new Option('--image-prune-label <key=value>', 'prune only images with this label (repeatable or comma-separated; key alone or key=* = present)').env('BULKHEAD_IMAGE_PRUNE_LABELS').argParser(collect))
    .addOption(new Option('--image-prune-dry-run [on|off]', 'record what the prune policy would remove, remove nothing').env('BULKHEAD_IMAGE_PRUNE_DRY_RUN').argParser(parseOnOff));
}
