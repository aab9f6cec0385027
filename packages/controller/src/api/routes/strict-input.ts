// Owns the checks the JSON schema cannot make because the API's ajv coerces
// before it validates (coerceTypes 'array', needed to read query strings):
// "limit=0x10" becomes 16 (JavaScript's Number() reads hex, exponents and
// padding), and a body field given as a one-element list — "role": ["admin"]
// — becomes its element. Both are read here from the raw request, before
// validation, against the types the route's schema declares, so a client
// learns it sent the wrong thing instead of having it quietly reinterpreted.
import type { FastifyRequest } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { BulkheadError } from '@bulkhead/shared';

type Schema = TSchema & {
  type?: string | string[];
  anyOf?: Schema[];
  const?: unknown;
  items?: Schema;
  properties?: Record<string, Schema>;
  minimum?: number;
  maximum?: number;
};

/** The JSON types a schema admits, or undefined when it does not say. */
function typesOf(s: Schema): Set<string> | undefined {
  if (s.type !== undefined) return new Set(Array.isArray(s.type) ? s.type : [s.type]);
  if (s.anyOf) {
    const out = new Set<string>();
    for (const m of s.anyOf) {
      const t = typesOf(m);
      if (!t) return undefined;
      for (const x of t) out.add(x);
    }
    return out;
  }
  if (s.const !== undefined) return new Set([typeof s.const === 'number' ? 'number' : typeof s.const]);
  return undefined;
}

function describe(s: Schema, types: Set<string>): string {
  const consts = s.anyOf?.map((m) => m.const).filter((c) => c !== undefined);
  if (consts && consts.length > 0 && consts.length === s.anyOf!.length) return `one of ${consts.map(String).join(', ')}`;
  const kind = [...types].filter((t) => t !== 'null').map((t) => (t === 'integer' ? 'an integer' : t === 'array' ? 'a list' : t === 'object' ? 'an object' : `a ${t}`)).join(' or ');
  const range = s.minimum !== undefined && s.maximum !== undefined ? ` from ${s.minimum} to ${s.maximum}` : s.minimum !== undefined ? ` of at least ${s.minimum}` : s.maximum !== undefined ? ` of at most ${s.maximum}` : '';
  return kind + range;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

const DECIMAL_INTEGER = /^-?\d{1,15}$/;
const DECIMAL_NUMBER = /^-?\d{1,15}(\.\d{1,15})?$/;

/** Query parameters declared integer or number must be written in plain decimal. */
function checkQuery(schema: Schema, query: unknown): void {
  if (typeof query !== 'object' || query === null) return;
  for (const [name, prop] of Object.entries(schema.properties ?? {})) {
    const raw = (query as Record<string, unknown>)[name];
    if (raw === undefined) continue;
    const item = typesOf(prop)?.has('array') && prop.items ? prop.items : prop;
    const types = typesOf(item);
    if (!types || types.has('string') || !(types.has('integer') || types.has('number'))) continue;
    const re = types.has('number') ? DECIMAL_NUMBER : DECIMAL_INTEGER;
    for (const v of Array.isArray(raw) ? raw : [raw]) {
      if (typeof v !== 'string' || !re.test(v)) {
        throw new BulkheadError('BK_ERR_BAD_REQUEST', `querystring/${name} must be ${describe(item, types)} written in decimal digits, got ${JSON.stringify(v)}`);
      }
    }
  }
}

/** Body fields must already have a type their schema admits: no list-to-scalar or number-to-string coercion. */
function checkBody(schema: Schema, body: unknown): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
  for (const [name, prop] of Object.entries(schema.properties ?? {})) {
    const raw = (body as Record<string, unknown>)[name];
    if (raw === undefined) continue;
    const types = typesOf(prop);
    if (!types) continue;
    const got = jsonType(raw);
    const ok = types.has(got) || (got === 'integer' && types.has('number'));
    if (!ok) {
      throw new BulkheadError('BK_ERR_BAD_REQUEST', `body/${name} must be ${describe(prop, types)}, not ${got === 'array' ? 'a list' : got === 'object' ? 'an object' : got === 'integer' ? 'a number' : `a ${got}`}`);
    }
  }
}

/** A preValidation hook holding the raw querystring and body to the types in `schemas`. */
export function strictInput(schemas: { querystring?: TSchema; body?: TSchema }): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    if (schemas.querystring) checkQuery(schemas.querystring as Schema, req.query);
    if (schemas.body) checkBody(schemas.body as Schema, req.body);
  };
}
