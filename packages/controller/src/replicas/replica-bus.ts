// Owns how controller replicas on one database talk to each other: a replica id per
// process, and messages published to every replica (each one filters what is addressed to
// it). On PostgreSQL the messages are LISTEN/NOTIFY on one channel (pg-replica-bus.ts); on
// SQLite there is one controller process, so the bus is local and carries nothing.
import { randomBytes } from 'node:crypto';

/** What replicas tell each other (JSON in a NOTIFY payload, at most ~8000 bytes). */
export type ReplicaMessage =
  /** Run a manual command on the agent whose stream `to` holds; answer to `from`. */
  | { t: 'cmd'; to: string; from: string; agentId: string; cmd: unknown; acceptBy: number }
  /** The owner took the command (it runs it, or answers that it cannot). */
  | { t: 'cmd-accepted'; to: string; id: string }
  /** The command's outcome: the agent's CommandResult, or the error the owner's link gave. */
  | { t: 'cmd-result'; to: string; id: string; result?: unknown; error?: { code: string; message: string } }
  /** An agent was revoked: whoever holds its stream closes it. */
  | { t: 'revoke'; from: string; agentId: string }
  /** A new policy bundle was stored (version, scans or tag pins): reload and push to your agents. */
  | { t: 'policy'; from: string };

export interface ReplicaBus {
  /** This process's id: the owner recorded in the leases it holds. */
  readonly replicaId: string;
  /** True when other replicas may share the store (PostgreSQL): remote commands and notifications apply. */
  readonly clustered: boolean;
  /** Sends to every replica, this one included. Rejects when the message cannot be sent. */
  publish(msg: ReplicaMessage): Promise<void>;
  /** Every message published by any replica; returns an unsubscribe function. */
  subscribe(listener: (msg: ReplicaMessage) => void): () => void;
  /** Called after the bus reconnected (messages may have been missed meanwhile). */
  onReconnect(listener: () => void): () => void;
  close(): Promise<void>;
}

/** A replica id: random per process, so a restarted controller never resumes a dead one's leases. */
export function newReplicaId(): string {
  return 'rep_' + randomBytes(8).toString('hex');
}

/** One controller on SQLite: nobody else to tell. */
export class LocalReplicaBus implements ReplicaBus {
  readonly clustered = false;
  constructor(readonly replicaId: string = newReplicaId()) {}
  publish(): Promise<void> {
    return Promise.resolve();
  }
  subscribe(): () => void {
    return () => undefined;
  }
  onReconnect(): () => void {
    return () => undefined;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
