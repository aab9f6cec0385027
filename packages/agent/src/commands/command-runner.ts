// Owns carrying out the manual commands the controller sends on an
// operator's behalf — pause, unpause, kill, stop, quarantine, release — on
// the local engine, and answering with a CommandResult that carries the
// container's state afterwards (a fresh inspect, so the operator sees what
// the engine says, not what we hoped).
//
// Engine calls are the enforcer's (enforce/actions.ts performAction and
// quarantinePlan): a manual kill is the same Docker call as a policy kill.
// What differs is the bookkeeping: a manual quarantine remembers the
// networks it disconnected (quarantine-memory.ts) so `release` can put them
// back. Commands for one container run one at a time, in arrival order.
//
// Holds (enforce/holds.ts): a pause or quarantine made here is held like a
// policy one — the authorization plugin refuses a plain `docker unpause` /
// `network connect` undoing it — and `unpause` / `release` end the hold
// (policy or manual) BEFORE their own engine call. So the agent's own
// unpause and reconnects pass the door without any mark on the request that
// a user could copy: nothing identifies them, the hold is simply gone.
//
// Errors come back as "BK_ERR_X: message": NOT_FOUND (no such container),
// CONFLICT (the container's state does not allow it, e.g. kill while
// paused, release of a container we never quarantined), BAD_REQUEST
// (unknown action), ACTION_FAILED (the engine refused or failed).
import type Dockerode from 'dockerode';
import { BulkheadError, isBulkheadError, type Command__Output, type CommandResult, type Logger } from '@bulkhead/shared';
import { toContainerFacts } from '../docker/container-facts';
import { performAction, quarantinePlan, type ActionOutcome } from '../enforce/actions';
import type { QuarantineMemory, RememberedNetwork } from './quarantine-memory';
import { MANUAL_HOLD_RULE, type EnforcementHolds } from '../enforce/holds';

export const COMMAND_ACTIONS = ['pause', 'unpause', 'kill', 'stop', 'quarantine', 'release'] as const;
export type CommandAction = (typeof COMMAND_ACTIONS)[number];

/** What the runner needs of dockerode (a Dockerode instance satisfies it). */
export interface CommandDocker {
  getContainer(id: string): {
    kill(opts?: object): Promise<unknown>;
    stop(opts?: object): Promise<unknown>;
    pause(opts?: object): Promise<unknown>;
    unpause(opts?: object): Promise<unknown>;
    update(opts: object): Promise<unknown>;
    inspect(): Promise<Dockerode.ContainerInspectInfo>;
  };
  getNetwork(id: string): { connect(opts: object): Promise<unknown>; disconnect(opts: object): Promise<unknown> };
}

export interface CommandRunnerOptions {
  docker: CommandDocker;
  memory: QuarantineMemory;
  /** Pauses and quarantines the authorization plugin keeps users from undoing (absent: none kept). */
  holds?: EnforcementHolds;
  logger: Logger;
  /** Called once per command (metrics). */
  onResult?: (action: string, ok: boolean, durationMs: number) => void;
}

interface Done {
  detail: string;
}

export class CommandRunner {
  /** Per container: the tail of its command queue. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly o: CommandRunnerOptions) {}

  /** Runs one command; never throws — failures are in the result. */
  run(cmd: Command__Output): Promise<CommandResult> {
    const key = cmd.containerId;
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(() => this.runNow(cmd));
    const tail = next.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return next;
  }

  private async runNow(cmd: Command__Output): Promise<CommandResult> {
    const started = performance.now();
    const log = this.o.logger.child({ commandId: cmd.id, action: cmd.action, containerId: cmd.containerId, requestedBy: cmd.requestedBy });
    let ok = true;
    let error = '';
    let detail = '';
    // The controller resolves names and prefixes; a full id is all we act on (never a name that could mean another container).
    const validId = /^[0-9a-f]{64}$/.test(cmd.containerId);
    try {
      if (!validId) throw new BulkheadError('BK_ERR_BAD_REQUEST', `"${cmd.containerId.slice(0, 80)}" is not a full container id`);
      detail = (await this.execute(cmd)).detail;
    } catch (err) {
      ok = false;
      const e = isBulkheadError(err) ? err : new BulkheadError('BK_ERR_ACTION_FAILED', errorMessage(err), { cause: err });
      error = e.toString();
    }
    const state = validId ? await this.stateOf(cmd.containerId) : '';
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    (ok ? log.info.bind(log) : log.warn.bind(log))({ ok, error: error || undefined, detail, state, durationMs }, 'manual command');
    this.o.onResult?.(cmd.action, ok, durationMs);
    return { id: cmd.id, ok, error, detail, durationMs, state };
  }

