// The ONE evaluator: a pure function of (policy, container facts, host facts,
// context) → findings. The authz plugin, the reaction to engine events, the
// controller's dry-run and the audit report all call `evaluate`; nothing else
// decides whether a container is allowed.
//
// Pure means: no I/O, no clock (ctx.now), no mutation of its inputs. Fast
// means: everything derivable from the policy alone (globs, sets, merged
// params, expiry times) is compiled once per policy object and cached in a
// WeakMap, so a policy swap simply compiles the new object.
import type { ContainerFacts__Output, HostFacts__Output } from '../proto/index';
import { CHECKS, getCheck, type CatalogueEntry } from './checks/index';
import { compileGlob, compileGlobs, type Matcher } from './glob';
import { parseImageRef } from './image-ref';
import { DEFAULT_PROJECT_LABEL } from './constants';
import type { CheckInput, EvaluationContext, Evidence, Exemption, Finding, Policy, Rule, RuleScope, UsageFacts } from './types';

export interface EvaluationInput {
  container: ContainerFacts__Output;
  host?: HostFacts__Output;
  /** Live usage of the container (agent only); without it, usage checks find nothing. */
  usage?: UsageFacts;
}

type ScopeFn = (c: ContainerFacts__Output, host: HostFacts__Output | undefined, project: string | undefined) => boolean;

interface CompiledExemption {
  exemption: Exemption;
  /** ms since epoch; Infinity when it never expires. */
  untilMs: number;
  matches: ScopeFn;
  by: { who: string; why: string; until?: string };
}

interface CompiledRule {
  rule: Rule;
  inScope: ScopeFn | undefined;
  run: (input: CheckInput) => Evidence[];
  exemptions: CompiledExemption[];
  remedy: string;
}

export interface CompiledPolicy {
  readonly policy: Policy;
  readonly projectLabel: string;
  readonly rules: readonly CompiledRule[];
}

const ALWAYS: ScopeFn = () => true;

function labelsMatcher(want: Record<string, string>): (labels: Record<string, string> | undefined) => boolean {
  const entries: [string, Matcher][] = Object.entries(want).map(([k, v]) => [k, compileGlob(v)]);
  return (labels) => {
    if (!labels) return entries.length === 0;
    for (const [k, m] of entries) {
      const v = labels[k];
      if (v === undefined || !m(v)) return false;
    }
    return true;
  };
}

function imageMatcher(globs: readonly string[]): (ref: string) => boolean {
  const m = compileGlobs(globs);
  return (ref) => {
    if (m(ref)) return true;
    const p = parseImageRef(ref);
    if (p.isId) return false;
    return m(p.normalized) || (p.digest === undefined && p.tag === undefined && m(`${ref}:latest`));
  };
}

/**
 * `byOrigin`: a rule's `images` also match where the image came from — any
 * of its repo digests — not only the name the container was created by: a
 * name is the caller's to choose (an image id, `docker tag x some/name`),
 * the repo digests are not. Exemptions match by name only (an exemption
 * must not grow with the image's history).
 */
function compileScope(scope: (RuleScope & { names?: string[] }) | undefined, byOrigin = false): ScopeFn | undefined {
  if (!scope) return undefined;
  const tests: ScopeFn[] = [];
  if (scope.hostLabels && Object.keys(scope.hostLabels).length > 0) {
    const m = labelsMatcher(scope.hostLabels);
    tests.push((_c, host) => host !== undefined && m(host.labels));
  }
  if (scope.containerLabels && Object.keys(scope.containerLabels).length > 0) {
    const m = labelsMatcher(scope.containerLabels);
    tests.push((c) => m(c.labels));
  }
  if (scope.images) {
    const m = imageMatcher(scope.images);
    tests.push(byOrigin ? (c) => m(c.imageRef) || fromMatching(m, c) : (c) => m(c.imageRef));
  }
  if (scope.projects) {
    const m = compileGlobs(scope.projects);
    tests.push((_c, _h, project) => project !== undefined && m(project));
  }
  if (scope.names) {
    const m = compileGlobs(scope.names);
    tests.push((c) => m(c.name.startsWith('/') ? c.name.slice(1) : c.name));
  }
  if (tests.length === 0) return undefined;
  if (tests.length === 1) return tests[0]!;
  return (c, h, p) => {
    for (const t of tests) if (!t(c, h, p)) return false;
    return true;
  };
}

function fromMatching(m: (ref: string) => boolean, c: ContainerFacts__Output): boolean {
  if (c.imageDigest !== '' && m(c.imageDigest)) return true;
  const list = c.repoDigests?.values;
  if (list) for (const d of list) if (m(d)) return true;
  return false;
}

