// Validation of a policy object (already parsed from YAML or JSON): schema
// errors, per-check parameter errors and semantic errors (duplicate ids,
// `limit` without limits, bad dates, globs over the limits, values out of
// range), each with its field path. The first DEFAULT_MAX_ISSUES are described
// and the rest only counted, so a document full of errors costs little more
// than a valid one.
// parse.ts turns the paths into file/line/column. It loads TypeBox, so parse.ts
// requires it on first use (trusted-bundle.ts is the TypeBox-free path for controller bundles).
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { CHECK_TYPES, getCheck } from './checks/index';
import { DEFAULT_PROJECT_LABEL, RULE_ID_PATTERN } from './constants';
import { GLOB_LIMITS } from './glob';
import { PolicyShapeSchema } from './schema';
import { MAX_MEMORY_BYTES, formatBytes, parseMemorySize } from './units';
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

/**
 * Collects issues up to a budget. Past it, `add` only counts: a document with half a million
 * wrong items costs a count, not half a million located, sorted and serialized messages.
 */
class IssueList {
  readonly items: ValidationIssue[] = [];
  omitted = 0;
  constructor(private readonly max: number) {}
  get full(): boolean {
    return this.items.length >= this.max;
  }
  add(issue: ValidationIssue): void {
    if (this.full) this.omitted++;
    else this.items.push(issue);
  }
}

/** Errors past the budget counted without being described, up to this many per schema pass. */
const MAX_COUNTED_PAST_BUDGET = 1000;