  private async execute(cmd: Command__Output): Promise<Done> {
    const id = cmd.containerId;
    const action = cmd.action as CommandAction;
    switch (action) {
      case 'pause': {
        const done = await this.engine(id, action, performAction(this.o.docker, id, { type: 'pause' }), (s) => s === 'paused');
        this.hold(cmd, 'pause');
        return done;
      }
      case 'kill':
        return this.engine(id, action, performAction(this.o.docker, id, { type: 'kill' }), (s) => s !== 'running' && s !== 'paused' && s !== 'restarting');
      case 'stop': {
        // dockerd resumes a paused container to stop it: the operator takes over from Bulkhead's hold (the door would refuse it otherwise).
        this.o.holds?.release(id, 'pause');
        const t = cmd.stopTimeoutSeconds;
        return this.engine(id, action, performAction(this.o.docker, id, { type: 'stop', timeoutSeconds: t }), (s) => s !== 'running' && s !== 'paused' && s !== 'restarting');
      }
      case 'unpause':
        return this.unpause(id);
      case 'quarantine':
        return this.quarantine(cmd);
      case 'release':
        return this.release(id);
      default:
        throw new BulkheadError('BK_ERR_BAD_REQUEST', `unknown action "${String(cmd.action).slice(0, 40)}" (expected ${COMMAND_ACTIONS.join(', ')})`);
    }
  }

  /**
   * Maps performAction's outcome when it was not a plain ok. The engine's
   * status codes for "nothing to do" and "not in this state" vary by
   * version (dockerd 20.10 answers 500 where newer ones answer 409), so the
   * state afterwards decides: already where the action leads → nothing to
   * do; the engine refused on account of the state → CONFLICT; else failed.
   */
  private async engine(id: string, action: string, p: Promise<ActionOutcome>, reached: (state: string) => boolean): Promise<Done> {
    const out = await p;
    if (out.result === 'ok') return { detail: out.detail ?? `${action} done` };
    if (out.detail === 'container no longer exists') throw notFound(id);
    return this.settle(id, action, out.error ?? out.detail ?? 'refused by the engine', reached, out.result === 'skipped');
  }

  private async unpause(id: string): Promise<Done> {
    // The hold ends first: the unpause below is then an ordinary request at the door.
    const held = this.o.holds?.release(id, 'pause') ?? false;
    try {
      await this.o.docker.getContainer(id).unpause();
      return { detail: held ? 'unpause done; Bulkhead\'s hold on the container released' : 'unpause done' };
    } catch (err) {
      if (statusOf(err) === 404) throw notFound(id);
      const done = await this.settle(id, 'unpause', errorMessage(err), (s) => s !== 'paused', statusOf(err) === 409);
      return held ? { detail: `${done.detail}; Bulkhead's hold on the container released (it may be started again)` } : done;
    }
  }

  private async settle(id: string, action: string, why: string, reached: (state: string) => boolean, refused: boolean): Promise<Done> {
    const state = await this.stateOf(id);
    if (state === 'removed') throw notFound(id);
    if (state !== '' && reached(state)) {
      return { detail: action === 'unpause' ? `nothing to do: the container is ${state}, not paused` : `nothing to do: the container is already ${state}` };
    }
    if (refused || STATE_REFUSAL.test(why)) throw new BulkheadError('BK_ERR_CONFLICT', `cannot ${action} the container while it is ${state || 'in this state'}: ${why}`);
    throw new BulkheadError('BK_ERR_ACTION_FAILED', why);
  }

