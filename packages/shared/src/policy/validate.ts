// Validation of a policy object (already parsed from YAML or JSON): schema
// errors, per-check parameter errors and semantic errors (duplicate ids,
// `limit` without limits, bad dates, globs over the limits), ALL of them, each
// with its field path.
// parse.ts turns the paths into file/line/column. It loads TypeBox, so parse.ts
// requires it on first use (trusted-bundle.ts is the TypeBox-free path for controller bundles).
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { CHECK_TYPES, getCheck } from './checks/index';
import { DEFAULT_PROJECT_LABEL, RULE_ID_PATTERN } from './constants';
import { GLOB_LIMITS } from './glob';
import { PolicyShapeSchema } from './schema';
import type { Policy } from './types';

export type PathSegment = string | number;

export interface ValidationIssue {
  path: PathSegment[];
  message: string;
  /** True when the issue is about the key itself (an unknown field), not its value. */
  key?: boolean;
}

const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})$/;

/** ISO 8601 date-time with a zone, and a real calendar date. */
export function isDateTime(s: string): boolean {
  if (!DATE_TIME_RE.test(s)) return false;
  const t = Date.parse(s.replace(' ', 'T'));
  if (!Number.isFinite(t)) return false;
  // Date.parse rolls 2025-02-30 over to March; reject that.
  const [y, m, d] = s.slice(0, 10).split('-').map(Number) as [number, number, number];
  const probe = new Date(Date.UTC(y, m - 1, d));
  return probe.getUTCFullYear() === y && probe.getUTCMonth() === m - 1 && probe.getUTCDate() === d;
}

// TypeBox checks `format` only through its global registry; register what the
// schema uses unless someone else in the process already did.
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', isDateTime);

