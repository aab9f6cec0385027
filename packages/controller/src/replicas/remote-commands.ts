// Owns manual commands for agents whose stream another replica holds. The caller looks up
// the agent's lease (agent_leases): none, or an expired one, fails at once with
// BK_ERR_AGENT_OFFLINE. Otherwise the command goes to the holder by NOTIFY, addressed to it
// alone; the holder answers "accepted" at once, runs the command on its stream as a local
// one, and sends back the agent's CommandResult (or its link's error), which the caller
// returns exactly as a local result. Exactly once: only the addressed replica acts, it acts
// on a command id once, and not after the command's accept-by time, so a command the caller
// gave up on (no "accepted" in time: the holder died) is never run later.
import { BulkheadError, type Command, type CommandResult__Output, type ErrorCode, type Logger } from '@bulkhead/shared';
import type { ReplicaBus, ReplicaMessage } from './replica-bus';

/** How long the holder has to take a command before the caller calls the agent unreachable. */
export const DEFAULT_ACCEPT_MS = 2_000;
/**
 * The caller waits this much past the accept-by time for "accepted": the holder refuses a
 * command once its accept-by time passed, and an "accepted" sent just before it has this long
 * to arrive, so "not carried out" is never said of a command that ran (clocks kept in sync).
 */
const ACCEPT_MARGIN_MS = 1_000;
/** Command ids run here, remembered to refuse a second delivery; forgotten all at once past this many. */
const MAX_REMEMBERED = 10_000;
/** Longest text of a result field carried back (NOTIFY payloads are bounded). */
const MAX_FIELD = 2048;

export interface RemoteCommandsOptions {
  bus: ReplicaBus;
  /** Who holds the agent's stream, and until when. */
  lease: (agentId: string) => Promise<{ owner: string; expiresAt: Date } | undefined>;
  /** Runs a command on a stream this replica holds (AgentLinkService's local path). */
  local: (agentId: string, cmd: Command) => Promise<CommandResult__Output>;
  logger: Logger;
  acceptMs?: number;
  now?: () => Date;
}

interface Waiting {
  resolve: (r: CommandResult__Output) => void;
  reject: (e: BulkheadError) => void;
  accepted: boolean;
  timers: NodeJS.Timeout[];
}

export class RemoteCommands {
  private readonly waiting = new Map<string, Waiting>();
  private readonly seen = new Set<string>();
  private readonly now: () => Date;
  private readonly acceptMs: number;
  private readonly unsubscribe: () => void;

  constructor(private readonly o: RemoteCommandsOptions) {
    this.now = o.now ?? (() => new Date());
    this.acceptMs = o.acceptMs ?? DEFAULT_ACCEPT_MS;
    this.unsubscribe = o.bus.subscribe((m) => this.onMessage(m));
  }

