// Owns one periodic host audit as the agent runs it: the lockdown audit,
// the enabled fixes (only those whose finding is present), the lockdown
// audit again when something was fixed (so what is reported is the state
// after the fix), the CIS report and the image hygiene summary — plus the
// wire message. The agent calls this at start and on a timer
// (audit-scheduler.ts); `bulkhead-agent audit` runs the CIS part alone.
// With the image prune policy on (--image-prune), the prune runs last, after
// the hygiene summary, so the report shows what was stale before it.
//
// It runs beside enforcement in the same process, so every part yields to
// the event loop before it starts (and the CIS report between checks): an
// engine event arriving mid-audit waits for one check, not the whole audit.
import type { AuditReport as AuditReportMessage, ContainerFacts__Output } from '@bulkhead/shared';
import { auditHost } from '../lockdown/audit-host';
import { applyLockdownFixes, type FixRecord, type LockdownFixName } from '../lockdown/fixes';
import type { LockdownDocker, LockdownFinding } from '../lockdown/lockdown-options';
import { imageHygieneReport, type HygieneDocker } from '../hygiene/image-hygiene';
import { summarizeHygiene, type HygieneSummary } from '../hygiene/hygiene-summary';
import { pruneImages, type PruneResult } from '../hygiene/image-prune';
import { pruneOptionsOf, type ImagePrunePolicy } from '../hygiene/prune-policy';
import { summarizePrune } from '../hygiene/prune-summary';
import { toAuditReportMessage } from './audit-message';
import { runCisReport, yieldToEventLoop } from './cis-report';
import type { CisDocker, CisReport } from './cis-types';

export interface HostAuditOptions {
  docker: CisDocker & LockdownDocker;
  /** Running containers' facts (the watcher's inventory); default: listed by the audits. */
  containers?: readonly ContainerFacts__Output[];
  hostRoot?: string;
  procRoot?: string;
  dockerSocketPath?: string;
  containerdSocketPath?: string;
  daemonJsonPath?: string;
  trustedUsers?: readonly string[];
  /** Lockdown fixes to apply when their finding is present; all off by default. */
  fixes?: Partial<Record<LockdownFixName, boolean>>;
  /** Group the Docker socket fix gives the socket. Default "docker". */
  dockerGroup?: string;
  /**
   * The image hygiene summary (unused, never-used and dangling images);
   * `false` leaves it out. Default: images idle 30 days are stale.
   */
  hygiene?: { unusedDays?: number; lastUsed?: ReadonlyMap<string, number> } | false;
  /**
   * The image prune policy (off when absent): removes stale images in its
   * scope after the hygiene summary, respecting `hygiene.lastUsed`. Needs a
   * `docker` that can remove images (a Dockerode instance can).
   */
  prune?: ImagePrunePolicy | undefined;
  now?: () => Date;
}

export interface HostAuditResult {
  cis: CisReport;
  /** Findings after any fixes. */
  lockdown: LockdownFinding[];
  /** What the fixes changed (or failed to); [] when none was due. */
  fixes: FixRecord[];
  /** Undefined when switched off; `{ error }` when the engine did not answer for it (the rest is still reported). */
  hygiene?: HygieneSummary | { error: string };
  /**
   * The prune policy's full result (every record: the agent logs one line
   * per image; the report carries a bounded summary); `{ error }` when it
   * could not run; undefined when the policy is off.
   */
  prune?: PruneResult | { error: string };
  message: AuditReportMessage;
}

export async function runHostAudit(o: HostAuditOptions): Promise<HostAuditResult> {
  const now = o.now ?? (() => new Date());
  const common = {
    docker: o.docker, hostRoot: o.hostRoot, procRoot: o.procRoot, dockerSocketPath: o.dockerSocketPath,
    containerdSocketPath: o.containerdSocketPath, daemonJsonPath: o.daemonJsonPath, trustedUsers: o.trustedUsers,
  };
  await yieldToEventLoop();
  let lockdown = await auditHost({ ...common, containers: o.containers, now: now() });
  const due: Partial<Record<LockdownFixName, boolean>> = {};
  for (const f of lockdown) if (f.fix && o.fixes?.[f.fix] === true) due[f.fix] = true;
  let fixes: FixRecord[] = [];
  if (Object.keys(due).length > 0) {
    await yieldToEventLoop();
    fixes = await applyLockdownFixes({
      fixes: due, hostRoot: o.hostRoot, dockerSocketPath: o.dockerSocketPath, dockerGroup: o.dockerGroup,
      // The socket the audit found (it may have come from dockerd's --containerd), not the default.
      containerdSocketPath: o.containerdSocketPath ?? lockdown.find((f) => f.fix?.startsWith('containerd') && f.subject)?.subject,
      now: () => now().getTime(),
    });
    if (fixes.some((r) => r.changed)) {
      await yieldToEventLoop();
      lockdown = await auditHost({ ...common, containers: o.containers, now: now() });
    }
  }
  await yieldToEventLoop();
  const cis = await runCisReport({ ...common, now });
  let hygiene: HostAuditResult['hygiene'];
  if (o.hygiene !== false) {
    await yieldToEventLoop();
    hygiene = await hostHygiene(o.docker, o.hygiene ?? {}, now);
  }
  let prune: HostAuditResult['prune'];
  if (o.prune) {
    await yieldToEventLoop();
    prune = await hostPrune(o.docker as unknown as HygieneDocker, o.prune, o.hygiene === false ? undefined : o.hygiene?.lastUsed, now);
  }
  const pruneSummary = prune === undefined ? undefined : 'error' in prune ? prune : summarizePrune(prune, o.prune!);
  const result: HostAuditResult = { cis, lockdown, fixes, message: toAuditReportMessage({ cis, lockdown, fixes, hygiene, prune: pruneSummary, takenAtMs: now().getTime() }) };
  if (hygiene !== undefined) result.hygiene = hygiene;
  if (prune !== undefined) result.prune = prune;
  return result;
}

/** The prune part: its result, or why it could not run (exported for tests). Never throws: the audit is still reported. */
export async function hostPrune(docker: HygieneDocker, policy: ImagePrunePolicy, lastUsed: ReadonlyMap<string, number> | undefined, now: () => Date): Promise<PruneResult | { error: string }> {
  try {
    return await pruneImages({ docker, ...pruneOptionsOf(policy), ...(lastUsed ? { lastUsed } : {}), now: () => now().getTime() });
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** The hygiene part: a summary, or why the engine could not give one (exported for tests). */
export async function hostHygiene(docker: Pick<HostAuditOptions['docker'], 'listImages' | 'listContainers' | 'getContainer' | 'getImage'>, o: { unusedDays?: number; lastUsed?: ReadonlyMap<string, number> }, now: () => Date): Promise<HygieneSummary | { error: string }> {
  try {
    const report = await imageHygieneReport({ docker, unusedDays: o.unusedDays, lastUsed: o.lastUsed, now: () => now().getTime() });
    return summarizeHygiene(report);
  } catch (e) {
    return { error: (e as Error).message };
  }
}