/** "spec.rules[3].check.maxMemory"; keys that are not identifiers are quoted: labels["a.b/c"]. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** JSON pointer from TypeBox ("/spec/rules/3/id") → segments, numbers where the value is an array. */
function pointerToPath(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^\d+$/.test(seg)) {
      out.push(Number(seg));
      cur = cur[Number(seg)];
    } else {
      out.push(seg);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

/** "paths[2]" / "maxMemory" / "" (relative to a check) → segments. */
function relativeToSegments(rel: string): PathSegment[] {
  const out: PathSegment[] = [];
  for (const m of rel.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

function show(v: unknown): string {
  const s = v === undefined ? 'nothing' : JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function literalOptions(schema: TSchema): string[] | undefined {
  const any = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!any || !any.every((s) => 'const' in s)) return undefined;
  return any.map((s) => String((s as unknown as { const: unknown }).const));
}

function describeError(e: ValueError, path: PathSegment[]): ValidationIssue {
  const last = path[path.length - 1];
  const schema = e.schema as TSchema & Record<string, unknown>;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return { path, message: `missing required field "${String(last)}"` };
    case ValueErrorType.ObjectAdditionalProperties: {
      return { path, message: `unknown field "${String(last)}"`, key: true };
    }
    case ValueErrorType.Union: {
      const opts = literalOptions(schema);
      if (opts && last === 'type' && path[path.length - 2] === 'check') {
        return { path, message: `unknown check type ${show(e.value)}; known types: ${CHECK_TYPES.join(', ')}` };
      }
      if (opts) return { path, message: `must be one of ${opts.join(', ')} (got ${show(e.value)})` };
      return { path, message: `invalid value ${show(e.value)}${typeof schema.description === 'string' ? `: ${schema.description}` : ''}` };
    }
    case ValueErrorType.Literal:
      return { path, message: `must be ${show(schema.const)} (got ${show(e.value)})` };
    case ValueErrorType.StringFormat:
      if (schema.format === 'date-time') return { path, message: `must be an ISO 8601 date-time with a time zone, e.g. 2026-01-31T00:00:00Z (got ${show(e.value)})` };
      break;
    case ValueErrorType.StringPattern:
      if (schema.pattern === RULE_ID_PATTERN) return { path, message: `rule id ${show(e.value)} must be lower-case letters, digits, ".", "_" or "-", starting with a letter or digit` };
      if (schema.pattern === '^/') return { path, message: `must be an absolute path (got ${show(e.value)})` };
      return { path, message: `${show(e.value)} does not have the expected form (${String(schema.pattern)})` };
    default:
      break;
  }
  const msg = e.message.charAt(0).toLowerCase() + e.message.slice(1);
  return { path, message: `${msg} (got ${show(e.value)})` };
}

function schemaIssues(schema: TSchema, value: unknown, prefix: PathSegment[], root: unknown): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  const required = new Set<string>();
  const seen = new Set<string>();
  const errors = [...Value.Errors(schema, value)];
  for (const e of errors) if (e.type === ValueErrorType.ObjectRequiredProperty) required.add(e.path);
  for (const e of errors) {
    // A missing field also yields "expected string" at the same path; keep the clearer one.
    if (required.has(e.path) && e.type !== ValueErrorType.ObjectRequiredProperty) continue;
    const issue = describeError(e, [...prefix, ...pointerToPath(e.path, root === value ? value : getAt(root, prefix))]);
    const k = `${formatPath(issue.path)}\u0000${issue.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(issue);
  }
  return out;
}

function getAt(root: unknown, path: readonly PathSegment[]): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// ---- glob limits (docs/policy.md#limits) ------------------------------------------------------

/** Scope (and exemption match) fields whose values are globs: lists, or label maps with glob values. */
const SCOPE_GLOB_FIELDS = ['hostLabels', 'containerLabels', 'images', 'projects', 'names'] as const;

/**
 * Check parameters that are lists of globs, by check type. A test keeps this in step with the
 * catalogue (every parameter described as a glob must be listed here).
 */
export const CHECK_GLOB_PARAMS: Readonly<Record<string, readonly string[]>> = {
  'registry-allowlist': ['registries'],
  'latest-tag': ['forbiddenTags'],
  devices: ['allowed'],
};

function globIssues(glob: unknown, path: PathSegment[], out: ValidationIssue[]): void {
  if (typeof glob !== 'string') return;
  if (glob.length > GLOB_LIMITS.maxLength) {
    out.push({ path, message: `glob is ${glob.length} characters long; at most ${GLOB_LIMITS.maxLength} are allowed` });
  }
  let stars = 0;
  for (let i = glob.indexOf('*'); i >= 0; i = glob.indexOf('*', i + 1)) stars++;
  if (stars > GLOB_LIMITS.maxStars) out.push({ path, message: `glob has ${stars} "*"; at most ${GLOB_LIMITS.maxStars} are allowed` });
}

/** A list of globs, or a label map whose values are globs. Ill-typed values are the schema's to report. */
function globListIssues(value: unknown, path: PathSegment[], out: ValidationIssue[]): void {
  const entries: [PathSegment, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : isObject(value) ? Object.entries(value) : [];
  if (entries.length > GLOB_LIMITS.maxPerList) {
    out.push({ path, message: `${entries.length} ${Array.isArray(value) ? 'globs' : 'labels'}; at most ${GLOB_LIMITS.maxPerList} are allowed` });
  }
  for (const [k, v] of entries) globIssues(v, [...path, k], out);
}

function scopeGlobIssues(scope: unknown, path: PathSegment[], out: ValidationIssue[]): void {
  if (!isObject(scope)) return;
  for (const f of SCOPE_GLOB_FIELDS) if (scope[f] !== undefined) globListIssues(scope[f], [...path, f], out);
}

/** Glob limits on one rule: its scope, its exemptions' matches and its check's glob parameters. */
function ruleGlobIssues(rule: Record<string, unknown>, base: PathSegment[]): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  scopeGlobIssues(rule.scope, [...base, 'scope'], out);
  if (Array.isArray(rule.exemptions)) {
    rule.exemptions.forEach((e, j) => {
      if (isObject(e)) scopeGlobIssues(e.match, [...base, 'exemptions', j, 'match'], out);
    });
  }
  const check = rule.check;
  if (isObject(check) && typeof check.type === 'string') {
    for (const param of CHECK_GLOB_PARAMS[check.type] ?? []) {
      if (check[param] !== undefined) globListIssues(check[param], [...base, 'check', param], out);
    }
  }
  return out;
}

/** Validates a parsed policy document. Returns the policy (with defaults filled) when there are no issues. */
export function validatePolicyObject(obj: unknown): { policy: Policy | undefined; issues: ValidationIssue[] } {
  const issues = schemaIssues(PolicyShapeSchema, obj, [], obj);
  const rules = isObject(obj) && isObject(obj.spec) && Array.isArray(obj.spec.rules) ? (obj.spec.rules as unknown[]) : [];
  const firstById = new Map<string, number>();
  rules.forEach((rule, i) => {
    if (!isObject(rule)) return;
    const base: PathSegment[] = ['spec', 'rules', i];
    if (typeof rule.id === 'string') {
      const first = firstById.get(rule.id);
      if (first !== undefined) issues.push({ path: [...base, 'id'], message: `duplicate rule id "${rule.id}" (first used by spec.rules[${first}])` });
      else firstById.set(rule.id, i);
    }
    const check = rule.check;
    if (isObject(check) && typeof check.type === 'string') {
      const def = getCheck(check.type);
      if (def) {
        const { type: _type, ...params } = check;
        const paramIssues = schemaIssues(def.params(), params, [...base, 'check'], obj);
        issues.push(...paramIssues);
        if (paramIssues.length === 0 && def.validate) {
          for (const p of def.validate({ ...(def.defaults as object), ...params } as never)) {
            issues.push({ path: [...base, 'check', ...relativeToSegments(p.path)], message: p.message });
          }
        }
      }
    }
    issues.push(...ruleGlobIssues(rule, base));
    const action = rule.action;
    if (isObject(action) && action.type === 'limit') {
      const l = action.limits;
      if (!isObject(l) || (l.memory === undefined && l.cpus === undefined && l.pids === undefined)) {
        issues.push({ path: [...base, 'action', ...(isObject(l) ? ['limits'] : [])], message: 'action "limit" needs `limits` with at least one of memory, cpus, pids' });
      }
    }
  });
  if (issues.length > 0) return { policy: undefined, issues };
  const policy = structuredClone(obj) as Policy;
  policy.spec.projectLabel ??= DEFAULT_PROJECT_LABEL;
  return { policy, issues };
}
