// The published policy JSON Schema, loaded on demand: schema.ts builds every
// TypeBox schema when it loads, and most importers of @bulkhead/shared (the
// agent above all) never need the schema.
import type * as SchemaModule from './schema';

function schemaModule(): typeof SchemaModule {
  return require('./schema') as typeof SchemaModule;
}

/** The published JSON Schema (draft 2020-12) as a plain object. */
export function policyJsonSchema(): Record<string, unknown> {
  return schemaModule().policyJsonSchema();
}

/** The exact text of schema/policy.schema.json. */
export function policyJsonSchemaText(): string {
  return schemaModule().policyJsonSchemaText();
}
