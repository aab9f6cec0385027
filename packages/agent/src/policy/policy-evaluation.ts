// Owns the agent's side of "ask the one evaluator": building the evaluation
// context (time, scans, neighbours) from what the agent knows, telling which
// findings block, and turning findings into the ViolationReports the
// controller records. The authz plugin and the enforcer both go through here,
// so they can never disagree about what a policy means.
import { randomUUID } from 'node:crypto';
import { evaluate } from '@bulkhead/shared';
import type {
  ActionResult, ContainerFacts__Output, EvaluationContext, Finding, HostFacts__Output, Neighbour, SignatureVerdict, UsageFacts, ViolationReport,
} from '@bulkhead/shared';
import type { PolicyState } from './policy-holder';

/** `usage`: a live-usage rule held (the agent's usage monitor, cgroup/usage-monitor.ts). */
export type ViolationSource = 'authz' | 'reaction' | 'reconcile' | 'usage';

/** Other containers on this host, for rules comparing containers (shared networks). */
export function neighboursOf(inventory: Iterable<ContainerFacts__Output>, projectLabel: string, excludeId?: string): Neighbour[] {
  const out: Neighbour[] = [];
  for (const f of inventory) {
    if (f.id === excludeId) continue;
    const project = f.labels?.[projectLabel];
    out.push({ id: f.id, name: f.name, project: project === '' ? undefined : project, networks: f.networks.map((n) => n.name) });
  }
  return out;
}

/** Findings of `facts` under the policy in force; [] when no policy is in force. */
export function evaluateFacts(
  state: PolicyState,
  facts: ContainerFacts__Output,
  host: HostFacts__Output | undefined,
  /** Or a function computing them, called only if a rule reads them (most containers never need them). */
  neighbours: readonly Neighbour[] | (() => readonly Neighbour[]) | undefined,
  now: Date,
  /** Live usage (usage rules find nothing without it). */
  usage?: UsageFacts,
  /** Image signature verdicts (signatures/signature-gate.ts); without them image-signature rules cannot decide. */
  signatures?: ReadonlyMap<string, SignatureVerdict>,
  /** Set to true for each input the evaluation read (needs lazy `neighbours`): whether the result can change with the clock or with other containers. */
  reads?: EvaluationReads,
): Finding[] {
  if (!state.policy) return [];
  return evaluate(state.policy, { container: facts, ...(host ? { host } : {}), ...(usage ? { usage } : {}) }, evaluationContext(state, neighbours, now, signatures, reads));
}

/** What an evaluation read besides the container, host, policy state and verdicts it was given. */
export interface EvaluationReads {
  /** The clock (a dated exemption met a finding, a scan's age was judged…). */
  now: boolean;
  /** Other containers (network isolation). */
  neighbours: boolean;
}

function evaluationContext(
  state: PolicyState, neighbours: readonly Neighbour[] | (() => readonly Neighbour[]) | undefined, now: Date, signatures: ReadonlyMap<string, SignatureVerdict> | undefined,
  reads: EvaluationReads | undefined,
): EvaluationContext {
  const pins = state.tagPins !== undefined && state.tagPins.size > 0 ? { tagPins: state.tagPins } : {};
  if (typeof neighbours !== 'function' && reads === undefined) return { now, scans: state.scans, ...pins, ...(neighbours ? { neighbours } : {}), ...(signatures ? { signatures } : {}) };
  let computed: readonly Neighbour[] | undefined;
  const ctx: EvaluationContext = {
    now,
    scans: state.scans,
    ...pins,
    ...(signatures ? { signatures } : {}),
    get neighbours(): readonly Neighbour[] | undefined {
      if (reads) reads.neighbours = true;
      return typeof neighbours === 'function' ? (computed ??= neighbours()) : neighbours;
    },
  };
  if (reads) {
    Object.defineProperty(ctx, 'now', {
      enumerable: true,
      get(): Date {
        reads.now = true;
        return now;
      },
    });
  }
  return ctx;
}

/** Enforce-mode findings no exemption covers: the ones that deny or act. */
export function isBlocking(f: Finding): boolean {
  return f.mode === 'enforce' && !f.exemptedBy;
}

export interface ReportContext {
  source: ViolationSource;
  policyVersion: number;
  atMs: number;
  denied?: boolean;
  action?: ActionResult;
}

/** One ViolationReport per finding (the wire shape the link forwards). */
export function toViolationReport(f: Finding, facts: Pick<ContainerFacts__Output, 'id' | 'name' | 'imageRef' | 'project'>, c: ReportContext): ViolationReport {
  return {
    id: randomUUID(),
    containerId: facts.id,
    containerName: facts.name,
    imageRef: facts.imageRef,
    project: facts.project,
    ruleId: f.ruleId,
    severity: f.severity,
    mode: f.mode,
    source: c.source,
    message: f.message,
    evidenceJson: JSON.stringify(f.evidence.map((e) => (e.detector ? { location: e.location, detail: e.detail, detector: e.detector } : { location: e.location, detail: e.detail }))),
    denied: c.denied ?? false,
    ...(c.action ? { action: c.action } : {}),
    atMs: c.atMs,
    policyVersion: c.policyVersion,
    exemptedBy: f.exemptedBy ? `${f.exemptedBy.who}: ${f.exemptedBy.why}` : '',
  };
}
