// Owns what a command module needs from the CLI's main: output, the clock,
// an API client for the invoked command, and how to signal a usage error
// (exit 2). Passed in rather than imported, so commands/ never imports main.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ApiClient } from '../client';

export interface CommandContext {
  out: (s: string) => void;
  err: (s: string) => void;
  now: () => Date;
  /** The client and the global --json flag for `cmd` (flags and environment resolved). */
  client: (cmd: Command) => { api: ApiClient; json: boolean };
  /** An error main reports as a usage error (exit 2). */
  usageError: (message: string) => Error;
}

/** Reads a file given on the command line; a missing or unreadable file is a usage error. */
export function readInputFile(ctx: CommandContext, path: string, what: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (e) {
    throw ctx.usageError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function toJson(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}
