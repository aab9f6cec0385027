// Owns the dry-run: a candidate policy evaluated against the fleet's live
// inventory, reporting per rule which containers it would hit. It calls the
// one shared evaluator with the same inputs an agent would have (container
// facts, host facts, scans, neighbours on the same host) and changes nothing.
import {
  evaluate, type ContainerFacts__Output, type Evidence, type HostFacts__Output, type Mode, type Neighbour, type Policy,
  type RuleAction, type ScanSummary, type Severity,
} from '@bulkhead/shared';

export const DEFAULT_PROJECT_LABEL = 'bulkhead.project';

/** One agent's last known state, as the store holds it. */
export interface FleetMember {
  agentId: string;
  hostname: string;
  /** online | offline | revoked: offline agents are evaluated on their last inventory. */
  status: string;
  host: HostFacts__Output | undefined;
  containers: ContainerFacts__Output[];
}

export interface DryRunHit {
  agentId: string;
  hostname: string;
  containerId: string;
  containerName: string;
  imageRef: string;
  state: string;
  project: string | null;
  severity: Severity;
  mode: Mode;
  action: RuleAction;
  message: string;
  evidence: Evidence[];
  /** Set when an exemption covers it: reported, but it would not be acted on. */
  exemptedBy: { who: string; why: string; until?: string } | null;
}

export interface DryRunRule {
  ruleId: string;
  description: string;
  severity: Severity;
  mode: Mode;
  action: RuleAction;
  checkType: string;
  /** Every container the rule matched, exempted ones included (see `exemptedBy`). */
  hits: DryRunHit[];
}

export interface DryRunTotals {
  agents: number;
  containers: number;
  rules: number;
  /** Findings not covered by an exemption. */
  findings: number;
  /** Findings an exemption covers. */
  exempted: number;
  /** Non-exempted findings of enforce-mode rules: what the agents would act on. */
  enforce: number;
  /** Non-exempted findings of monitor-mode rules: recorded and alerted only. */
  monitor: number;
  /** Containers with at least one non-exempted finding. */
  containersHit: number;
  /** Rules with at least one non-exempted finding. */
  rulesHit: number;
}

export interface DryRunResult {
  policyName: string;
  evaluatedAt: string;
  rules: DryRunRule[];
  totals: DryRunTotals;
}

/** Evaluates `policy` for every container of every member. Pure: no I/O, no clock. */
export function dryRunPolicy(policy: Policy, fleet: readonly FleetMember[], ctx: { now: Date; scans: ReadonlyMap<string, ScanSummary>; tagPins?: ReadonlyMap<string, string> }): DryRunResult {
  const projectLabel = policy.spec.projectLabel ?? DEFAULT_PROJECT_LABEL;
  const byRule = new Map<string, DryRunHit[]>(policy.spec.rules.map((r) => [r.id, []]));
  const hitContainers = new Set<string>();
  let containers = 0;

  const members = [...fleet].sort((a, b) => a.hostname.localeCompare(b.hostname) || a.agentId.localeCompare(b.agentId));
  for (const m of members) {
    // The candidate's project label may differ from the one the agent used
    // when it filled `project`, so projects are recomputed from the labels.
    const withProject = m.containers.map((c) => {
      const p = projectOf(c, projectLabel);
      return { facts: { ...c, project: p ?? '' }, project: p };
    });
    withProject.sort((a, b) => a.facts.name.localeCompare(b.facts.name) || a.facts.id.localeCompare(b.facts.id));
    const everyone: Neighbour[] = withProject.map(({ facts, project }) => ({
      id: facts.id,
      name: facts.name,
      project,
      networks: (facts.networks ?? []).map((n) => n.name),
    }));
    for (const { facts, project } of withProject) {
      containers++;
      const neighbours = everyone.filter((n) => n.id !== facts.id);
      const findings = evaluate(policy, m.host ? { container: facts, host: m.host } : { container: facts }, { now: ctx.now, scans: ctx.scans, neighbours, ...(ctx.tagPins ? { tagPins: ctx.tagPins } : {}) });
      for (const f of findings) {
        const hit: DryRunHit = {
          agentId: m.agentId,
          hostname: m.hostname,
          containerId: facts.id,
          containerName: facts.name,
          imageRef: facts.imageRef,
          state: facts.state,
          project: project ?? null,
          severity: f.severity,
          mode: f.mode,
          action: f.action,
          message: f.message,
          evidence: f.evidence,
          exemptedBy: f.exemptedBy ?? null,
        };
        let list = byRule.get(f.ruleId);
        if (!list) byRule.set(f.ruleId, (list = []));
        list.push(hit);
        if (!f.exemptedBy) hitContainers.add(`${m.agentId}/${facts.id}`);
      }
    }
  }

  const rules: DryRunRule[] = policy.spec.rules.map((r) => ({
    ruleId: r.id,
    description: r.description,
    severity: r.severity,
    mode: r.mode,
    action: r.action,
    checkType: r.check.type,
    hits: byRule.get(r.id) ?? [],
  }));
  const all = rules.flatMap((r) => r.hits);
  const live = all.filter((h) => h.exemptedBy === null);
  return {
    policyName: policy.metadata.name,
    evaluatedAt: ctx.now.toISOString(),
    rules,
    totals: {
      agents: members.length,
      containers,
      rules: rules.length,
      findings: live.length,
      exempted: all.length - live.length,
      enforce: live.filter((h) => h.mode === 'enforce').length,
      monitor: live.filter((h) => h.mode === 'monitor').length,
      containersHit: hitContainers.size,
      rulesHit: rules.filter((r) => r.hits.some((h) => h.exemptedBy === null)).length,
    },
  };
}

function projectOf(c: ContainerFacts__Output, label: string): string | undefined {
  const v = c.labels?.[label];
  return v === undefined || v === '' ? undefined : v;
}
