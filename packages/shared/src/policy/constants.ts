// Names of the policy document format that run-time code needs without the
// TypeBox schemas (schema.ts): the agent evaluates policies but never loads
// TypeBox, so these must not live in a module that requires it.
import type { ActionType, Mode, Severity } from './types';

export const POLICY_API_VERSION = 'bulkhead.dev/v1';
export const POLICY_SCHEMA_ID = 'https://bulkhead.dev/schema/policy.schema.json';
export const DEFAULT_PROJECT_LABEL = 'bulkhead.project';
export const RULE_ID_PATTERN = '^[a-z0-9][a-z0-9._-]*$';

// The closed value sets of a rule. schema.ts builds its unions from these, so
// the schema and the agent's bundle check (trusted-bundle.ts) cannot drift.
export const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];
export const MODES: readonly Mode[] = ['monitor', 'enforce'];
export const ACTION_TYPES: readonly ActionType[] = ['kill', 'stop', 'pause', 'quarantine', 'limit', 'alert'];
