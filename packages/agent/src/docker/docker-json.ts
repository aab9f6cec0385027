// Owns reading Docker's JSON tolerantly, the same way wherever the agent
// reads it: an inspect (docker/container-facts.ts), a request body the authz
// plugin judges (authz/create-request.ts), a volume or network inspect
// (docker/facts-resolver.ts). Docker returns `null` for many empty lists and
// maps, and a request body may carry anything, so every reader here accepts
// `unknown` and falls back to the proto3 default.
import { posix } from 'node:path';
import type { Mount__Output } from '@bulkhead/shared';

export function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** A list of strings from Docker's string | string[] | null. */
export function strings(v: unknown): string[] {
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (!Array.isArray(v)) return [];
  return v.filter((x): x is string => typeof x === 'string');
}

export function int(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : 0;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The string-valued entries of a JSON object (labels, options); {} for anything else. */
export function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(v)) return out;
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A container path as dockerd stores it: normalized, no trailing "/". "" stays "". */
export function cleanPath(p: string): string {
  if (p === '') return '';
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/**
 * Capabilities in dockerd's canonical spelling ("CAP_NET_ADMIN", and "ALL").
 * dockerd ≥ 20.10 stores them that way already; older engines kept what the
 * user typed ("net_admin"), and a policy should not care which engine it is.
 */
export function normalizeCapability(cap: string): string {
  const up = cap.trim().toUpperCase();
  if (up === 'ALL' || up === '') return up;
  return up.startsWith('CAP_') ? up : `CAP_${up}`;
}

export function capabilities(list: unknown): string[] {
  return [...new Set(strings(list).map(normalizeCapability).filter((c) => c !== ''))];
}

/**
 * A device host path as dockerd opens it (DevicesFromPath): relative to its
 * working directory, "/" under systemd; ".." and "//" resolved; no trailing
 * "/". "/dev/net/.." is /dev, and dockerd passes every device under a
 * directory, so an allowlist must see the path this way, not as written.
 */
export function deviceHostPath(p: string): string {
  const n = posix.normalize(p.startsWith('/') ? p : `/${p}`);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Host paths of HostConfig.Devices entries, as dockerd opens them. */
export function devicePaths(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((d: unknown) => (isObject(d) ? str(d['PathOnHost']) : '')).filter((p) => p !== '').map(deviceHostPath);
}

/**
 * A string list whose null means something else than empty (MaskedPaths,
 * ReadonlyPaths: null = dockerd's defaults, [] = none): `{ values }` for a
 * JSON array (non-strings dropped), undefined for null, absent or anything
 * that is not an array.
 */
export function presentList(v: unknown): { values: string[] } | undefined {
  if (!Array.isArray(v)) return undefined;
  return { values: v.filter((x): x is string => typeof x === 'string') };
}

/**
 * dockerd builds Mounts from a Go map, so its order changes between
 * inspects; sorted facts compare equal when nothing changed (and a request
 * and the container it makes list them alike).
 */
export function sortMounts(mounts: Mount__Output[]): Mount__Output[] {
  return mounts.sort((a, b) => cmp(a.destination, b.destination) || cmp(a.type, b.type));
}
