// Owns permission checks on host files: "is this mode at most 0644?" is a
// question about permission BITS (no bit set that 0644 lacks), never a
// comparison of numbers or strings — 600 is more restrictive than 644, 0644
// and 644 are the same mode, and 0711 is NOT "≤ 0744"-safe by digits alone.
import { lstat, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';

export type FileKind = 'file' | 'directory' | 'socket' | 'symlink' | 'other';

export interface FileStatus {
  /** The host path asked about (without hostRoot). */
  path: string;
  kind: FileKind;
  uid: number;
  gid: number;
  /** Permission bits incl. setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
}

/**
 * Stats a host path under hostRoot, following symlinks (as dockerd and the
 * kernel do); undefined when it does not exist.
 */
export async function statHostPath(hostRoot: string, path: string): Promise<FileStatus | undefined> {
  try {
    const s = await stat(join(hostRoot, path));
    return { path, kind: kindOf(s), uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
  } catch {
    return undefined;
  }
}

/** Like statHostPath but does not follow a final symlink. */
export async function lstatHostPath(hostRoot: string, path: string): Promise<FileStatus | undefined> {
  try {
    const s = await lstat(join(hostRoot, path));
    return { path, kind: kindOf(s), uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
  } catch {
    return undefined;
  }
}

/** The real path (symlinks resolved) under hostRoot, or undefined. */
export async function realHostPath(hostRoot: string, path: string): Promise<string | undefined> {
  try {
    return await realpath(join(hostRoot, path));
  } catch {
    return undefined;
  }
}

function kindOf(s: { isFile(): boolean; isDirectory(): boolean; isSocket(): boolean; isSymbolicLink(): boolean }): FileKind {
  if (s.isFile()) return 'file';
  if (s.isDirectory()) return 'directory';
  if (s.isSocket()) return 'socket';
  if (s.isSymbolicLink()) return 'symlink';
  return 'other';
}

/**
 * A mode as permission bits. Numbers are bits already (write 0o644); strings
 * are octal however written: "644", "0644", "0o644" are all the same mode.
 */
export function parseMode(m: number | string): number {
  if (typeof m === 'number') return m & 0o7777;
  const s = m.trim().replace(/^0o/i, '');
  if (!/^[0-7]{1,4}$/.test(s)) throw new TypeError(`not an octal mode: "${m}"`);
  return parseInt(s, 8);
}

/** The bits `mode` has that `allowed` does not (0 when mode is allowed or more restrictive). */
export function excessBits(mode: number, allowed: number | string): number {
  return mode & 0o7777 & ~parseMode(allowed);
}

/** True when `mode` sets no bit outside `allowed`: 0600 and 0640 are at most 0644; 0646 and 0744 are not. */
export function isAtMost(mode: number, allowed: number | string): boolean {
  return excessBits(mode, allowed) === 0;
}

/** "0660". */
export function formatMode(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

const BIT_NAMES: ReadonlyArray<[number, string]> = [
  [0o4000, 'setuid'], [0o2000, 'setgid'], [0o1000, 'sticky'],
  [0o400, 'owner read'], [0o200, 'owner write'], [0o100, 'owner execute'],
  [0o040, 'group read'], [0o020, 'group write'], [0o010, 'group execute'],
  [0o004, 'other read'], [0o002, 'other write'], [0o001, 'other execute'],
];

/** Human names of the bits set in `bits` ("group write", "other read" …). */
export function describeBits(bits: number): string[] {
  return BIT_NAMES.filter(([b]) => (bits & b) !== 0).map(([, n]) => n);
}
