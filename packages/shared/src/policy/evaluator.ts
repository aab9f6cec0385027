// The ONE evaluator (stub; being built out): pure (policy, facts, ctx) → findings.
import type { ContainerFacts__Output, HostFacts__Output } from '../proto/index';
import type { EvaluationContext, Finding, Policy } from './types';

export interface EvaluationInput {
  container: ContainerFacts__Output;
  host?: HostFacts__Output;
}

export function evaluate(policy: Policy, input: EvaluationInput, ctx: EvaluationContext): Finding[] {
  void policy; void input; void ctx;
  return [];
}
