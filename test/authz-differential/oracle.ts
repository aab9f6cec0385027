// The oracle of the differential test: does what dockerd STORED break the
// enforce policy? Decided by Bulkhead's own evaluator (toContainerFacts +
// evaluateFacts, the functions the agent's reaction door uses) on the
// engine's inspect output — after turning what dockerd stored into what it
// will ACT on, where the two differ and the evaluator would otherwise judge
// the spelling instead of the effect:
//   - the user: the uid the process really ran as, when the harness ran it
//     (`+0`, `-0:0`, `00` are uid 0 to runc; a string check may not know);
//   - device and bind-mount host paths: resolved as the kernel will
//     (`/dev/net/..` is `/dev`, every host device);
//   - a local volume's `device`: relative to dockerd's working directory
//     (`device=etc` binds /etc when dockerd runs from /, as under systemd).
// A stored setting no rule of the catalogue can see (DeviceCgroupRules) is
// reported as a GAP, not a failure: no evaluator verdict exists to compare.
import { realpathSync } from 'node:fs';
import { posix } from 'node:path';
import type Dockerode from 'dockerode';
import type { Finding } from '@bulkhead/shared';
import { toContainerFacts, type Facts } from '../../packages/agent/src/docker/container-facts';
import { evaluateFacts, neighboursOf } from '../../packages/agent/src/policy/policy-evaluation';
import type { PolicyState } from '../../packages/agent/src/policy/policy-holder';

export interface Judgement {
  /** "rule: detail" for each enforce finding on the stored object. */
  findings: string[];
  /** Dangerous stored settings no rule judges. */
  gaps: string[];
}

export interface OracleCtx {
  state: PolicyState;
  /** dockerd's working directory (/proc/<pid>/cwd). */
  dockerdCwd: string;
  /** Other containers (for the network-sharing rule): their facts. */
  inventory: () => Facts[];
}

/** The host path the kernel resolves `p` to (symlinks, `..`), or the cleaned path when it does not exist. */
export function hostPathOf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return posix.normalize(p);
  }
}

function judge(o: OracleCtx, facts: Facts): Finding[] {
  return evaluateFacts(o.state, facts, undefined, () => neighboursOf(o.inventory(), o.state.projectLabel, facts.id || undefined), new Date());
}

function show(fs: readonly Finding[]): string[] {
  return fs.map((f) => `${f.ruleId}: ${f.evidence.map((e) => e.detail).join('; ')}`);
}

/** What the stored container will act on (see the file comment). */
export function effectiveFacts(facts: Facts, uid?: number): Facts {
  return {
    ...facts,
    user: uid === undefined ? facts.user : String(uid),
    devices: facts.devices.map((d) => hostPathOf(d.split(':', 1)[0]!)),
    mounts: facts.mounts.map((m) => (m.type === 'bind' ? { ...m, source: hostPathOf(m.source) } : m)),
  };
}

/** Dangerous stored settings the evaluator did not flag (no rule reads them). */
function gapsOf(inspect: Dockerode.ContainerInspectInfo, findings: readonly Finding[]): string[] {
  const rules = (inspect.HostConfig as { DeviceCgroupRules?: string[] | null }).DeviceCgroupRules ?? [];
  if (rules.length === 0 || findings.some((f) => f.evidence.some((e) => /cgroup/i.test(`${e.location} ${e.detail}`)))) return [];
  return [`DeviceCgroupRules ${JSON.stringify(rules)} (no rule of this policy flags device cgroup rules)`];
}

/** A stored container (`uid`: the uid its process ran as, when observed). */
export function judgeContainer(o: OracleCtx, inspect: Dockerode.ContainerInspectInfo, image: Dockerode.ImageInspectInfo | undefined, uid?: number): Judgement {
  const facts = effectiveFacts(toContainerFacts(inspect, image), uid);
  const findings = judge(o, facts);
  return { findings: show(findings), gaps: gapsOf(inspect, findings) };
}

export interface ExecInspect {
  ProcessConfig?: { user?: string; privileged?: boolean } | null;
}

/** A stored exec: its container's facts as the exec's process sees them (added findings only). */
export function judgeExec(
  o: OracleCtx, container: Dockerode.ContainerInspectInfo, image: Dockerode.ImageInspectInfo | undefined, exec: ExecInspect, uid?: number,
): Judgement {
  const base = effectiveFacts(toContainerFacts(container, image));
  const pc = exec.ProcessConfig ?? {};
  const user = uid !== undefined ? String(uid) : pc.user ? pc.user : base.user;
  const seen = new Set(judge(o, base).map((f) => f.ruleId));
  const asExec: Facts = { ...base, user, privileged: base.privileged || pc.privileged === true };
  return { findings: show(judge(o, asExec).filter((f) => !seen.has(f.ruleId))), gaps: [] };
}

export interface VolumeInspect {
  Name: string;
  Driver: string;
  Options?: Record<string, string> | null;
}

/**
 * A stored volume, as mounted by a container that is otherwise `template`
 * (a compliant container): only what the volume adds is reported.
 */
export function judgeVolume(o: OracleCtx, vol: VolumeInspect, template: Facts): Judgement {
  const opts = vol.Options ?? {};
  if (vol.Driver !== 'local') return { findings: [], gaps: [] };
  const mountOpts = (opts['o'] ?? '').split(',').map((s) => s.trim());
  const device = opts['device'];
  if (!device || !(mountOpts.includes('bind') || mountOpts.includes('rbind'))) return { findings: [], gaps: [] };
  const hostPath = hostPathOf(posix.resolve(o.dockerdCwd, device));
  const seen = new Set(judge(o, template).map((f) => f.ruleId));
  const facts: Facts = {
    ...template,
    mounts: [...template.mounts, { type: 'volume', source: vol.Name, destination: '/bkd-volume', readOnly: mountOpts.includes('ro'), propagation: '', hostPath }],
  };
  return { findings: show(judge(o, facts).filter((f) => !seen.has(f.ruleId))), gaps: [] };
}