  private async quarantine(cmd: Command__Output): Promise<Done> {
    const id = cmd.containerId;
    const inspect = await this.inspect(id);
    const plan = quarantinePlan(toContainerFacts(inspect));
    const known = this.o.memory.get(id);
    if (plan.kind === 'impossible') throw new BulkheadError('BK_ERR_CONFLICT', `cannot quarantine: ${plan.why}`);
    if (plan.kind === 'nothing') {
      return { detail: known ? `already quarantined; ${known.networks.length} network(s) remembered for release: ${names(known.networks)}` : 'nothing to do: the container is attached to no network' };
    }
    const raw = inspect.NetworkSettings?.Networks ?? {};
    const shortId = id.slice(0, 12);
    const networks: RememberedNetwork[] = plan.networks.map((n) => {
      const ep = raw[n.name] as (Dockerode.NetworkInfo & { IPAMConfig?: RememberedNetwork['ipamConfig'] }) | undefined;
      const ipam = ep?.IPAMConfig;
      return {
        name: n.name,
        networkId: n.networkId,
        aliases: ((ep?.Aliases ?? []) as string[]).filter((a) => typeof a === 'string' && a !== shortId && a !== id),
        ipamConfig: ipam && (ipam.IPv4Address || ipam.IPv6Address || (ipam.LinkLocalIPs?.length ?? 0) > 0) ? ipam : null,
      };
    });
    // Remember first (see quarantine-memory.ts), then disconnect.
    this.o.memory.remember({ containerId: id, containerName: inspect.Name ?? '', networks, quarantinedAt: new Date().toISOString(), requestedBy: cmd.requestedBy });
    this.hold(cmd, 'quarantine', (inspect.Name ?? '').replace(/^\//, ''));
    const out = await performAction(this.o.docker, id, { type: 'quarantine', networks: plan.networks });
    if (out.result === 'ok') return { detail: out.detail ?? `disconnected from ${names(networks)}` };
    throw new BulkheadError('BK_ERR_ACTION_FAILED', `${out.error ?? 'disconnect failed'}${out.detail ? ` (${out.detail})` : ''}`);
  }

  private async release(id: string): Promise<Done> {
    // The hold ends first: the reconnects below are then ordinary requests at the door.
    const held = this.o.holds?.release(id, 'quarantine') ?? false;
    const rec = this.o.memory.get(id);
    let inspect: Dockerode.ContainerInspectInfo;
    try {
      inspect = await this.inspect(id);
    } catch (err) {
      if (isBulkheadError(err) && err.code === 'BK_ERR_NOT_FOUND') this.o.memory.forget(id);
      throw err;
    }
    if (!rec || rec.networks.length === 0) {
      if (held) return { detail: 'Bulkhead\'s hold on the container released; no network was recorded to reconnect' };
      throw new BulkheadError('BK_ERR_CONFLICT', 'this agent has no record of quarantining the container, so there is nothing to reconnect');
    }
    const attached = new Set(Object.keys(inspect.NetworkSettings?.Networks ?? {}));
    const done: string[] = [];
    const failed: Array<{ n: RememberedNetwork; why: string }> = [];
    for (const n of rec.networks) {
      if (attached.has(n.name)) {
        done.push(n.name);
        continue;
      }
      try {
        await this.connect(id, n);
        done.push(n.name);
      } catch (err) {
        failed.push({ n, why: errorMessage(err) });
      }
    }
    // What could not be reconnected stays remembered for the next release.
    this.o.memory.retain(id, failed.map((f) => f.n));
    const detail = `reconnected to ${done.length}/${rec.networks.length} network(s)${done.length > 0 ? `: ${done.join(', ')}` : ''}`;
    if (failed.length === 0) return { detail };
    throw new BulkheadError('BK_ERR_ACTION_FAILED', `${failed.map((f) => `${f.n.name}: ${f.why}`).join('; ')} (${detail})`);
  }

  /** Connects by network id; a network re-created under the same name since is found by name. */
  private async connect(id: string, n: RememberedNetwork): Promise<void> {
    const body = {
      Container: id,
      EndpointConfig: { ...(n.aliases.length > 0 ? { Aliases: n.aliases } : {}), ...(n.ipamConfig ? { IPAMConfig: n.ipamConfig } : {}) },
    };
    try {
      await this.o.docker.getNetwork(n.networkId || n.name).connect(body);
    } catch (err) {
      if (statusOf(err) === 404 && n.networkId && n.name) await this.o.docker.getNetwork(n.name).connect(body);
      else throw err;
    }
  }

  private hold(cmd: Command__Output, kind: 'pause' | 'quarantine', name = ''): void {
    this.o.holds?.add(cmd.containerId, name, kind, { rules: [MANUAL_HOLD_RULE[kind]], at: new Date().toISOString(), by: cmd.requestedBy || 'operator' });
  }

  private async inspect(id: string): Promise<Dockerode.ContainerInspectInfo> {
    try {
      return await this.o.docker.getContainer(id).inspect();
    } catch (err) {
      if (statusOf(err) === 404) throw notFound(id);
      throw new BulkheadError('BK_ERR_DOCKER_UNAVAILABLE', `inspect failed: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** The engine's state for the container now: running, paused, exited, …; "removed" when gone; "" when unknown. */
  private async stateOf(id: string): Promise<string> {
    try {
      return (await this.o.docker.getContainer(id).inspect()).State?.Status ?? '';
    } catch (err) {
      return statusOf(err) === 404 ? 'removed' : '';
    }
  }
}

/** Engine messages that mean "not in a state for this", whatever the status code. */
const STATE_REFUSAL = /not running|is paused|not paused|is restarting|is dead|already|removal .* in progress/i;

function notFound(id: string): BulkheadError {
  return new BulkheadError('BK_ERR_NOT_FOUND', `no container ${id.slice(0, 12)} on this host`);
}

function names(ns: RememberedNetwork[]): string {
  return ns.map((n) => n.name).join(', ');
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number } | null)?.statusCode;
}

function errorMessage(err: unknown): string {
  const e = err as { json?: { message?: unknown }; message?: unknown } | null;
  if (typeof e?.json?.message === 'string') return e.json.message;
  if (typeof e?.message === 'string') return e.message.replace(/^\(HTTP code \d+\)\s*[^-]*-\s*/, '').trim();
  return String(err);
}