function compileRule(rule: Rule): CompiledRule {
  const def: CatalogueEntry | undefined = getCheck(rule.check.type);
  if (!def) {
    // parsePolicy rejects unknown types; a hand-built Policy object may not have gone through it.
    throw new TypeError(`unknown check type "${rule.check.type}" in rule ${rule.id}; known: ${CHECKS.map((c) => c.type).join(', ')}`);
  }
  const { type: _type, ...given } = rule.check;
  const params = { ...(def.defaults as Record<string, unknown>), ...given } as never;
  const run = def.compile ? def.compile(params, rule) : (input: CheckInput) => def.check(input, params);
  const exemptions = (rule.exemptions ?? []).map((e): CompiledExemption => {
    const untilMs = e.until === undefined ? Infinity : Date.parse(e.until);
    return {
      exemption: e,
      // An unparsable date must not mean "forever": treat it as already expired.
      untilMs: Number.isNaN(untilMs) ? -Infinity : untilMs,
      matches: compileScope(e.match) ?? ALWAYS,
      by: e.until === undefined ? { who: e.who, why: e.why } : { who: e.who, why: e.why, until: e.until },
    };
  });
  return { rule, inScope: compileScope(rule.scope, true), run, exemptions, remedy: def.remedy };
}

const cache = new WeakMap<Policy, CompiledPolicy>();

/**
 * Compiles a policy for evaluation (cached per policy object). Call it at
 * policy load to surface errors early; `evaluate` calls it too. Treat a
 * policy object as immutable once evaluated: edits are not seen by the cache.
 */
export function compilePolicy(policy: Policy): CompiledPolicy {
  let c = cache.get(policy);
  if (!c) {
    c = { policy, projectLabel: policy.spec.projectLabel || DEFAULT_PROJECT_LABEL, rules: policy.spec.rules.map(compileRule) };
    cache.set(policy, c);
  }
  return c;
}

/** The container's project: the policy's project label, else the project the agent recorded. */
export function projectOf(container: ContainerFacts__Output, projectLabel: string = DEFAULT_PROJECT_LABEL): string | undefined {
  const v = container.labels?.[projectLabel];
  if (v !== undefined && v !== '') return v;
  return container.project || undefined;
}

function displayName(c: ContainerFacts__Output): string {
  if (c.name) return c.name.startsWith('/') ? c.name.slice(1) : c.name;
  return c.id ? c.id.slice(0, 12) : '(unnamed)';
}

function message(cr: CompiledRule, c: ContainerFacts__Output, evidence: readonly Evidence[]): string {
  const shown = evidence.slice(0, 3).map((e) => e.detail);
  if (evidence.length > 3) shown.push(`${evidence.length - 3} more`);
  return `${cr.rule.id}: container ${displayName(c)}: ${shown.join('; ')}. Fix: ${cr.remedy}. If this is intended, ask for an exemption on rule ${cr.rule.id} (who, why, until).`;
}

// Facts as proto-loader delivers them (defaults: true) have every field. Facts
// built by hand (tests, a create request translated by the authz plugin) may
// not; a missing field must not crash a door, so it reads as its proto default.
const FACT_DEFAULTS: ContainerFacts__Output = {
  id: '', name: '', imageRef: '', imageId: '', imageDigest: '', labels: {}, state: '', user: '', privileged: false,
  mounts: [], networkMode: '', networks: [], pidMode: '', ipcMode: '', utsMode: '', usernsMode: '', capAdd: [], capDrop: [],
  securityOpt: [], readOnlyRootfs: false, memoryLimitBytes: 0, nanoCpus: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0, pidsLimit: 0,
  restartPolicy: '', restartMaxRetries: 0, envNames: [], command: [], createdAtMs: 0, startedAtMs: 0, finishedAtMs: 0, exitCode: 0,
  pid: 0, devices: [], imageUser: '', restartCount: 0, secretHits: [], project: '',
};
const FACT_KEYS = Object.keys(FACT_DEFAULTS) as (keyof ContainerFacts__Output)[];
const NUMERIC_KEYS = FACT_KEYS.filter((k) => typeof FACT_DEFAULTS[k] === 'number');

