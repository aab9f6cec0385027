// Owns the dry-run: a candidate policy evaluated against the fleet's live
// inventory, reporting per rule which containers it would hit. It calls the
// one shared evaluator with the same inputs an agent would have (container
// facts, host facts, scans, neighbours on the same host) and changes nothing.
// Image signatures: the controller cannot verify (no registry access, key files
// live on the hosts); it uses the verdicts agents reported, and lists every
// container an `image-signature` rule applies to whose digest no host verified
// yet as UNDECIDED — never as clean.
import {
  applicableRules, evaluate, signatureParamsOfRule, signatureVerdictKey, signedRepoDigest, type ContainerFacts__Output, type Evidence, type HostFacts__Output,
  type Mode, type Neighbour, type Policy, type Rule, type RuleAction, type ScanSummary, type Severity, type SignatureVerdict,
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

/** A container a rule applies to that the dry-run cannot decide (an image-signature rule, digest not verified yet). */
export interface DryRunUndecided {
  agentId: string;
  hostname: string;
  containerId: string;
  containerName: string;
  imageRef: string;
  /** What would have to be verified: "registry/repo@sha256:…". */
  repoDigest: string;
  reason: string;
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
  /** Containers the rule applies to that the dry-run cannot decide (image-signature rules only). */
  undecided: DryRunUndecided[];
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
  /** Undecided (rule, container) pairs: image signatures no host verified yet. */
  undecided: number;
}

export interface DryRunResult {
  policyName: string;
  evaluatedAt: string;
  rules: DryRunRule[];
  totals: DryRunTotals;
}

/** Evaluates `policy` for every container of every member. Pure: no I/O, no clock. */
export function dryRunPolicy(
  policy: Policy, fleet: readonly FleetMember[],
  ctx: {
    now: Date; scans: ReadonlyMap<string, ScanSummary>; tagPins?: ReadonlyMap<string, string>;
    /**
     * The verdict agents reported for a verdict key (signatureVerdictKey): the newest decided
     * by any host (what the store keeps); absent = none reported. Called with the container's
     * agent too, for a source that prefers that host's own verdict.
     */
    signatureVerdict?: (verdictKey: string, agentId: string) => SignatureVerdict | undefined;
  },
): DryRunResult {
  const projectLabel = policy.spec.projectLabel ?? DEFAULT_PROJECT_LABEL;
  const byRule = new Map<string, DryRunHit[]>(policy.spec.rules.map((r) => [r.id, []]));
  const undecidedByRule = new Map<string, DryRunUndecided[]>();
  const signatureRules = policy.spec.rules.some((r) => r.check.type === SIGNATURE_CHECK);
  const lookup = ctx.signatureVerdict ?? (() => undefined);
  const hitContainers = new Set<string>();
  let containers = 0;

  const members = [...fleet].sort((a, b) => a.hostname.localeCompare(b.hostname) || a.agentId.localeCompare(b.agentId));
  for (const m of members) {
    const withProject = withProjects(m, projectLabel);
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
      const input = m.host ? { container: facts, host: m.host } : { container: facts };
      // The verdicts this container's signature rules need, as far as agents reported them.
      const needed = signatureRules ? neededSignatures(policy, input, ctx.now) : [];
      const verdicts = new Map<string, SignatureVerdict>();
      for (const n of needed) {
        const v = lookup(n.key, m.agentId);
        if (v !== undefined) verdicts.set(n.key, v);
      }
      const findings = evaluate(policy, input, {
        now: ctx.now, scans: ctx.scans, neighbours, ...(ctx.tagPins ? { tagPins: ctx.tagPins } : {}),
        ...(signatureRules ? { signatures: verdicts, signaturesReported: true } : {}),
      });
      if (signatureRules) {
        for (const u of needed.filter((n) => !verdicts.has(n.key))) {
          let list = undecidedByRule.get(u.rule.id);
          if (!list) undecidedByRule.set(u.rule.id, (list = []));
          list.push({
            agentId: m.agentId, hostname: m.hostname, containerId: facts.id, containerName: facts.name, imageRef: facts.imageRef, repoDigest: u.repoDigest,
            reason: `not verified yet on any host: no agent has reported a verdict for ${u.repoDigest} under this rule's keys (agents verify at create and start, and report what they verified)`,
          });
        }
      }
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
    undecided: undecidedByRule.get(r.id) ?? [],
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
      undecided: rules.reduce((n, r) => n + r.undecided.length, 0),
    },
  };
}

const SIGNATURE_CHECK = 'image-signature';

/**
 * The verdict keys (signatureVerdictKey) a dry-run of `policy` over `fleet` will look up: what
 * the caller fetches from the store before calling dryRunPolicy, which is pure.
 */
export function neededVerdictKeys(policy: Policy, fleet: readonly FleetMember[], now: Date): Set<string> {
  const keys = new Set<string>();
  if (!policy.spec.rules.some((r) => r.check.type === SIGNATURE_CHECK)) return keys;
  const projectLabel = policy.spec.projectLabel ?? DEFAULT_PROJECT_LABEL;
  for (const m of fleet) {
    for (const { facts } of withProjects(m, projectLabel)) {
      const input = m.host ? { container: facts, host: m.host } : { container: facts };
      for (const n of neededSignatures(policy, input, now)) keys.add(n.key);
    }
  }
  return keys;
}

/**
 * The member's containers with `project` from the candidate's project label, which may differ
 * from the one the agent used when it filled `project`.
 */
function withProjects(m: FleetMember, projectLabel: string): Array<{ facts: ContainerFacts__Output; project: string | undefined }> {
  return m.containers.map((c) => {
    const p = projectOf(c, projectLabel);
    return { facts: { ...c, project: p ?? '' }, project: p };
  });
}

/**
 * The verdicts the container's image-signature rules need (rules in scope, not exempted), as
 * the agent's signature gate keys them. An image without a repo digest for its repository needs
 * none: the check itself reports it unsigned, so it is never undecided.
 */
function neededSignatures(
  policy: Policy, input: { container: ContainerFacts__Output; host?: HostFacts__Output }, now: Date,
): Array<{ rule: Rule; repoDigest: string; key: string }> {
  const repoDigest = signedRepoDigest(input.container);
  if (repoDigest === '') return [];
  const out: Array<{ rule: Rule; repoDigest: string; key: string }> = [];
  for (const rule of applicableRules(policy, input, now)) {
    if (rule.check.type !== SIGNATURE_CHECK) continue;
    out.push({ rule, repoDigest, key: signatureVerdictKey(signatureParamsOfRule(rule), repoDigest) });
  }
  return out;
}

function projectOf(c: ContainerFacts__Output, label: string): string | undefined {
  const v = c.labels?.[label];
  return v === undefined || v === '' ? undefined : v;
}
