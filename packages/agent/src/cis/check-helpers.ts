// Small building blocks the CIS section files share: per-container verdicts,
// evaluator-backed verdicts, file ownership/permission verdicts (by BITS),
// auditd rule coverage and systemd unit lookup.
import { access } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { containerName } from './audit-policy';
import type { AuditedContainer } from './container-inventory';
import type { CisContext, CisOutcome } from './cis-types';
import { describeBits, excessBits, formatMode, realHostPath, statHostPath } from '../lockdown/file-mode';

export const NO_CONTAINERS: CisOutcome = { result: 'INFO', details: 'No containers running' };

/** "<what>: a b c" — docker-bench's details for a list. */
export function listDetails(what: string, items: readonly string[]): string {
  return `${what}: ${items.join(' ')}`;
}

/** WARN listing the running containers for which `bad` returns a label (or true), else PASS; INFO without containers. */
export function perContainer(ctx: CisContext, what: string, bad: (c: AuditedContainer) => string | boolean | undefined, warn: 'WARN' | 'INFO' = 'WARN'): CisOutcome {
  if (ctx.running.length === 0) return NO_CONTAINERS;
  const items: string[] = [];
  for (const c of ctx.running) {
    const r = bad(c);
    if (r === true) items.push(containerName(c.facts));
    else if (typeof r === 'string' && r !== '') items.push(r);
  }
  return items.length === 0 ? { result: 'PASS' } : { result: warn, details: listDetails(what, items), items };
}

/** Verdict from the evaluator's findings for an audit rule id (see cis-policy.ts). */
export function fromPolicy(ctx: CisContext, ruleIds: string | readonly string[], what: string, opts: { warn?: 'WARN' | 'INFO'; ignore?: (c: AuditedContainer) => boolean } = {}): CisOutcome {
  const ids = typeof ruleIds === 'string' ? [ruleIds] : ruleIds;
  const bad = new Set<string>();
  for (const id of ids) for (const h of ctx.policy.get(id) ?? []) bad.add(h.container.id);
  return perContainer(ctx, what, (c) => bad.has(c.facts.id) && !(opts.ignore?.(c) ?? false), opts.warn ?? 'WARN');
}

/** Evidence details the evaluator gave for one container under a rule (for the human report). */
export function policyEvidence(ctx: CisContext, ruleId: string, containerId: string): string[] {
  return (ctx.policy.get(ruleId) ?? []).filter((h) => h.container.id === containerId).flatMap((h) => h.evidence.map((e) => e.detail));
}

export interface OwnershipSpec {
  /** Allowed owner uids (root: [0]). */
  uids: readonly number[];
  /** Allowed group gids. */
  gids: readonly number[];
  /** "root:root", for messages. */
  expected: string;
}

/** PASS when every path exists and is owned as allowed; INFO `notFound` when none exists. */
export async function ownershipOutcome(ctx: CisContext, paths: readonly string[], spec: OwnershipSpec, notFound: string): Promise<CisOutcome> {
  const stats = (await Promise.all(paths.map((p) => statHostPath(ctx.hostRoot, p)))).filter((s) => s !== undefined);
  if (stats.length === 0) return { result: 'INFO', details: notFound };
  const bad = stats.filter((s) => !spec.uids.includes(s.uid) || !spec.gids.includes(s.gid));
  if (bad.length === 0) return { result: 'PASS' };
  const items = bad.map((s) => `${s.path}(${ctx.accounts.userName(s.uid)}:${ctx.accounts.groupName(s.gid)})`);
  return { result: 'WARN', details: listDetails(`Wrong ownership, expected ${spec.expected}`, items), items };
}

/**
 * PASS when every path's mode sets no permission bit beyond `max` (so 0600
 * passes "644 or more restrictive"; 0646 does not): the BITS are compared,
 * never the digits as numbers or strings (docker-bench's false results).
 */
export async function permissionOutcome(ctx: CisContext, paths: readonly string[], max: number, notFound: string): Promise<CisOutcome> {
  const stats = (await Promise.all(paths.map((p) => statHostPath(ctx.hostRoot, p)))).filter((s) => s !== undefined);
  if (stats.length === 0) return { result: 'INFO', details: notFound };
  const bad = stats.filter((s) => excessBits(s.mode, max) !== 0);
  if (bad.length === 0) return { result: 'PASS' };
  const items = bad.map((s) => `${s.path}(${formatMode(s.mode)}: ${describeBits(excessBits(s.mode, max)).join('+')})`);
  return { result: 'WARN', details: listDetails(`Permissions wider than ${formatMode(max)}`, items), items };
}

/** The first existing systemd unit file for `unit` (host path), as systemd would pick it. */
export async function findUnitFile(hostRoot: string, unit: string): Promise<string | undefined> {
  for (const dir of ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system']) {
    const p = posix.join(dir, unit);
    if (await exists(join(hostRoot, p))) return p;
  }
  return undefined;
}

/** The first existing of a binary's usual locations (host path): Debian puts dockerd and runc in /usr/sbin. */
export async function findBinary(hostRoot: string, name: string): Promise<string | undefined> {
  for (const dir of ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin', '/bin', '/sbin']) {
    const p = posix.join(dir, name);
    if (await exists(join(hostRoot, p))) return p;
  }
  return undefined;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** Parses rule text (audit.rules syntax) into the paths it watches: `-w PATH`, `-F path=PATH`, `-F dir=PATH` (dir: recursive). */
export function watchedPaths(lines: readonly string[]): Array<{ path: string; recursive: boolean }> {
  const out: Array<{ path: string; recursive: boolean }> = [];
  for (const line of lines) {
    const words = line.trim().split(/\s+/);
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      if (w === '-w' && words[i + 1]) out.push({ path: norm(words[i + 1]!), recursive: true });
      const m = /^(path|dir)=(.+)$/.exec(w);
      if (m && words[i - 1] === '-F') out.push({ path: norm(m[2]!), recursive: m[1] === 'dir' });
    }
  }
  return out;
}

function norm(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/**
 * True when auditd rules watch `path`: exactly, or through a watched
 * directory above it (directory watches are recursive). Tokens are compared,
 * not substrings: a rule for /usr/bin/docker does not cover /usr/bin/dockerd.
 */
export async function isAudited(ctx: CisContext, path: string): Promise<boolean> {
  const watched = watchedPaths(ctx.auditRules);
  const candidates = new Set([norm(path)]);
  const real = await realHostPath(ctx.hostRoot, path);
  if (real !== undefined) {
    const rel = posix.relative(ctx.hostRoot === '/' ? '/' : ctx.hostRoot, real);
    if (!rel.startsWith('..')) candidates.add(norm(`/${rel}`));
  }
  for (const p of candidates) {
    for (const w of watched) {
      if (w.path === p) return true;
      if (w.recursive && (w.path === '/' || p.startsWith(`${w.path}/`))) return true;
    }
  }
  return false;
}
