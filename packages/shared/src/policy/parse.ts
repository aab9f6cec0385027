// Loading policy documents: YAML or JSON text (JSON is YAML) → Policy, or a
// PolicyValidationError listing EVERY error with file, line, column and field
// path. A rejected policy never replaces the one in force, so callers only
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

function deref(node: unknown, doc: Document): YNode {
  return (yaml().isAlias(node) ? node.resolve(doc) : node) as YNode;
}

/** The source offset for an issue: its node, or the closest existing ancestor (missing fields). */
function locate(doc: Document, issue: ValidationIssue): number {
  let node: YNode = deref(doc.contents, doc);
  let offset = node?.range?.[0] ?? 0;
  for (let i = 0; i < issue.path.length; i++) {
    const seg = issue.path[i]!;
    const last = i === issue.path.length - 1;
    if (yaml().isMap(node)) {
      const pair = node.items.find((p) => yaml().isPair(p) && (yaml().isScalar(p.key) ? String(p.key.value) === String(seg) : String(p.key) === String(seg)));
      if (!pair) return offset;
      const keyNode = pair.key as YNode;
      const valueNode = deref(pair.value, doc);
      if ((last && issue.key) || !valueNode?.range) return keyNode?.range?.[0] ?? offset;
      node = valueNode;
    } else if (yaml().isSeq(node) && typeof seg === 'number') {
      const item = deref(node.items[seg], doc);
      if (!item?.range) return offset;
      node = item;
    } else {
      return offset;
    }
    offset = node.range?.[0] ?? offset;
  }
  return offset;
}

/**
 * Parses a policy from YAML or JSON text. `filename` appears in every error
 * (default "<policy>"). Throws PolicyValidationError (BK_ERR_POLICY_INVALID).
 */
export function parsePolicy(text: string, filename = '<policy>'): Policy {
  const lineCounter = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    throw new PolicyValidationError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { file: filename, line: pos.line, column: pos.col, path: '', message: `YAML syntax: ${e.message.split('\n')[0]!}` };
      }),
    );
  }
  let obj: unknown;
  try {
    obj = doc.toJS({ maxAliasCount: 100 });
  } catch (cause) {
    throw new PolicyValidationError([{ file: filename, line: 1, column: 1, path: '', message: `YAML: ${(cause as Error).message}` }], { cause });
  }
  const { validatePolicyObject, formatPath } = validator();
  const { policy, issues } = validatePolicyObject(obj);
  if (policy) return policy;
  const errors = issues.map((issue) => {
    const pos = lineCounter.linePos(locate(doc, issue));
    return { file: filename, line: pos.line, column: pos.col, path: formatPath(issue.path), message: issue.message };
  });
  errors.sort((a, b) => a.line - b.line || a.column - b.column);
  throw new PolicyValidationError(errors);
}

/**
 * Validates an already-parsed policy object (e.g. from a JSON request body or
 * a policy bundle) with the same rules as parsePolicy. Errors carry line 0,
 * column 0: there is no source text to point into.
 */
export function policyFromJson(obj: unknown, filename = '<json>'): Policy {
  const { validatePolicyObject, formatPath } = validator();
  const { policy, issues } = validatePolicyObject(obj);
  if (policy) return policy;
  throw new PolicyValidationError(issues.map((i) => ({ file: filename, line: 0, column: 0, path: formatPath(i.path), message: i.message })));
}

export type { PathSegment };
