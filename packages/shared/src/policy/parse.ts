// Policy parsing (stub; being built out).
import { parse as parseYaml } from 'yaml';
import { BulkheadError } from '../errors/registry';
import type { Policy } from './types';

export interface PolicyErrorDetail {
  file: string;
  line: number;
  column: number;
  /** Field path, e.g. "spec.rules[3].check.maxMemory". */
  path: string;
  message: string;
}

export class PolicyValidationError extends BulkheadError {
  readonly errors: PolicyErrorDetail[];
  constructor(errors: PolicyErrorDetail[], options?: { cause?: unknown }) {
    super('BK_ERR_POLICY_INVALID', `policy is invalid: ${errors.length} error(s)`, options);
    this.name = 'PolicyValidationError';
    this.errors = errors;
  }
}

export function parsePolicy(text: string, filename = '<policy>'): Policy {
  void filename;
  return policyFromJson(parseYaml(text));
}

export function policyFromJson(obj: unknown): Policy {
  return obj as Policy;
}
