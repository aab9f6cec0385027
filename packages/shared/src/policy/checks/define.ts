// Helpers shared by the check groups: a typed constructor for catalogue entries,
// lazily built parameter schemas and small readers over container facts.
import type { JavaScriptTypeBuilder, Static, TObject, TSchema } from '@sinclair/typebox';
import type { CheckDefinition, Evidence } from '../types';

/** TypeBox's `Type`: what a schema builder receives. */
export type TypeBuilder = JavaScriptTypeBuilder;

// TypeBox is required on the first schema build, not when the catalogue loads:
// the agent evaluates checks but never validates parameters (the controller
// did), and TypeBox with the schemas costs it about 2.5 MB RSS at load
// (measured: agent.js 30.0 → 27.5 MB; TypeBox alone is 12.5 MB in a bare node).
// Only type imports of '@sinclair/typebox' may appear in modules the agent loads.
let builder: TypeBuilder | undefined;
function typeBuilder(): TypeBuilder {
  builder ??= (require('@sinclair/typebox') as { Type: TypeBuilder }).Type;
  return builder;
}

/**
 * A schema built by `build` on the first call and the same object on every
 * later one. `build` receives TypeBox's `Type`, so schema code reads as usual.
 */
export function lazySchema<S extends TSchema>(build: (T: TypeBuilder) => S): () => S {
  let schema: S | undefined;
  return () => {
    schema ??= build(typeBuilder());
    return schema;
  };
}

/** A catalogue entry whose params are a TypeBox object schema, built on first call of `params()`. */
export interface CatalogueEntry<S extends TObject = TObject> extends CheckDefinition<Static<S>> {
  params: () => S;
  group: 'images' | 'host' | 'isolation';
  remedy: string;
}

export function defineCheck<S extends TObject>(def: CatalogueEntry<S>): CatalogueEntry<S> {
  return def;
}

export const NO_EVIDENCE: Evidence[] = [];

/** Upper-case capability name without the CAP_ prefix ("cap_sys_admin" → "SYS_ADMIN"). */
export function normalizeCap(c: string): string {
  const u = c.trim().toUpperCase();
  return u.startsWith('CAP_') ? u.slice(4) : u;
}

/** Splits a security option "key=value" / "key:value" / "key". */
export function splitSecurityOpt(opt: string): [string, string | undefined] {
  const i = opt.search(/[=:]/);
  return i < 0 ? [opt.trim().toLowerCase(), undefined] : [opt.slice(0, i).trim().toLowerCase(), opt.slice(i + 1).trim()];
}
