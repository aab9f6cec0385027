// Owns running the periodic host audit in a short-lived child process of the
// agent (node's fork, JSON over the IPC channel). Why not in the agent
// itself: the audit builds its policy and schema validator, inspects every
// container and image and assembles a ~50 KiB report — measured, that left
// the agent's resident memory ~11 MB higher for good (V8 keeps the heap it
// grew), against a 75 MB budget; and however often it yields, it competes
// with enforcement for the agent's one thread. A child costs a Node start
// (~0.3 s of CPU) once an hour, and gives all of it back when it exits.
//
// The child gets its options as the first IPC message, answers with one
// message (the result, or the error) and exits.
import { fork } from 'node:child_process';
import { extname, join } from 'node:path';
import { createDockerClient } from '../docker/client';
import { readImageLastUsed } from '../hygiene/image-last-used';
import type { HostAuditOptions, HostAuditResult } from './host-audit';
import type * as HostAuditModule from './host-audit';

/**
 * What the parent sends: everything but the Docker client (made in the
 * child) and callbacks. The agent's image last-use memory comes as the path
 * of its file (`hygiene.lastUsedPath`), read here.
 */
export interface HostAuditChildRequest {
  dockerHost: string;
  options: Omit<HostAuditOptions, 'docker' | 'containers' | 'now' | 'hygiene'> & { hygiene?: { unusedDays?: number; lastUsedPath?: string } | false };
}

export type HostAuditChildResponse = { ok: true; result: HostAuditResult } | { ok: false; error: string };

/** The child's entry file, next to this one (.js when built, .ts under the test runner). */
export const HOST_AUDIT_CHILD = join(__dirname, `host-audit-child${extname(__filename)}`);

export interface ChildRun {
  result: Promise<HostAuditResult>;
  /** Ends the child now (agent shutdown); `result` then rejects. */
  kill(): void;
}

/** Runs one audit in a child process. Rejects when it fails, exits without answering, or takes longer than `timeoutMs`. */
export function runHostAuditInChild(req: HostAuditChildRequest, o: { timeoutMs?: number; entry?: string } = {}): ChildRun {
  const child = fork(o.entry ?? HOST_AUDIT_CHILD, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const result = new Promise<HostAuditResult>((resolve, reject) => {
    let settled = false;
    const done = (err: Error | undefined, r?: HostAuditResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(new Error(`host audit took longer than ${Math.round((o.timeoutMs ?? 600_000) / 1000)}s; stopped`)), o.timeoutMs ?? 600_000);
    timer.unref();
    child.once('message', (m: HostAuditChildResponse) => (m.ok ? done(undefined, m.result) : done(new Error(m.error))));
    child.once('error', (e) => done(e));
    child.once('exit', (code, signal) => {
      const why = signal ? `signal ${signal}` : `code ${String(code)}`;
      done(new Error(`host audit process exited with ${why} before it answered${stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`));
    });
    child.send(req);
  });
  return { result, kill: () => void child.kill('SIGTERM') };
}

/**
 * The audit's options in the child: the agent's image last-use memory read
 * from its file. When it cannot be read, `memoryError` says why and the
 * prune policy is left out: without the memory an image used by a
 * since-removed container looks unused.
 */
export function childAuditOptions(req: HostAuditChildRequest): { options: Omit<HostAuditOptions, 'docker'>; memoryError?: string } {
  const { hygiene: h, ...rest } = req.options;
  if (!h || !h.lastUsedPath) return { options: { ...rest, ...(h === undefined ? {} : { hygiene: h === false ? false : { unusedDays: h.unusedDays } }) } };
  try {
    return { options: { ...rest, hygiene: { unusedDays: h.unusedDays, lastUsed: readImageLastUsed(h.lastUsedPath) } } };
  } catch (e) {
    const { prune: _skipped, ...withoutPrune } = rest;
    return { options: { ...withoutPrune, hygiene: { unusedDays: h.unusedDays } }, memoryError: (e as Error).message };
  }
}

/** The child side: one request, one answer, exit. */
export async function serveHostAuditChild(req: HostAuditChildRequest): Promise<HostAuditChildResponse> {
  try {
    const docker = createDockerClient({ dockerHost: req.dockerHost, timeoutMs: 60_000 });
    const { options, memoryError } = childAuditOptions(req);
    // Required here, in the child: the agent process that forks it never
    // loads the audit code (~220 KB of source: CIS sections, lockdown, hygiene).
    const { runHostAudit } = require('./host-audit') as typeof HostAuditModule;
    const result = await runHostAudit({ ...options, docker });
    if (memoryError !== undefined && req.options.prune) {
      result.prune = { error: `not run: ${memoryError}` };
      result.message.pruneJson = JSON.stringify(result.prune);
    }
    return { ok: true, result };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

if (require.main === module && process.send) {
  process.once('message', (req: HostAuditChildRequest) => {
    void serveHostAuditChild(req).then((res) => process.send!(res, () => process.exit(0)));
  });
}