function completeFacts(c: ContainerFacts__Output): ContainerFacts__Output {
  // Direct property reads (monomorphic, cheap) of every field a check touches;
  // the generic loop in fill() only runs for incomplete facts.
  if (
    typeof c.id === 'string' && typeof c.name === 'string' && typeof c.imageRef === 'string' && typeof c.imageId === 'string' &&
    typeof c.imageDigest === 'string' && typeof c.labels === 'object' && c.labels !== null && typeof c.user === 'string' &&
    typeof c.imageUser === 'string' && Array.isArray(c.mounts) && typeof c.networkMode === 'string' && Array.isArray(c.networks) &&
    typeof c.pidMode === 'string' && typeof c.ipcMode === 'string' && typeof c.utsMode === 'string' && typeof c.usernsMode === 'string' &&
    Array.isArray(c.capAdd) && Array.isArray(c.capDrop) && Array.isArray(c.securityOpt) && Array.isArray(c.devices) &&
    Array.isArray(c.secretHits) && typeof c.memoryLimitBytes === 'number' && typeof c.nanoCpus === 'number' &&
    typeof c.cpuQuota === 'number' && typeof c.cpuPeriod === 'number' && typeof c.pidsLimit === 'number' && typeof c.project === 'string'
  ) {
    return c;
  }
  return fill(c);
}

function fill(c: ContainerFacts__Output): ContainerFacts__Output {
  const out = { ...FACT_DEFAULTS } as Record<string, unknown>;
  for (const [k, v] of Object.entries(c)) if (v !== undefined && v !== null) out[k] = v;
  // int64 fields may arrive as strings or Longs when a loader was configured differently.
  for (const k of NUMERIC_KEYS) if (typeof out[k] !== 'number') out[k] = Number(String(out[k])) || 0;
  return out as unknown as ContainerFacts__Output;
}

/**
 * Evaluates every rule of `policy` against one container. Returns one Finding
 * per broken rule (in policy order); findings covered by a live exemption are
 * returned with `exemptedBy` set and must be treated as informational.
 */
export function evaluate(policy: Policy, input: EvaluationInput, ctx: EvaluationContext): Finding[] {
  const compiled = compilePolicy(policy);
  const container = completeFacts(input.container);
  const host = input.host;
  const project = projectOf(container, compiled.projectLabel);
  const checkInput: CheckInput = { container, host, ctx, project, usage: input.usage };
  // The clock is read only when a finding meets a dated exemption: a caller
  // may observe reads of ctx.now to learn whether a result can change with
  // time alone (the agent's enforcer skips re-judging unchanged containers).
  let now: number | undefined;
  let findings: Finding[] | undefined;
  for (const cr of compiled.rules) {
    if (cr.inScope !== undefined && !cr.inScope(container, host, project)) continue;
    const evidence = cr.run(checkInput);
    if (evidence.length === 0) continue;
    const { rule } = cr;
    const finding: Finding = { ruleId: rule.id, severity: rule.severity, mode: rule.mode, action: rule.action, message: message(cr, container, evidence), evidence };
    for (const ex of cr.exemptions) {
      if ((ex.untilMs === Infinity || ex.untilMs > (now ??= ctx.now.getTime())) && ex.matches(container, host, project)) {
        finding.exemptedBy = ex.by;
        break;
      }
    }
    (findings ??= []).push(finding);
  }
  return findings ?? [];
}

/**
 * The rules that apply to a container now, whatever their checks would find:
 * in scope and not covered by a live exemption. A door that could not learn
 * a fact (an engine lookup failed) uses it to tell whether an enforce rule
 * needing that fact is at stake.
 */
export function applicableRules(policy: Policy, input: EvaluationInput, now: Date): Rule[] {
  const compiled = compilePolicy(policy);
  const container = completeFacts(input.container);
  const project = projectOf(container, compiled.projectLabel);
  const t = now.getTime();
  const out: Rule[] = [];
  for (const cr of compiled.rules) {
    if (cr.inScope !== undefined && !cr.inScope(container, input.host, project)) continue;
    if (cr.exemptions.some((ex) => ex.untilMs > t && ex.matches(container, input.host, project))) continue;
    out.push(cr.rule);
  }
  return out;
}

/**
 * Whether `rule` (a rule of `policy`) applies to the container by its scope alone,
 * exemptions aside: the same matching `evaluate` does. For the controller's tag
 * pins, whose "seen in the rule's scope" must mean exactly what the rule judges.
 */
export function inRuleScope(policy: Policy, rule: Rule, input: EvaluationInput): boolean {
  const compiled = compilePolicy(policy);
  const cr = compiled.rules.find((r) => r.rule === rule);
  if (!cr) throw new TypeError(`rule ${rule.id} is not a rule of policy ${policy.metadata.name}`);
  if (cr.inScope === undefined) return true;
  const container = completeFacts(input.container);
  return cr.inScope(container, input.host, projectOf(container, compiled.projectLabel));
}

/** Findings that are not exempted and whose rule is in enforce mode: what an enforcement door acts on. */
export function enforceable(findings: readonly Finding[]): Finding[] {
  return findings.filter((f) => f.mode === 'enforce' && f.exemptedBy === undefined);
}
