// Owns manual commands for agents whose stream another replica holds. The caller looks up
// the agent's lease (agent_leases): none, or an expired one, fails at once with
// BK_ERR_AGENT_OFFLINE. Otherwise the command is recorded as sent (remote_commands) and goes
// to the holder by NOTIFY, addressed to it alone; the holder takes it (moves the row to
// 'accepted'), says so, runs the command on its stream as a local one, and sends back the
// agent's CommandResult (or its link's error), which the caller returns exactly as a local
// result. Exactly once: only the addressed replica acts, once per command id, and only if it
// took it in the database; a caller that heard nothing in time moves the row to 'abandoned'
// and only then says "not carried out" — of the two conditional updates exactly one wins, so a
// late "accepted" (a slow database) never turns into a command run after "retry". When the
// database cannot decide (unreachable), the caller answers BK_ERR_ACTION_UNCONFIRMED.
// Nothing here throws out of a message handler or leaves a promise unhandled: a malformed
// message is dropped, and every answer is settled exactly once.
import { BulkheadError, ERRORS, type Command, type CommandResult__Output, type ErrorCode, type Logger } from '@bulkhead/shared';
import { parseReplicaMessage, wasNotSent, type ReplicaBus, type ReplicaMessage } from './replica-bus';

/** How long the holder has to take a command before the caller calls the agent unreachable. */
export const DEFAULT_ACCEPT_MS = 2_000;
/**
 * The caller waits this much past the accept-by time for "accepted" before asking the
 * database whether the holder took it (the holder also refuses a command past its accept-by time).
 */
const ACCEPT_MARGIN_MS = 1_000;
/** Command ids run here, remembered to refuse a second delivery; forgotten all at once past this many. */
const MAX_REMEMBERED = 10_000;
/** Most bytes of a result's text field carried back (NOTIFY payloads are bounded). */
const MAX_TEXT_BYTES = 2048;
/** Most bytes of a whole serialized result message, leaving room for the bus's signature envelope. */
const MAX_RESULT_BYTES = 7000;