function schemaIssues(schema: TSchema, value: unknown, prefix: PathSegment[], root: unknown, out: IssueList): void {
  const required = new Set<string>();
  const seen = new Set<string>();
  let counted = 0;
  // TypeBox yields an object's missing required fields before it visits its properties, so
  // the "expected string" for a missing field comes after the clearer "missing" one.
  for (const e of Value.Errors(schema, value)) {
    if (e.type === ValueErrorType.ObjectRequiredProperty) required.add(e.path);
    else if (required.has(e.path)) continue;
    if (out.full) {
      // Past the budget: count (bounded) and stop.
      out.omitted++;
      if (++counted >= MAX_COUNTED_PAST_BUDGET) return;
      continue;
    }
    const issue = describeError(e, [...prefix, ...pointerToPath(e.path, root === value ? value : getAt(root, prefix))]);
    const k = `${formatPath(issue.path)}\u0000${issue.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.add(issue);
  }
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
  'image-tag-pinned': ['tags', 'repositories'],
  devices: ['allowed'],
};

function globIssues(glob: unknown, path: PathSegment[], out: IssueList): void {
  if (typeof glob !== 'string') return;
  if (glob.length > GLOB_LIMITS.maxLength) {
    out.add({ path, message: `glob is ${glob.length} characters long; at most ${GLOB_LIMITS.maxLength} are allowed` });
  }
  let stars = 0;
  for (let i = glob.indexOf('*'); i >= 0; i = glob.indexOf('*', i + 1)) stars++;
  if (stars > GLOB_LIMITS.maxStars) out.add({ path, message: `glob has ${stars} "*"; at most ${GLOB_LIMITS.maxStars} are allowed` });
}

/** A list of globs, or a label map whose values are globs. Ill-typed values are the schema's to report. */
function globListIssues(value: unknown, path: PathSegment[], out: IssueList): void {
  const entries: [PathSegment, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : isObject(value) ? Object.entries(value) : [];
  if (entries.length > GLOB_LIMITS.maxPerList) {
    out.add({ path, message: `${entries.length} ${Array.isArray(value) ? 'globs' : 'labels'}; at most ${GLOB_LIMITS.maxPerList} are allowed` });
  }
  for (const [k, v] of entries) globIssues(v, [...path, k], out);
}

function scopeGlobIssues(scope: unknown, path: PathSegment[], out: IssueList): void {
  if (!isObject(scope)) return;
  for (const f of SCOPE_GLOB_FIELDS) if (scope[f] !== undefined) globListIssues(scope[f], [...path, f], out);
}

/** Glob limits on one rule: its scope, its exemptions' matches and its check's glob parameters. */
function ruleGlobIssues(rule: Record<string, unknown>, base: PathSegment[], out: IssueList): void {
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
}

// ---- ranges and document-wide bounds (docs/limits.md) -----------------------------------------

/** Bounds on the content of a policy, whatever text it came from (docs/limits.md). */
export const POLICY_CONTENT_LIMITS = {
  /** Rules in one policy: each is evaluated on every authorization request. */
  maxRules: 500,
  /** Nesting of objects and arrays (a full policy needs about 8). */
  maxDepth: 32,
  /** `limit` action memory, bytes (1 PiB; Docker takes at least 6 MiB). */
  maxMemoryBytes: MAX_MEMORY_BYTES,
  /** `limit` action CPUs: Docker accepts 0.01 up to the host's CPU count. */
  minCpus: 0.01,
  maxCpus: 4096,
  /** `limit` action pids: the kernel's PID_MAX_LIMIT on 64-bit hosts. */
  maxPids: 4_194_304,
} as const;

/** Default number of issues returned; past it they are only counted. */
export const DEFAULT_MAX_ISSUES = 50;

/**
 * Walks every value once (iteratively, so depth costs no stack): nesting depth, numbers that
 * cannot be carried exactly (beyond ±2^53, infinities, NaN) and NUL characters, which C
 * strings on the way to dockerd would cut short.
 */
function contentIssues(obj: unknown, out: IssueList): { tooDeep: boolean } {
  const L = POLICY_CONTENT_LIMITS;
  let tooDeep = false;
  const stack: [unknown, PathSegment[]][] = [[obj, []]];
  while (stack.length > 0 && !out.full) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) out.add({ path, message: 'must not contain a NUL character (U+0000)' });
    } else if (typeof v === 'number') {
      // The quotas of a `limit` action get their own ranges (limitRangeIssues).
      if (path.length === 6 && path[3] === 'action' && path[4] === 'limits') continue;
      if (!Number.isFinite(v) || Math.abs(v) > Number.MAX_SAFE_INTEGER) out.add({ path, message: `${String(v)} is out of range: numbers must be between -(2^53 - 1) and 2^53 - 1` });
    } else if (v !== null && typeof v === 'object') {
      if (path.length >= L.maxDepth) {
        out.add({ path, message: `nested more than ${L.maxDepth} levels deep` });
        tooDeep = true;
        continue;
      }
      if (Array.isArray(v)) {
        for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], [...path, i]]);
      } else {
        for (const [k, x] of Object.entries(v)) {
          if (k.includes('\u0000')) out.add({ path: [...path, k], message: 'field names must not contain a NUL character (U+0000)', key: true });
          stack.push([x, [...path, k]]);
        }
      }
    }
  }
  return { tooDeep };
}

/** Quotas of a `limit` action, each within what Docker and the kernel accept. */
function limitRangeIssues(limits: unknown, base: PathSegment[], out: IssueList): void {
  if (!isObject(limits)) return;
  const L = POLICY_CONTENT_LIMITS;
  const m = limits.memory;
  if (typeof m === 'string' || typeof m === 'number') {
    const bytes = parseMemorySize(m);
    if ((bytes === undefined && /^\s*\d/.test(String(m))) || (bytes !== undefined && bytes > L.maxMemoryBytes)) {
      out.add({ path: [...base, 'memory'], message: `memory limit ${show(m)} is out of range: at most ${formatBytes(L.maxMemoryBytes)} (${L.maxMemoryBytes} bytes)` });
    } else if (bytes === 0) {
      out.add({ path: [...base, 'memory'], message: 'memory limit must be at least 1 byte (0 would mean "unlimited" to Docker)' });
    }
  }
  const c = limits.cpus;
  if (typeof c === 'number' && Number.isFinite(c) && c > 0 && (c < L.minCpus || c > L.maxCpus)) {
    out.add({ path: [...base, 'cpus'], message: `cpus ${show(c)} is out of range: ${L.minCpus} to ${L.maxCpus}` });
  }
  const p = limits.pids;
  if (typeof p === 'number' && Number.isInteger(p) && p > L.maxPids) {
    out.add({ path: [...base, 'pids'], message: `pids ${show(p)} is out of range: 1 to ${L.maxPids}` });
  }
}

/**
 * Validates a parsed policy document. Returns the policy (with defaults filled) when there are
 * no issues. At most `maxIssues` issues are described; `omitted` counts at least those left
 * out (validation stops early, so there may be more).
 */
export function validatePolicyObject(obj: unknown, options: { maxIssues?: number } = {}): { policy: Policy | undefined; issues: ValidationIssue[]; omitted: number } {
  const issues = new IssueList(options.maxIssues ?? DEFAULT_MAX_ISSUES);
  const done = (): { policy: undefined; issues: ValidationIssue[]; omitted: number } => ({ policy: undefined, issues: issues.items, omitted: issues.omitted });
  const rawRules = isObject(obj) && isObject(obj.spec) && Array.isArray(obj.spec.rules) ? (obj.spec.rules as unknown[]) : [];
  if (rawRules.length > POLICY_CONTENT_LIMITS.maxRules) {
    // Nothing else is looked at: every further check would cost time per rule.
    issues.add({ path: ['spec', 'rules'], message: `${rawRules.length} rules; at most ${POLICY_CONTENT_LIMITS.maxRules} are allowed` });
    return done();
  }
  // Past the depth bound nothing else walks the document: the schema pass would recurse.
  if (contentIssues(obj, issues).tooDeep) return done();
  schemaIssues(PolicyShapeSchema, obj, [], obj, issues);
  const rules = rawRules;
  const firstById = new Map<string, number>();
  for (let i = 0; i < rules.length && !issues.full; i++) {
    const rule = rules[i];
    if (!isObject(rule)) continue;
    const base: PathSegment[] = ['spec', 'rules', i];
    if (typeof rule.id === 'string') {
      const first = firstById.get(rule.id);
      if (first !== undefined) issues.add({ path: [...base, 'id'], message: `duplicate rule id "${rule.id}" (first used by spec.rules[${first}])` });
      else firstById.set(rule.id, i);
    }
    const check = rule.check;
    if (isObject(check) && typeof check.type === 'string') {
      const def = getCheck(check.type);
      if (def) {
        const { type: _type, ...params } = check;
        const before = issues.items.length + issues.omitted;
        schemaIssues(def.params(), params, [...base, 'check'], obj, issues);
        if (issues.items.length + issues.omitted === before && def.validate) {
          for (const p of def.validate({ ...(def.defaults as object), ...params } as never)) {
            issues.add({ path: [...base, 'check', ...relativeToSegments(p.path)], message: p.message });
          }
        }
      }
    }
    ruleGlobIssues(rule, base, issues);
    const action = rule.action;
    if (isObject(action) && action.type === 'limit') {
      const l = action.limits;
      if (!isObject(l) || (l.memory === undefined && l.cpus === undefined && l.pids === undefined)) {
        issues.add({ path: [...base, 'action', ...(isObject(l) ? ['limits'] : [])], message: 'action "limit" needs `limits` with at least one of memory, cpus, pids' });
      }
    }
    if (isObject(action)) limitRangeIssues(action.limits, [...base, 'action', 'limits'], issues);
  }
  if (issues.items.length > 0) return done();
  const policy = structuredClone(obj) as Policy;
  policy.spec.projectLabel ??= DEFAULT_PROJECT_LABEL;
  return { policy, issues: [], omitted: 0 };
}
