// Loading policy documents: YAML or JSON text (JSON is YAML) → Policy, or a
// PolicyValidationError listing the errors (the first MAX_POLICY_ERRORS, and
// how many more) with file, line, column and field path. Documents over the
// size, nesting and alias limits (POLICY_DOCUMENT_LIMITS) are refused before
// the work they would cost is done. A rejected policy never replaces the one in force, so callers only
// swap policies after parsePolicy/policyFromJson returned.
import type { Document, Node } from 'yaml';
import type * as YamlModule from 'yaml';
import { BulkheadError } from '../errors/registry';
import type { Policy } from './types';
import type * as ValidateModule from './validate';
import type { PathSegment, ValidationIssue } from './validate';

// `yaml` is loaded on first use: the agent receives policy bundles as JSON and
// never parses YAML, and skipping the module keeps its RSS down (the agent's
// standing memory budget, BENCHMARKS.md agent-idle).
let yamlModule: typeof YamlModule | undefined;
function yaml(): typeof YamlModule {
  yamlModule ??= require('yaml') as typeof YamlModule;
  return yamlModule;
}

// validate.ts likewise, because it builds the TypeBox schemas (checks/define.ts):
// the agent takes controller bundles through trusted-bundle.ts and loads it
// only for a local policy file.
let validateModule: typeof ValidateModule | undefined;
function validator(): typeof ValidateModule {
  validateModule ??= require('./validate') as typeof ValidateModule;
  return validateModule;
}

export interface PolicyErrorDetail {
  file: string;
  /** 1-based; 0 when the document had no source text (policyFromJson). */
  line: number;
  /** 1-based; 0 when the document had no source text (policyFromJson). */
  column: number;
  /** Field path, e.g. "spec.rules[3].check.maxMemory"; "" for the document itself. */
  path: string;
  message: string;
}

export class PolicyValidationError extends BulkheadError {
  readonly errors: PolicyErrorDetail[];

  constructor(errors: PolicyErrorDetail[], options?: { cause?: unknown }) {
    super('BK_ERR_POLICY_INVALID', summarize(errors), { ...options, details: { errors } });
    this.name = 'PolicyValidationError';
    this.errors = errors;
  }
}

