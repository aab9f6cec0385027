// TypeBox schemas of the policy document. Two views of one definition:
// - the published JSON Schema (schema/policy.schema.json, for editors) puts a
//   discriminated union on `check.type`, so an editor validates each check's
//   parameters too;
// - the loader validates the document with `check` as {type, …} first and then
//   each check against its own parameter schema, because a failed anyOf only
//   says "expected union value" while a direct check names the bad field.
// This module requires TypeBox at load: only validation (validate.ts) and the
// schema generators load it, never the agent's run path (see constants.ts).
import { Type, type TObject, type TSchema } from '@sinclair/typebox';
import { CHECKS } from './checks/index';
import { ACTION_TYPES, DEFAULT_PROJECT_LABEL, MODES, POLICY_API_VERSION, POLICY_SCHEMA_ID, RULE_ID_PATTERN, SEVERITIES } from './constants';

export { DEFAULT_PROJECT_LABEL, POLICY_API_VERSION, POLICY_SCHEMA_ID, RULE_ID_PATTERN };

const Labels = (description: string) =>
  Type.Record(Type.String({ minLength: 1 }), Type.String(), { description });

export const SeveritySchema = Type.Union(SEVERITIES.map((s) => Type.Literal(s)), {
  description: 'How bad a violation is: low, medium, high or critical.',
});

export const ModeSchema = Type.Union(MODES.map((m) => Type.Literal(m)), {
  description: '`monitor`: record and alert only. `enforce`: also act (deny at the Docker API, or apply the action after start).',
});

export const ActionTypeSchema = Type.Union(
  ACTION_TYPES.map((a) => Type.Literal(a)),
  { description: 'What enforcement does to a running container: kill, stop (SIGTERM then SIGKILL), pause, quarantine (disconnect from every network), limit (apply quotas) or alert (record only). A create request that breaks an enforce rule is denied whatever the action.' },
);

export const LimitSpecSchema = Type.Object(
  {
    memory: Type.Optional(
      Type.Union([Type.String({ pattern: '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtTpP]?)([iI]?[bB])?\\s*$' }), Type.Integer({ minimum: 1 })], {
        description: 'Memory limit: bytes or a size like "512m", "1g".',
      }),
    ),
    cpus: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'CPU limit in CPUs, e.g. 0.5.' })),
    pids: Type.Optional(Type.Integer({ minimum: 1, description: 'Pids limit.' })),
  },
  { additionalProperties: false, description: 'Quotas applied through the Docker update API.' },
);

export const ActionSchema = Type.Object(
  {
    type: ActionTypeSchema,
    stopTimeoutSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600, description: '`stop`: seconds between SIGTERM and SIGKILL. Default 10.' })),
    limits: Type.Optional(LimitSpecSchema),
  },
  { additionalProperties: false, description: 'What happens when the rule is enforced and broken.' },
);

const scopeProperties = {
  hostLabels: Type.Optional(Labels('Host labels (agent --host-label) that must all match; value "*" = label present, other values may use * and ? globs.')),
  containerLabels: Type.Optional(Labels('Container labels that must all match; value "*" = label present, other values may use * and ? globs.')),
  images: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), {
      description: 'Image ref globs, one must match ("registry.example.com/*", "*:latest", "nginx*"). Matched against the ref as written and its normalised form (docker.io/library/nginx:latest).',
    }),
  ),
  projects: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Projects (value of spec.projectLabel), one must match; globs allowed.' })),
};

export const ScopeSchema = Type.Object(scopeProperties, {
  additionalProperties: false,
  description: 'Which containers the rule applies to. Every given field must match; an absent field matches all.',
});

