// Owns how controller replicas on one database talk to each other: a replica id per
// process, and messages published to every replica (each one filters what is addressed to
// it). On PostgreSQL the messages are LISTEN/NOTIFY on one channel (pg-replica-bus.ts); on
// SQLite there is one controller process, so the bus is local and carries nothing.
import { randomBytes } from 'node:crypto';
import { BulkheadError } from '@bulkhead/shared';
import type { FleetEventWakeups } from '../events/event-store';

/**
 * What replicas tell each other (JSON in a signed NOTIFY payload, at most ~8000 bytes). A
 * received message is used only once parseReplicaMessage() accepted its shape.
 */
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
  /**
   * Sends to every replica, this one included. Rejects when the message cannot be sent: with a
   * notSentError() when it certainly was not (what it asked for does not happen), with any other
   * error when the database may have committed it all the same.
   */
  publish(msg: ReplicaMessage): Promise<void>;
  /** Every message published by any replica; returns an unsubscribe function. */
  subscribe(listener: (msg: ReplicaMessage) => void): () => void;
  /** Called after the bus reconnected (messages may have been missed meanwhile). */
  onReconnect(listener: () => void): () => void;
  /** Wake-ups for GET /v1/events when any replica commits fleet events (PostgreSQL); undefined: readers poll. */
  readonly fleetEvents?: FleetEventWakeups;
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

/**
 * An error from publish() for a message that certainly never reached the database (no
 * connection, too large, unsigned): what it asked for does not happen. Any other publish
 * error may come after the database committed the notification.
 */
export function notSentError(code: 'BK_ERR_CONTROLLER_UNAVAILABLE' | 'BK_ERR_INTERNAL', message: string): BulkheadError {
  return new BulkheadError(code, message, { details: { notSent: true } });
}

export function wasNotSent(err: unknown): boolean {
  return err instanceof BulkheadError && err.details?.['notSent'] === true;
}

// ---- shape checks: a message is used only when every field it carries has its type -----------

const str = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const obj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function validCommand(v: unknown): boolean {
  if (!obj(v) || !str(v['id'])) return false;
  for (const k of ['containerId', 'action', 'requestedBy'] as const) if (v[k] !== undefined && typeof v[k] !== 'string') return false;
  if (v['stopTimeoutSeconds'] !== undefined && !finite(v['stopTimeoutSeconds'])) return false;
  const d = v['deadlineMs'];
  return d === undefined || finite(d) || (typeof d === 'string' && /^\d{1,16}$/.test(d));
}

function validResult(v: unknown): boolean {
  return obj(v) && typeof v['id'] === 'string' && typeof v['ok'] === 'boolean' && typeof v['error'] === 'string' && typeof v['detail'] === 'string' && finite(v['durationMs']) && typeof v['state'] === 'string';
}

/** The message `v` (parsed JSON) when it has one of the shapes above, field by field; otherwise undefined. */
export function parseReplicaMessage(v: unknown): ReplicaMessage | undefined {
  if (!obj(v)) return undefined;
  switch (v['t']) {
    case 'cmd':
      // acceptBy must be a real time: a command without one would have no limit.
      return str(v['to']) && str(v['from']) && str(v['agentId']) && validCommand(v['cmd']) && finite(v['acceptBy']) && Math.abs(v['acceptBy']) < 8.64e15
        ? { t: 'cmd', to: v['to'], from: v['from'], agentId: v['agentId'], cmd: v['cmd'], acceptBy: v['acceptBy'] }
        : undefined;
    case 'cmd-accepted':
      return str(v['to']) && str(v['id']) ? { t: 'cmd-accepted', to: v['to'], id: v['id'] } : undefined;
    case 'cmd-result': {
      if (!str(v['to']) || !str(v['id'])) return undefined;
      const e = v['error'];
      if (e !== undefined) {
        if (!obj(e) || !str(e['code'], 64) || typeof e['message'] !== 'string') return undefined;
        return { t: 'cmd-result', to: v['to'], id: v['id'], error: { code: e['code'], message: e['message'] } };
      }
      return validResult(v['result']) ? { t: 'cmd-result', to: v['to'], id: v['id'], result: v['result'] } : undefined;
    }
    case 'revoke':
      return str(v['from']) && str(v['agentId']) ? { t: 'revoke', from: v['from'], agentId: v['agentId'] } : undefined;
    case 'policy':
      return str(v['from']) ? { t: 'policy', from: v['from'] } : undefined;
    default:
      return undefined;
  }
}
