// Owns one periodic host audit as the agent runs it: the lockdown audit,
// the enabled fixes (only those whose finding is present), the lockdown
// audit again when something was fixed (so what is reported is the state
// after the fix), and the CIS report — plus the wire message. The agent
// calls this at start and on a timer (e.g. hourly); `bulkhead-agent audit`
// runs the CIS part alone.
import type { AuditReport as AuditReportMessage, ContainerFacts__Output } from '@bulkhead/shared';
import { auditHost } from '../lockdown/audit-host';
import { applyLockdownFixes, type FixRecord, type LockdownFixName } from '../lockdown/fixes';
import type { LockdownDocker, LockdownFinding } from '../lockdown/lockdown-options';
import { toAuditReportMessage } from './audit-message';
import { runCisReport } from './cis-report';
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
  now?: () => Date;
}

export interface HostAuditResult {
  cis: CisReport;
  /** Findings after any fixes. */
  lockdown: LockdownFinding[];
  /** What the fixes changed (or failed to); [] when none was due. */
  fixes: FixRecord[];
  message: AuditReportMessage;
}

export async function runHostAudit(o: HostAuditOptions): Promise<HostAuditResult> {
  const now = o.now ?? (() => new Date());
  const common = {
    docker: o.docker, hostRoot: o.hostRoot, procRoot: o.procRoot, dockerSocketPath: o.dockerSocketPath,
    containerdSocketPath: o.containerdSocketPath, daemonJsonPath: o.daemonJsonPath, trustedUsers: o.trustedUsers,
  };
  let lockdown = await auditHost({ ...common, containers: o.containers, now: now() });
  const due: Partial<Record<LockdownFixName, boolean>> = {};
  for (const f of lockdown) if (f.fix && o.fixes?.[f.fix] === true) due[f.fix] = true;
  let fixes: FixRecord[] = [];
  if (Object.keys(due).length > 0) {
    fixes = await applyLockdownFixes({
      fixes: due, hostRoot: o.hostRoot, dockerSocketPath: o.dockerSocketPath, containerdSocketPath: o.containerdSocketPath, dockerGroup: o.dockerGroup,
      now: () => now().getTime(),
    });
    if (fixes.some((r) => r.changed)) lockdown = await auditHost({ ...common, containers: o.containers, now: now() });
  }
  const cis = await runCisReport({ ...common, now });
  return { cis, lockdown, fixes, message: toAuditReportMessage({ cis, lockdown, fixes, takenAtMs: now().getTime() }) };
}