export const ExemptionSchema = Type.Object(
  {
    who: Type.String({ minLength: 1, description: 'Who granted the exemption (person or team).' }),
    why: Type.String({ minLength: 1, description: 'Why it is acceptable.' }),
    until: Type.Optional(
      Type.String({ format: 'date-time', description: 'ISO 8601 date-time (e.g. 2025-12-31T23:59:59Z); after it the exemption stops applying by itself. Absent = no expiry.' }),
    ),
    match: Type.Optional(
      Type.Object(
        {
          ...scopeProperties,
          names: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Container name globs, one must match.' })),
        },
        { additionalProperties: false, description: 'Which containers it covers (same matching as scope, plus names); absent = every container in the rule\'s scope.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'A standing exception to a rule: who, why, until when, for which containers.' },
);

const ruleProperties = {
  id: Type.String({ pattern: RULE_ID_PATTERN, maxLength: 128, description: 'Stable rule id, unique within the policy, e.g. "host.privileged".' }),
  description: Type.String({ minLength: 1, description: 'What the rule protects against.' }),
  severity: SeveritySchema,
  mode: ModeSchema,
  action: ActionSchema,
  scope: Type.Optional(ScopeSchema),
  exemptions: Type.Optional(Type.Array(ExemptionSchema, { description: 'Standing exceptions.' })),
};

/** One variant of the discriminated union: `{ type: <const>, …params }`. */
function checkVariant(type: string, summary: string, params: TObject): TObject {
  return Type.Object({ type: Type.Literal(type, { description: summary }), ...params.properties }, { additionalProperties: false, title: type, description: summary });
}

/** check with its params: a union discriminated on `type` (for editors and the published schema). */
export const CheckUnionSchema = Type.Union(
  CHECKS.map((c) => checkVariant(c.type, c.summary, c.params())),
  { description: 'The check: `type` names an entry of the rule catalogue; the other fields are its parameters.' },
);

/** check as the loader sees it first: a known `type` plus anything (params are validated per type). */
export const CheckBaseSchema = Type.Object(
  { type: Type.Union(CHECKS.map((c) => Type.Literal(c.type)), { description: 'A check type of the rule catalogue.' }) },
  { additionalProperties: true },
);

function policySchema(check: TSchema): TObject {
  return Type.Object(
    {
      apiVersion: Type.Literal(POLICY_API_VERSION, { description: `Always "${POLICY_API_VERSION}".` }),
      kind: Type.Literal('Policy', { description: 'Always "Policy".' }),
      metadata: Type.Object(
        {
          name: Type.String({ minLength: 1, description: 'Policy name.' }),
          description: Type.Optional(Type.String({ description: 'Free text.' })),
        },
        { additionalProperties: false },
      ),
      spec: Type.Object(
        {
          projectLabel: Type.Optional(
            Type.String({ minLength: 1, default: DEFAULT_PROJECT_LABEL, description: `The container label that names a container's project. Default "${DEFAULT_PROJECT_LABEL}".` }),
          ),
          rules: Type.Array(Type.Object({ ...ruleProperties, check }, { additionalProperties: false, description: 'One rule.' }), { description: 'The rules.' }),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
}

/** The full document schema with the discriminated union on check.type. */
export const PolicySchema = policySchema(CheckUnionSchema);

/** The loader's first pass: document structure with `check` reduced to its type. */
export const PolicyShapeSchema = policySchema(CheckBaseSchema);

/** The published JSON Schema (draft 2020-12) as a plain object. */
export function policyJsonSchema(): Record<string, unknown> {
  // JSON round trip drops TypeBox's symbol keys and leaves plain JSON Schema.
  const body = JSON.parse(JSON.stringify(PolicySchema)) as Record<string, unknown>;
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: POLICY_SCHEMA_ID,
    title: 'Bulkhead policy',
    description: 'A Bulkhead policy document: rules evaluated against container and host facts. See docs/policy.md.',
    ...body,
  };
}

/** The exact text of schema/policy.schema.json (scripts/gen-schema.mjs writes it; a test compares). */
export function policyJsonSchemaText(): string {
  return `${JSON.stringify(policyJsonSchema(), null, 2)}\n`;
}