export interface RemoteCommandsOptions {
  bus: ReplicaBus;
  /** Who holds the agent's stream, and until when. */
  lease: (agentId: string) => Promise<{ owner: string; expiresAt: Date } | undefined>;
  /** Runs a command on a stream this replica holds (AgentLinkService's local path). */
  local: (agentId: string, cmd: Command) => Promise<CommandResult__Output>;
  logger: Logger;
  /**
   * The database's decision on each command (Store.recordRemoteCommand/decideRemoteCommand):
   * the holder runs it only if it moves it to 'accepted', the caller says "not carried out"
   * only if it moves it to 'abandoned'. Without it (a store without the table) a caller that
   * hears nothing in time answers BK_ERR_ACTION_UNCONFIRMED.
   */
  decisions?: {
    record(id: string, now: Date): Promise<boolean>;
    decide(id: string, to: 'accepted' | 'abandoned'): Promise<boolean>;
  };
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
    const decisions = this.o.decisions;
    if (decisions) {
      let recorded: boolean;
      try {
        recorded = await decisions.record(id, new Date(now));
      } catch (err) {
        this.o.logger.error({ err, agentId, commandId: id }, 'recording a command for another replica failed');
        throw new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `could not reach the controller replica holding agent ${agentId}'s stream; the action was not carried out — retry`);
      }
      if (!recorded) throw new BulkheadError('BK_ERR_INTERNAL', `command id "${id}" was already sent`);
    }
    const deadline = Number(cmd.deadlineMs ?? 0);
    const acceptBy = now + this.acceptMs;
    let settle!: { resolve: (r: CommandResult__Output) => void; reject: (e: BulkheadError) => void };
    const answer = new Promise<CommandResult__Output>((resolve, reject) => (settle = { resolve, reject }));
    // Handled from the start: a timer may settle it while the publish below is still pending
    // (a stalled database), and an unhandled rejection would end the process.
    answer.catch(() => undefined);
    const w: Waiting = { resolve: settle.resolve, reject: settle.reject, accepted: false, timers: [] };
    const done = (e: BulkheadError) => {
      if (this.waiting.get(id) !== w) return;
      this.forget(id);
      w.reject(e);
    };
    const unconfirmed = (why: string) =>
      new BulkheadError('BK_ERR_ACTION_UNCONFIRMED', `agent ${agentId}: ${why} (through replica ${lease.owner}); the action may or may not have been carried out — check the container's state before retrying`);
    /**
     * Nothing heard in time (or the send failed): the database says whether the holder took
     * it. Abandoned here: certainly not run. Taken: wait for its result until the deadline.
     */
    const giveUp = async (notTaken: BulkheadError, unknown: string) => {
      if (this.waiting.get(id) !== w || w.accepted) return;
      if (!decisions) return done(unconfirmed(unknown));
      try {
        if (await decisions.decide(id, 'abandoned')) return done(notTaken);
        w.accepted = true; // the holder took it; its "accepted" is late
      } catch (err) {
        this.o.logger.warn({ err: (err as Error).message, agentId, commandId: id }, 'could not record giving up on a command sent to another replica');
        done(unconfirmed(unknown));
      }
    };
    w.timers.push(
      setTimeout(() => {
        void giveUp(
          new BulkheadError('BK_ERR_AGENT_OFFLINE', `agent ${agentId}: the controller replica holding its stream (${lease.owner}) did not take the command within ${this.acceptMs / 1000}s (stopped?); it was not carried out — retry once the agent has reconnected`),
          `the controller replica holding its stream did not confirm taking the command within ${(this.acceptMs + ACCEPT_MARGIN_MS) / 1000}s (stopped, or the database is slow)`,
        );
      }, this.acceptMs + ACCEPT_MARGIN_MS),
      // A little past the deadline: the holder's own answer at the deadline (its link's) says more.
      setTimeout(() => done(unconfirmed(`no answer within ${Math.round((deadline - now) / 100) / 10}s`)), Math.max(this.acceptMs + ACCEPT_MARGIN_MS, deadline - now + 500)),
    );
    for (const t of w.timers) t.unref();
    this.waiting.set(id, w);
    const unreachable = () => new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `could not reach the controller replica holding agent ${agentId}'s stream; the action was not carried out — retry`);
    try {
      await this.o.bus.publish({ t: 'cmd', to: lease.owner, from: this.o.bus.replicaId, agentId, cmd, acceptBy });
    } catch (err) {
      // Details for the log only: the answer says what the caller can do.
      this.o.logger.warn({ err: (err as Error).message, agentId, commandId: id }, 'sending a command to the replica holding the agent\'s stream failed');
      if (wasNotSent(err)) {
        // Never handed to the database: certainly not carried out.
        if (decisions) void decisions.decide(id, 'abandoned').catch(() => undefined);
        done((err as BulkheadError).code === 'BK_ERR_CONTROLLER_UNAVAILABLE' ? unreachable() : (err as BulkheadError));
      } else {
        // The notification may have been committed and its reply lost: the database decides.
        await giveUp(unreachable(), 'the command was sent but the database did not confirm it');
      }
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

  private onMessage(raw: ReplicaMessage): void {
    // Checked again here (the PostgreSQL bus checks too): a malformed message is dropped, never thrown on.
    const m = parseReplicaMessage(raw);
    if (!m) return;
    const me = this.o.bus.replicaId;
    switch (m.t) {
      case 'cmd':
        if (m.to === me) {
          this.run(m).catch((err: unknown) => this.o.logger.error({ err, agentId: m.agentId }, 'running a command from another replica failed'));
        }
        return;
      case 'cmd-accepted': {
        const w = m.to === me ? this.waiting.get(m.id) : undefined;
        if (w) w.accepted = true;
        return;
      }
      case 'cmd-result': {
        const w = m.to === me ? this.waiting.get(m.id) : undefined;
        if (!w) return;
        try {
          if (m.error) {
            // An unknown code (another version, or garbage) is reported as internal, never thrown.
            const code: ErrorCode = Object.prototype.hasOwnProperty.call(ERRORS, m.error.code) ? (m.error.code as ErrorCode) : 'BK_ERR_INTERNAL';
            w.reject(new BulkheadError(code, m.error.message));
          } else {
            w.resolve(m.result as CommandResult__Output);
          }
        } catch (err) {
          w.reject(new BulkheadError('BK_ERR_INTERNAL', 'the result from the replica holding the stream could not be read', { cause: err }));
        } finally {
          this.forget(m.id);
        }
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
    if (!(this.now().getTime() <= m.acceptBy)) {
      log.warn({ acceptBy: m.acceptBy }, 'a command from another replica arrived after its accept-by time: not run');
      return;
    }
    const reply = (r: Omit<Extract<ReplicaMessage, { t: 'cmd-result' }>, 't' | 'to' | 'id'>) =>
      this.o.bus.publish({ t: 'cmd-result', to: m.from, id, ...r }).catch((err: unknown) => log.error({ err }, 'sending a command result to the replica that asked failed'));
    if (this.o.decisions) {
      // The database decides: the caller may have given up on it already (then it is not run).
      let taken: boolean;
      try {
        taken = await this.o.decisions.decide(id, 'accepted');
      } catch (err) {
        log.error({ err }, 'taking a command from another replica failed: not run');
        return;
      }
      if (!taken) {
        log.warn('a command from another replica was given up by its caller before it was taken here: not run');
        return;
      }
    }
    try {
      await this.o.bus.publish({ t: 'cmd-accepted', to: m.from, id });
    } catch (err) {
      if (!this.o.decisions && wasNotSent(err)) {
        log.error({ err }, 'accepting a command from another replica failed: not run');
        return;
      }
      // Taken (recorded, or the "accepted" may have been committed): the caller waits for the result; run it.
      log.warn({ err }, 'telling the caller a command from another replica was taken failed; running it');
    }
    try {
      const r = await this.o.local(m.agentId, cmd);
      await reply({ result: fitResult(m.from, id, r) });
    } catch (err) {
      const e = err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', (err as Error).message);
      await reply({ error: { code: e.code, message: cutBytes(e.message, 1000) } });
    }
  }
}

/**
 * A result that fits one notification: the serialized message is measured in bytes (what
 * PostgreSQL counts), and on overflow detail and error are shortened until it fits, so a
 * definite answer is never lost to its size.
 */
export function fitResult(to: string, id: string, r: CommandResult__Output): CommandResult__Output {
  const size = (x: CommandResult__Output) => Buffer.byteLength(JSON.stringify({ t: 'cmd-result', to, id, result: x }));
  let budget = MAX_TEXT_BYTES;
  let out = { ...r, detail: cutBytes(r.detail, budget), error: cutBytes(r.error, budget) };
  while (size(out) > MAX_RESULT_BYTES && budget > 0) {
    budget = Math.floor(budget / 2);
    out = { ...r, detail: cutBytes(r.detail, budget), error: cutBytes(r.error, budget) };
  }
  return out;
}

/** `s` cut to at most `max` bytes of UTF-8 (then JSON-escaped at most 6x: the budget is checked again on the whole message), never inside a character. */
export function cutBytes(s: string | undefined, max: number): string {
  const v = s ?? '';
  if (Buffer.byteLength(v) <= max) return v;
  let out = '';
  let used = 0;
  for (const ch of v) {
    const n = Buffer.byteLength(ch);
    if (used + n > max) break;
    out += ch;
    used += n;
  }
  return out;
}
