// Helpers shared by the check groups: a typed constructor for catalogue entries
// and small readers over container facts.
import type { Static, TObject } from '@sinclair/typebox';
import type { CheckDefinition, Evidence } from '../types';

/** A catalogue entry whose params are a TypeBox object schema. */
export interface CatalogueEntry<S extends TObject = TObject> extends CheckDefinition<Static<S>> {
  params: S;
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
