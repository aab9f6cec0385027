// Owns the bridge between the audits (CIS report, lockdown) and the ONE
// policy evaluator: the audits never decide "is this container allowed" on
// their own. They build a policy in code from catalogue checks (root-user,
// privileged, sensitive-mounts, …), run `evaluate` on each container, and map
// the findings back to their own ids. A change to a check in
// @bulkhead/shared therefore changes the audits too.
import { evaluate, policyFromJson } from '@bulkhead/shared';
import type { ContainerFacts__Output, Evidence, Policy } from '@bulkhead/shared';

/** One rule of an audit policy: an id of the audit's choosing and a catalogue check with its parameters. */
export interface AuditRule {
  id: string;
  check: { type: string; [param: string]: unknown };
}

/**
 * A monitor-mode policy with the given rules. Validated by the same loader
 * as a user's policy, so a parameter the catalogue no longer accepts fails
 * loudly at start-up instead of silently passing every container.
 */
export function buildAuditPolicy(name: string, rules: readonly AuditRule[]): Policy {
  return policyFromJson(
    {
      apiVersion: 'bulkhead.dev/v1',
      kind: 'Policy',
      metadata: { name, description: 'Built in code by the agent audit; not a user policy.' },
      spec: {
        rules: rules.map((r) => ({
          id: r.id,
          description: `audit rule ${r.id}`,
          severity: 'medium',
          mode: 'monitor',
          action: { type: 'alert' },
          check: r.check,
        })),
      },
    },
    `<${name}>`,
  );
}

export interface RuleHit {
  container: ContainerFacts__Output;
  evidence: Evidence[];
}

/** Evaluates every container once; returns, per rule id, the containers that break it. */
export function evaluateContainers(policy: Policy, containers: readonly ContainerFacts__Output[], now: Date): Map<string, RuleHit[]> {
  const out = new Map<string, RuleHit[]>();
  for (const r of policy.spec.rules) out.set(r.id, []);
  for (const container of containers) {
    for (const f of evaluate(policy, { container }, { now })) {
      out.get(f.ruleId)!.push({ container, evidence: f.evidence });
    }
  }
  return out;
}

/** The container's display name ("web", else the short id). */
export function containerName(c: Pick<ContainerFacts__Output, 'name' | 'id'>): string {
  const n = c.name.replace(/^\//, '');
  return n !== '' ? n : c.id.slice(0, 12);
}
