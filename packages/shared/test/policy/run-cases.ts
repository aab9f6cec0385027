// Table runner for check tests: each case goes through policyFromJson (so the
// parameters are validated like a real policy) and the one evaluator.
import type { Test } from 'tap';
import { evaluate } from '../../src/policy/evaluator';
import { policyFromJson } from '../../src/policy/parse';
import type { ContainerFacts__Output, HostFacts__Output } from '../../src/proto/index';
import type { EvaluationContext, Rule } from '../../src/policy/types';
import { facts, NOW, policyOf, rule } from './helpers';

export interface CheckCase {
  name: string;
  check: Rule['check'];
  facts?: Partial<ContainerFacts__Output>;
  /** Host facts; absent = unknown host. */
  host?: HostFacts__Output;
  ctx?: Partial<EvaluationContext>;
  broken: boolean;
  /** Matched against the joined evidence details. */
  detail?: RegExp;
  /** Expected number of evidence entries when broken. */
  evidence?: number;
}

export function runCases(t: Test, cases: readonly CheckCase[]): void {
  for (const c of cases) {
    const policy = policyFromJson(policyOf(rule(c.check)));
    const findings = evaluate(policy, c.host ? { container: facts(c.facts), host: c.host } : { container: facts(c.facts) }, { now: NOW, ...c.ctx });
    t.equal(findings.length, c.broken ? 1 : 0, `${c.name}: ${c.broken ? 'breaks' : 'passes'}`);
    const details = findings.flatMap((f) => f.evidence.map((e) => e.detail)).join('\n');
    if (c.broken && c.detail) t.match(details, c.detail, `${c.name}: evidence`);
    if (c.broken && c.evidence !== undefined) t.equal(findings[0]?.evidence.length, c.evidence, `${c.name}: evidence count`);
    if (!c.broken && findings.length > 0) t.comment(`unexpected: ${details}`);
  }
}
