// Owns carrying out one enforcement action on one container through the
// Docker API, and deciding whether an action still has anything to do
// (a quarantined container has no networks left; applied limits are
// already in place) — which is what keeps non-terminal actions from
// repeating on every event.
import { parseMemorySize, type LimitSpec } from '@bulkhead/shared';
import type { Facts } from '../docker/container-facts';
import type { EnforcerDocker } from './enforcer-options';

/** The body of a `docker update` that applies a limit action. */
export interface LimitUpdate {
  Memory?: number;
  MemorySwap?: number;
  NanoCpus?: number;
  CpuQuota?: number;
  CpuPeriod?: number;
  PidsLimit?: number;
}

export type EngineAction =
  | { type: 'kill' }
  | { type: 'stop'; timeoutSeconds: number }
  | { type: 'pause' }
  | { type: 'quarantine'; networks: Array<{ name: string; networkId: string }> }
  | { type: 'limit'; update: LimitUpdate };

export interface ActionOutcome {
  result: 'ok' | 'failed' | 'skipped';
  error?: string;
  detail?: string;
}

/** Network modes a container cannot be disconnected from. */
export function quarantinePlan(facts: Facts): { kind: 'disconnect'; networks: Array<{ name: string; networkId: string }> } | { kind: 'nothing' } | { kind: 'impossible'; why: string } {
  const mode = facts.networkMode;
  if (mode === 'host') return { kind: 'impossible', why: 'a host-network container cannot be disconnected from the host network' };
  if (mode.startsWith('container:')) return { kind: 'impossible', why: `the container shares the network stack of ${mode.slice('container:'.length)}` };
  const networks = facts.networks.filter((n) => n.name !== 'none' && n.name !== 'host').map((n) => ({ name: n.name, networkId: n.networkId }));
  return networks.length === 0 ? { kind: 'nothing' } : { kind: 'disconnect', networks };
}

/**
 * The update that brings a container within `spec` — only the quotas that
 * are missing (unlimited) or looser than the spec; undefined when all are
 * already within it. MemorySwap is set equal to Memory (no swap beyond the
 * quota), which dockerd also requires when a lower memory limit would fall
 * below an existing swap limit.
 */
export function limitPlan(facts: Facts, spec: LimitSpec | undefined): LimitUpdate | undefined {
  if (!spec) return undefined;
  const u: LimitUpdate = {};
  if (spec.memory !== undefined) {
    const bytes = parseMemorySize(spec.memory);
    if (bytes !== undefined && bytes > 0 && (facts.memoryLimitBytes <= 0 || facts.memoryLimitBytes > bytes)) {
      u.Memory = bytes;
      u.MemorySwap = bytes;
    }
  }
  if (spec.cpus !== undefined && spec.cpus > 0) {
    const current = facts.nanoCpus > 0 ? facts.nanoCpus / 1e9 : facts.cpuQuota > 0 ? facts.cpuQuota / (facts.cpuPeriod || 100_000) : 0;
    if (current <= 0 || current > spec.cpus + 1e-9) {
      // dockerd refuses NanoCpus on a container that has a CPU period/quota.
      if (facts.cpuQuota > 0 || facts.cpuPeriod > 0) {
        const period = facts.cpuPeriod || 100_000;
        u.CpuPeriod = period;
        u.CpuQuota = Math.max(1000, Math.round(spec.cpus * period));
      } else {
        u.NanoCpus = Math.round(spec.cpus * 1e9);
      }
    }
  }
  if (spec.pids !== undefined && spec.pids > 0) {
    if (facts.pidsLimit <= 0 || facts.pidsLimit > spec.pids) u.PidsLimit = Math.trunc(spec.pids);
  }
  return Object.keys(u).length === 0 ? undefined : u;
}

/** Performs one action. Never throws: failures come back as `failed` with the engine's message. */
export async function performAction(docker: Pick<EnforcerDocker, 'getContainer' | 'getNetwork'>, containerId: string, a: EngineAction): Promise<ActionOutcome> {
  try {
    const c = docker.getContainer(containerId);
    switch (a.type) {
      case 'kill':
        await c.kill();
        return { result: 'ok' };
      case 'stop':
        await c.stop({ t: a.timeoutSeconds });
        return { result: 'ok', detail: `stop timeout ${a.timeoutSeconds}s` };
      case 'pause':
        await c.pause();
        return { result: 'ok' };
      case 'limit':
        await c.update(a.update);
        return { result: 'ok', detail: `update ${JSON.stringify(a.update)}` };
      case 'quarantine': {
        const results = await Promise.allSettled(
          a.networks.map((n) => docker.getNetwork(n.networkId || n.name).disconnect({ Container: containerId, Force: true })),
        );
        const failed = results
          .map((r, i) => (r.status === 'rejected' ? `${a.networks[i]!.name}: ${errorMessage(r.reason)}` : undefined))
          .filter((x): x is string => x !== undefined);
        const detail = `disconnected from ${a.networks.length - failed.length}/${a.networks.length} network(s): ${a.networks.map((n) => n.name).join(', ')}`;
        return failed.length === 0 ? { result: 'ok', detail } : { result: 'failed', error: failed.join('; '), detail };
      }
    }
  } catch (err) {
    const code = (err as { statusCode?: number } | null)?.statusCode;
    // Gone, or already in the state we wanted: nothing left to do.
    if (code === 404) return { result: 'skipped', error: errorMessage(err), detail: 'container no longer exists' };
    if (code === 304) return { result: 'skipped', error: errorMessage(err), detail: 'already stopped' };
    if (code === 409 && /not running|is paused|already paused/i.test(errorMessage(err))) {
      return { result: 'skipped', error: errorMessage(err), detail: 'container not running' };
    }
    return { result: 'failed', error: errorMessage(err) };
  }
}

function errorMessage(err: unknown): string {
  const e = err as { json?: { message?: unknown }; message?: unknown; reason?: unknown } | null;
  if (typeof e?.json?.message === 'string') return e.json.message;
  if (typeof e?.message === 'string') return e.message.replace(/^\(HTTP code \d+\)\s*[^-]*-\s*/, '').trim();
  return String(err);
}