/** "file:3:7 spec.rules[0].severity: must be one of …" per error. */
export function formatPolicyError(e: PolicyErrorDetail): string {
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.column}` : e.file;
  return `${where}: ${e.path ? `${e.path}: ` : ''}${e.message}`;
}

function summarize(errors: PolicyErrorDetail[]): string {
  const head = `policy is invalid (${errors.length} error${errors.length === 1 ? '' : 's'})`;
  const shown = errors.slice(0, 20).map((e) => `  ${formatPolicyError(e)}`);
  if (errors.length > 20) shown.push(`  … and ${errors.length - 20} more`);
  return [head, ...shown].join('\n');
}

type YNode = Node | null | undefined;

/**
 * Bounds on a policy document, checked before and while it is parsed (docs/limits.md). The
 * `yaml` library spends several microseconds per node and its composer slows down with
 * nesting, so the text is measured with one cheap pass before the library sees it; the
 * controller parses policies on its request path and a stall there delays every API call.
 */
export const POLICY_DOCUMENT_LIMITS = {
  /** UTF-8 bytes of policy text (the PUT / dry-run body limit is the same). */
  maxBytes: 1024 * 1024,
  /** Non-blank lines plus flow-collection items (`[a, b]`, `{a: 1}`): an upper bound on YAML nodes. */
  maxEntries: 10_000,
  /** Nesting of collections; a full policy needs about 8. */
  maxDepth: 32,
  /** Alias nodes (`*name`). */
  maxAliases: 100,
  /** Size of the document with every alias replaced by what it refers to. */
  maxExpandedBytes: 2 * 1024 * 1024,
} as const;

/** Errors reported per document; validation stops at this many (docs/limits.md). */
export const MAX_POLICY_ERRORS = 50;

/** Start offsets of every line, for line/column by binary search. */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

function position(starts: readonly number[], offset: number): { line: number; col: number } {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, col: offset - starts[lo]! + 1 };
}

/**
 * One pass over the text before the YAML library sees it: refuses control characters YAML does
 * not allow (a raw NUL included), too many entries and too deep flow nesting, at the offset where
 * the limit was crossed. Flow brackets in unquoted text (plain and block scalars) count too: a document needs more than
 * 32 unclosed ones in a row to be refused for that.
 */
function prescan(text: string): { offset: number; message: string } | undefined {
  const L = POLICY_DOCUMENT_LIMITS;
  let entries = 0;
  let depth = 0;
  let lineHasContent = false;
  let atLineStart = true; // only indentation and "- " / "? " indicators so far on this line
  let prev = '\n';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f) {
      return { offset: i, message: `control character U+${c.toString(16).toUpperCase().padStart(4, '0')} is not allowed in a policy document` };
    }
    const ch = text[i]!;
    if (ch === '\n') {
      if (lineHasContent) entries++;
      lineHasContent = false;
      atLineStart = true;
    } else if (ch === '#' && (prev === ' ' || prev === '\t' || prev === '\n')) {
      const nl = text.indexOf('\n', i);
      const end = nl < 0 ? text.length : nl;
      for (let j = i; j < end; j++) {
        const cc = text.charCodeAt(j);
        if ((cc < 0x20 && cc !== 0x09 && cc !== 0x0d) || cc === 0x7f) {
          return { offset: j, message: `control character U+${cc.toString(16).toUpperCase().padStart(4, '0')} is not allowed in a policy document` };
        }
      }
      i = end - 1;
      continue;
    } else if ((ch === '"' || ch === "'") && (prev === ' ' || prev === '\t' || prev === '\n' || prev === '[' || prev === '{' || prev === ',' || prev === ':')) {
      // A quoted scalar: its brackets and commas are text.
      lineHasContent = true;
      atLineStart = false;
      let j = i + 1;
      for (; j < text.length; j++) {
        const q = text[j]!;
        const cc = text.charCodeAt(j);
        if ((cc < 0x20 && cc !== 0x09 && cc !== 0x0a && cc !== 0x0d) || cc === 0x7f) {
          return { offset: j, message: `control character U+${cc.toString(16).toUpperCase().padStart(4, '0')} is not allowed in a policy document` };
        }
        if (q === '\n') entries++;
        if (ch === '"' && q === '\\') j++;
        else if (q === ch) {
          if (ch === "'" && text[j + 1] === "'") j++;
          else break;
        }
      }
      i = j;
      prev = ch;
      continue;
    } else if (ch === '[' || ch === '{') {
      lineHasContent = true;
      atLineStart = false;
      entries++;
      if (++depth > L.maxDepth) return { offset: i, message: `collections are nested more than ${L.maxDepth} deep` };
    } else if (ch === ']' || ch === '}') {
      if (depth > 0) depth--;
    } else if (ch === ',') {
      entries++;
    } else if ((ch === '-' || ch === '?') && atLineStart && (text[i + 1] === ' ' || text[i + 1] === '\n')) {
      // "- - - x": each compact indicator opens a collection of its own.
      entries++;
      lineHasContent = true;
    } else if (ch !== ' ' && ch !== '\t' && ch !== '\r') {
      lineHasContent = true;
      atLineStart = false;
    }
    if (entries > L.maxEntries) {
      return { offset: i, message: `the document has more than ${L.maxEntries} entries (non-blank lines and flow items); split the policy or simplify it` };
    }
    prev = ch;
  }
  return undefined;
}

/**
 * Depth, alias count and expanded size of the composed document, in one pass over its nodes
 * (no recursion, so a deep block document cannot overflow the stack). Returns the alias
 * targets, so locating an error never searches the document for an anchor.
 */
function measure(doc: Document): { problem?: { offset: number; message: string }; duplicates: number[]; targets: Map<Node, Node> } {
  const Y = yaml();
  const L = POLICY_DOCUMENT_LIMITS;
  const targets = new Map<Node, Node>();
  const anchors = new Map<string, Node>();
  // Offsets of repeated keys. The library's own check (uniqueKeys) compares each key with every
  // earlier one, quadratic in a map's size; a Set per map does it in one pass.
  const duplicates: number[] = [];
  // Post-order in document order: children before their parent, and an anchored node
  // before any alias that follows it, so sizes can be summed front to back.
  const order: Node[] = [];
  const stack: [Node, number, boolean][] = [];
  const root = doc.contents as YNode;
  if (root) stack.push([root, 1, false]);
  let aliases = 0;
  while (stack.length > 0) {
    const [node, depth, done] = stack.pop()!;
    if (done) {
      order.push(node);
      continue;
    }
    const at = node.range?.[0] ?? 0;
    if (depth > L.maxDepth) return { problem: { offset: at, message: `collections are nested more than ${L.maxDepth} deep` }, duplicates, targets };
    if (Y.isAlias(node)) {
      if (++aliases > L.maxAliases) return { problem: { offset: at, message: `more than ${L.maxAliases} aliases` }, duplicates, targets };
      const target = anchors.get(node.source);
      if (target) targets.set(node, target);
      order.push(node);
      continue;
    }
    if (node.anchor) anchors.set(node.anchor, node);
    stack.push([node, depth, true]);
    if (Y.isMap(node)) {
      const keys = new Set<string>();
      for (const pair of node.items) {
        if (!Y.isScalar(pair.key)) continue;
        const k = `${typeof pair.key.value}:${String(pair.key.value)}`;
        if (keys.has(k)) duplicates.push(pair.key.range?.[0] ?? at);
        else keys.add(k);
      }
    }
    if (Y.isMap(node) || Y.isSeq(node)) {
      const kids: Node[] = [];
      for (const item of node.items as unknown[]) {
        if (Y.isPair(item)) {
          if (Y.isNode(item.key)) kids.push(item.key);
          if (Y.isNode(item.value)) kids.push(item.value);
        } else if (Y.isNode(item)) kids.push(item);
      }
      for (let k = kids.length - 1; k >= 0; k--) stack.push([kids[k]!, depth + 1, false]);
    }
  }
  const size = new Map<Node, number>();
  for (const node of order) {
    let n: number;
    if (Y.isAlias(node)) {
      const target = targets.get(node);
      const s = target ? size.get(target) : 0;
      if (s === undefined) return { problem: { offset: node.range?.[0] ?? 0, message: `alias *${node.source} refers to a collection that contains it` }, duplicates, targets };
      n = s;
    } else if (Y.isMap(node) || Y.isSeq(node)) {
      n = 2;
      for (const item of node.items as unknown[]) {
        if (Y.isPair(item)) n += (Y.isNode(item.key) ? size.get(item.key) ?? 0 : 0) + (Y.isNode(item.value) ? size.get(item.value) ?? 0 : 0) + 2;
        else if (Y.isNode(item)) n += (size.get(item) ?? 0) + 1;
      }
    } else {
      n = node.range ? node.range[1] - node.range[0] + 1 : 1;
    }
    if (n > L.maxExpandedBytes) {
      return { problem: { offset: node.range?.[0] ?? 0, message: `with its aliases expanded the document is over ${L.maxExpandedBytes / (1024 * 1024)} MiB` }, duplicates, targets };
    }
    size.set(node, n);
  }
  return { duplicates, targets };
}

/** Map pairs by key, built once per map that an error points into. */
const pairIndex = new WeakMap<object, Map<string, unknown>>();

function pairFor(map: { items: unknown[] }, seg: PathSegment): unknown {
  let index = pairIndex.get(map);
  if (!index) {
    index = new Map();
    for (const p of map.items) {
      if (!yaml().isPair(p)) continue;
      const k = yaml().isScalar(p.key) ? String(p.key.value) : String(p.key);
      if (!index.has(k)) index.set(k, p);
    }
    pairIndex.set(map, index);
  }
  return index.get(String(seg));
}

/** The source offset for an issue: its node, or the closest existing ancestor (missing fields). */
function locate(doc: Document, issue: ValidationIssue, targets: ReadonlyMap<Node, Node>): number {
  const deref = (n: unknown): YNode => (yaml().isAlias(n) ? targets.get(n) : (n as YNode));
  let node: YNode = deref(doc.contents);
  let offset = node?.range?.[0] ?? 0;
  for (let i = 0; i < issue.path.length; i++) {
    const seg = issue.path[i]!;
    const last = i === issue.path.length - 1;
    if (yaml().isMap(node)) {
      const pair = pairFor(node, seg);
      if (!pair || !yaml().isPair(pair)) return offset;
      const keyNode = pair.key as YNode;
      const valueNode = deref(pair.value);
      if ((last && issue.key) || !valueNode?.range) return keyNode?.range?.[0] ?? offset;
      node = valueNode;
    } else if (yaml().isSeq(node) && typeof seg === 'number') {
      const item = deref(node.items[seg]);
      if (!item?.range) return offset;
      node = item;
    } else {
      return offset;
    }
    offset = node.range?.[0] ?? offset;
  }
  return offset;
}

/** The first MAX_POLICY_ERRORS errors; past that, a last entry says validation stopped and how many more it counted. */
function capErrors(errors: PolicyErrorDetail[], filename: string, omitted = 0): PolicyErrorDetail[] {
  if (errors.length < MAX_POLICY_ERRORS) return errors;
  const more = errors.length - MAX_POLICY_ERRORS + omitted;
  const message = more > 0
    ? `validation stopped after ${MAX_POLICY_ERRORS} errors; at least ${more} more were left out`
    : `validation stopped after ${MAX_POLICY_ERRORS} errors; the rest of the document was not checked`;
  return [...errors.slice(0, MAX_POLICY_ERRORS), { file: filename, line: 0, column: 0, path: '', message }];
}

/**
 * Parses a policy from YAML or JSON text. `filename` appears in every error
 * (default "<policy>"). Throws PolicyValidationError (BK_ERR_POLICY_INVALID),
 * listing at most MAX_POLICY_ERRORS errors plus a line saying how many more there were.
 */
export function parsePolicy(text: string, filename = '<policy>'): Policy {
  const L = POLICY_DOCUMENT_LIMITS;
  const refuse = (offset: number, message: string, cause?: unknown): never => {
    const pos = position(lineStarts(text), offset);
    throw new PolicyValidationError([{ file: filename, line: pos.line, column: pos.col, path: '', message }], cause !== undefined ? { cause } : undefined);
  };
  // Characters first: the byte count is at most 3 per UTF-16 unit, so only a borderline text is encoded.
  if (text.length > L.maxBytes || (text.length * 3 > L.maxBytes && Buffer.byteLength(text) > L.maxBytes)) {
    throw new PolicyValidationError([{ file: filename, line: 0, column: 0, path: '', message: `the document is ${Buffer.byteLength(text)} bytes; at most ${L.maxBytes} (1 MiB) are allowed` }]);
  }
  const pre = prescan(text);
  if (pre) refuse(pre.offset, pre.message);

  const lineCounter = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false, strict: true });
  if (doc.errors.length > 0) {
    throw new PolicyValidationError(
      capErrors(
        doc.errors.slice(0, MAX_POLICY_ERRORS + 1).map((e) => {
          const pos = lineCounter.linePos(e.pos[0]);
          return { file: filename, line: pos.line, column: pos.col, path: '', message: `YAML syntax: ${e.message.split('\n')[0]!}` };
        }),
        filename,
        Math.max(0, doc.errors.length - MAX_POLICY_ERRORS - 1),
      ),
    );
  }
  const measured = measure(doc);
  if (measured.problem) refuse(measured.problem.offset, measured.problem.message);
  if (measured.duplicates.length > 0) {
    const dups = measured.duplicates.sort((a, b) => a - b);
    throw new PolicyValidationError(
      capErrors(
        dups.slice(0, MAX_POLICY_ERRORS + 1).map((offset) => {
          const pos = lineCounter.linePos(offset);
          return { file: filename, line: pos.line, column: pos.col, path: '', message: 'YAML syntax: Map keys must be unique' };
        }),
        filename,
        Math.max(0, dups.length - MAX_POLICY_ERRORS - 1),
      ),
    );
  }
  let obj: unknown;
  try {
    obj = doc.toJS({ maxAliasCount: -1 });
  } catch (cause) {
    refuse(0, `YAML: ${(cause as Error).message}`, cause);
  }
  const { validatePolicyObject, formatPath } = validator();
  const { policy, issues, omitted } = validatePolicyObject(obj, { maxIssues: MAX_POLICY_ERRORS });
  if (policy) return policy;
  const errors = issues.map((issue) => {
    const pos = lineCounter.linePos(locate(doc, issue, measured.targets));
    return { file: filename, line: pos.line, column: pos.col, path: formatPath(issue.path), message: issue.message };
  });
  errors.sort((a, b) => a.line - b.line || a.column - b.column);
  throw new PolicyValidationError(capErrors(errors, filename, omitted));
}

/**
 * Validates an already-parsed policy object (e.g. from a JSON request body or
 * a policy bundle) with the same rules as parsePolicy. Errors carry line 0,
 * column 0: there is no source text to point into.
 */
export function policyFromJson(obj: unknown, filename = '<json>'): Policy {
  const { validatePolicyObject, formatPath } = validator();
  const { policy, issues, omitted } = validatePolicyObject(obj, { maxIssues: MAX_POLICY_ERRORS });
  if (policy) return policy;
  throw new PolicyValidationError(capErrors(issues.map((i) => ({ file: filename, line: 0, column: 0, path: formatPath(i.path), message: i.message })), filename, omitted));
}

export type { PathSegment };
