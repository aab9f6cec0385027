// The agent's way in for policies from its controller, without TypeBox.
//
// The controller validated the policy in full (validate.ts: schema, every
// check's parameters, semantic rules) before it gave it a version, and the
// bundle reaches the agent over mutual TLS with a sha256 over its bytes. So
// the agent checks only the structure its evaluator and enforcer rely on —
// enough to refuse a truncated, hand-edited or version-skewed bundle with a
// clear error — and never loads TypeBox (memory the agent's budget has no
// room for, see checks/define.ts). Check parameters are taken as the
// controller validated them. For a valid document the result is exactly what
// validatePolicyObject returns; anything from elsewhere (a local policy file,
// an API request) goes through parsePolicy / policyFromJson instead.
import { getCheck, CHECK_TYPES } from './checks/index';
import { ACTION_TYPES, DEFAULT_PROJECT_LABEL, MODES, POLICY_API_VERSION, SEVERITIES } from './constants';
import { PolicyValidationError } from './parse';
import type { Policy } from './types';

type Obj = Record<string, unknown>;

interface Problem {
  path: string;
  message: string;
}

function isObject(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = v === undefined ? 'nothing' : JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `${typeof v} ${show(v)}`;
}

/** Collects problems with paths in the form validate.ts uses ("spec.rules[2].action.type"). */
class Checker {
  readonly problems: Problem[] = [];

  bad(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  /** The object at `path`, or undefined after recording why it is not one. */
  object(v: unknown, path: string): Obj | undefined {
    if (isObject(v)) return v;
    this.bad(path, v === undefined ? 'missing (must be an object)' : `must be an object (got ${kindOf(v)})`);
    return undefined;
  }

  string(v: unknown, path: string, optional = false): void {
    if (optional && v === undefined) return;
    if (typeof v === 'string' && v !== '') return;
    this.bad(path, v === undefined ? 'missing (must be a non-empty string)' : `must be a non-empty string (got ${kindOf(v)})`);
  }

  oneOf(v: unknown, path: string, allowed: readonly string[]): void {
    if (typeof v === 'string' && allowed.includes(v)) return;
    this.bad(path, `must be one of ${allowed.join(', ')} (got ${show(v)})`);
  }

  stringList(v: unknown, path: string): void {
    if (v === undefined) return;
    if (!Array.isArray(v)) return this.bad(path, `must be an array of strings (got ${kindOf(v)})`);
    v.forEach((s, i) => this.string(s, `${path}[${i}]`));
  }

  labels(v: unknown, path: string): void {
    if (v === undefined) return;
    if (!isObject(v)) return this.bad(path, `must be an object of label values (got ${kindOf(v)})`);
    for (const [k, s] of Object.entries(v)) if (typeof s !== 'string') this.bad(`${path}[${JSON.stringify(k)}]`, `must be a string (got ${kindOf(s)})`);
  }

  /** A rule scope or an exemption's match: what the evaluator compiles into matchers. */
  scope(v: unknown, path: string, names: boolean): void {
    if (v === undefined) return;
    const s = this.object(v, path);
    if (!s) return;
    this.labels(s.hostLabels, `${path}.hostLabels`);
    this.labels(s.containerLabels, `${path}.containerLabels`);
    this.stringList(s.images, `${path}.images`);
    this.stringList(s.projects, `${path}.projects`);
    if (names) this.stringList(s.names, `${path}.names`);
  }
}

function checkRule(c: Checker, rule: unknown, at: string, firstById: Map<string, number>, index: number): void {
  const r = c.object(rule, at);
  if (!r) return;
  c.string(r.id, `${at}.id`);
  if (typeof r.id === 'string' && r.id !== '') {
    const first = firstById.get(r.id);
    if (first !== undefined) c.bad(`${at}.id`, `duplicate rule id "${r.id}" (first used by spec.rules[${first}])`);
    else firstById.set(r.id, index);
  }
  c.string(r.description, `${at}.description`);
  c.oneOf(r.severity, `${at}.severity`, SEVERITIES);
  c.oneOf(r.mode, `${at}.mode`, MODES);
  const action = c.object(r.action, `${at}.action`);
  if (action) {
    c.oneOf(action.type, `${at}.action.type`, ACTION_TYPES);
    if (action.type === 'limit') {
      const l = action.limits;
      if (!isObject(l) || (l.memory === undefined && l.cpus === undefined && l.pids === undefined)) {
        c.bad(`${at}.action.limits`, 'action "limit" needs `limits` with at least one of memory, cpus, pids');
      }
    }
  }
  const check = c.object(r.check, `${at}.check`);
  if (check && (typeof check.type !== 'string' || !getCheck(check.type))) {
    c.bad(`${at}.check.type`, `unknown check type ${show(check.type)}; this agent knows: ${CHECK_TYPES.join(', ')}`);
  }
  c.scope(r.scope, `${at}.scope`, false);
  if (r.exemptions === undefined) return;
  if (!Array.isArray(r.exemptions)) return c.bad(`${at}.exemptions`, `must be an array (got ${kindOf(r.exemptions)})`);
  r.exemptions.forEach((e: unknown, j) => {
    const ex = c.object(e, `${at}.exemptions[${j}]`);
    if (!ex) return;
    c.string(ex.who, `${at}.exemptions[${j}].who`);
    c.string(ex.why, `${at}.exemptions[${j}].why`);
    c.string(ex.until, `${at}.exemptions[${j}].until`, true);
    c.scope(ex.match, `${at}.exemptions[${j}].match`, true);
  });
}

/**
 * The policy of a controller bundle (its policy_json, parsed), checked for
 * structure only and normalised exactly like validatePolicyObject (a copy;
 * spec.projectLabel defaulted). Throws PolicyValidationError
 * (BK_ERR_POLICY_INVALID) listing every structural problem.
 */
export function policyFromTrustedBundle(obj: unknown, filename = '<policy bundle>'): Policy {
  const c = new Checker();
  const doc = c.object(obj, '');
  if (doc) {
    if (doc.apiVersion !== POLICY_API_VERSION) c.bad('apiVersion', `must be "${POLICY_API_VERSION}" (got ${show(doc.apiVersion)})`);
    if (doc.kind !== 'Policy') c.bad('kind', `must be "Policy" (got ${show(doc.kind)})`);
    const meta = c.object(doc.metadata, 'metadata');
    if (meta) c.string(meta.name, 'metadata.name');
    const spec = c.object(doc.spec, 'spec');
    if (spec) {
      c.string(spec.projectLabel, 'spec.projectLabel', true);
      if (!Array.isArray(spec.rules)) c.bad('spec.rules', `must be an array of rules (got ${spec.rules === undefined ? 'nothing' : kindOf(spec.rules)})`);
      else {
        const firstById = new Map<string, number>();
        spec.rules.forEach((rule: unknown, i) => checkRule(c, rule, `spec.rules[${i}]`, firstById, i));
      }
    }
  }
  if (c.problems.length > 0) {
    throw new PolicyValidationError(c.problems.map((p) => ({ file: filename, line: 0, column: 0, path: p.path, message: p.message })));
  }
  const policy = structuredClone(obj) as Policy;
  policy.spec.projectLabel ??= DEFAULT_PROJECT_LABEL;
  return policy;
}