  /** Sends `cmd` to the replica holding the agent's stream; settles as AgentLinkService.sendCommand does. */
  async send(agentId: string, cmd: Command): Promise<CommandResult__Output> {
    const id = cmd.id ?? '';
    const now = this.now().getTime();
    const lease = await this.o.lease(agentId);
    if (!lease || lease.expiresAt.getTime() <= now || lease.owner === this.o.bus.replicaId) {
      throw new BulkheadError('BK_ERR_AGENT_OFFLINE', `agent ${agentId} is not connected to any controller replica; it cannot act until it reconnects`);
    }
    if (id === '' || this.waiting.has(id)) throw new BulkheadError('BK_ERR_INTERNAL', `command id "${id}" is empty or already pending`);
    const deadline = Number(cmd.deadlineMs ?? 0);
    const acceptBy = now + this.acceptMs;
    const answer = new Promise<CommandResult__Output>((resolve, reject) => {
      const w: Waiting = { resolve, reject, accepted: false, timers: [] };
      const done = (e: BulkheadError) => {
        if (this.waiting.get(id) !== w) return;
        this.forget(id);
        reject(e);
      };
      w.timers.push(
        setTimeout(() => {
          if (!w.accepted) {
            done(new BulkheadError('BK_ERR_AGENT_OFFLINE', `agent ${agentId}: the controller replica holding its stream (${lease.owner}) did not take the command within ${this.acceptMs / 1000}s (stopped?); it was not carried out — retry once the agent has reconnected`));
          }
        }, this.acceptMs + ACCEPT_MARGIN_MS),
        // A little past the deadline: the holder's own answer at the deadline (its link's) says more.
        setTimeout(() => {
          done(new BulkheadError('BK_ERR_ACTION_UNCONFIRMED', `agent ${agentId} did not answer within ${Math.round((deadline - now) / 100) / 10}s (through replica ${lease.owner}); the action may or may not have been carried out — check the container's state`));
        }, Math.max(this.acceptMs + ACCEPT_MARGIN_MS, deadline - now + 500)),
      );
      for (const t of w.timers) t.unref();
      this.waiting.set(id, w);
    });
    try {
      await this.o.bus.publish({ t: 'cmd', to: lease.owner, from: this.o.bus.replicaId, agentId, cmd, acceptBy });
    } catch (err) {
      const w = this.waiting.get(id);
      this.forget(id);
      const e = err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `could not reach the replica holding agent ${agentId}'s stream: ${(err as Error).message}`, { cause: err });
      w?.reject(e);
    }
    return answer;
  }

  close(): void {
    this.unsubscribe();
    for (const [id, w] of [...this.waiting]) {
      this.forget(id);
      w.reject(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', 'controller is shutting down'));
    }
  }

  private forget(id: string): void {
    const w = this.waiting.get(id);
    if (!w) return;
    for (const t of w.timers) clearTimeout(t);
    this.waiting.delete(id);
  }

  private onMessage(m: ReplicaMessage): void {
    const me = this.o.bus.replicaId;
    switch (m.t) {
      case 'cmd':
        if (m.to === me) void this.run(m);
        return;
      case 'cmd-accepted': {
        const w = m.to === me ? this.waiting.get(m.id) : undefined;
        if (w) w.accepted = true;
        return;
      }
      case 'cmd-result': {
        const w = m.to === me ? this.waiting.get(m.id) : undefined;
        if (!w) return;
        this.forget(m.id);
        if (m.error) w.reject(new BulkheadError(m.error.code as ErrorCode, m.error.message));
        else w.resolve(m.result as CommandResult__Output);
        return;
      }
      default:
        return;
    }
  }

  /** The holder's side: one run per command id, not after its accept-by time. */
  private async run(m: Extract<ReplicaMessage, { t: 'cmd' }>): Promise<void> {
    const cmd = m.cmd as Command;
    const id = typeof cmd?.id === 'string' ? cmd.id : '';
    if (id === '' || this.seen.has(id)) return;
    if (this.seen.size >= MAX_REMEMBERED) this.seen.clear();
    this.seen.add(id);
    const log = this.o.logger.child({ commandId: id, agentId: m.agentId, from: m.from });
    if (this.now().getTime() > m.acceptBy) {
      log.warn({ acceptBy: new Date(m.acceptBy).toISOString() }, 'a command from another replica arrived after its accept-by time: not run (the caller was told it was not carried out)');
      return;
    }
    const reply = (r: Omit<Extract<ReplicaMessage, { t: 'cmd-result' }>, 't' | 'to' | 'id'>) =>
      this.o.bus.publish({ t: 'cmd-result', to: m.from, id, ...r }).catch((err: unknown) => log.error({ err }, 'sending a command result to the replica that asked failed'));
    try {
      await this.o.bus.publish({ t: 'cmd-accepted', to: m.from, id });
    } catch (err) {
      log.error({ err }, 'accepting a command from another replica failed: not run');
      return;
    }
    try {
      const r = await this.o.local(m.agentId, cmd);
      await reply({ result: { ...r, detail: cut(r.detail), error: cut(r.error) } });
    } catch (err) {
      const e = err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', (err as Error).message);
      await reply({ error: { code: e.code, message: cut(e.message) } });
    }
  }
}

function cut(s: string | undefined): string {
  const v = s ?? '';
  return v.length > MAX_FIELD ? v.slice(0, MAX_FIELD) : v;
}
