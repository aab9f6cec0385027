// Owns the typed shape of GET /v1/events' data (docs/api.md "Live events"). The
// OpenAPI document describes the stream only as text/event-stream, so these types
// are written from the docs' table; parseFleetEvent reads one SseEvent.
import type { SseEvent } from './sse';
import type { AlertSeverity, AlertType } from './constants';

interface EventBase {
  seq: number;
  at: string;
  /** '' = no project. */
  project: string;
  agentId: string | null;
}

export interface ContainerUpdatedEvent extends EventBase { type: 'container.updated'; containerId: string; name: string; image: string; state: string }
export interface ContainerRemovedEvent extends EventBase { type: 'container.removed'; containerId: string; name: string }
export interface ContainerSnapshotEvent extends EventBase { type: 'container.snapshot'; containers: number }
export interface AgentEvent extends EventBase { type: 'agent.online' | 'agent.offline'; hostname: string; message: string }
export interface AlertEvent extends EventBase {
  type: `alert.${AlertType}`;
  alertId: string;
  alertType: AlertType;
  severity: AlertSeverity;
  message: string;
  grouped: boolean;
  count: number;
  host: string | null;
  containerId: string | null;
  containerName: string | null;
  image: string | null;
  ruleId: string | null;
  action: string | null;
  result: string | null;
}
/** No id: resuming could not continue exactly; reload the state. */
export interface StreamGapEvent { type: 'stream.gap'; after: number; firstAvailable: number; reason: 'pruned' | 'unknown_id' }
/** No id: the controller ends the stream (`credential`: log in again; `shutdown`: reconnect). */
export interface StreamEndEvent { type: 'stream.end'; reason: 'credential' | 'shutdown' | string }

export type FleetEvent = ContainerUpdatedEvent | ContainerRemovedEvent | ContainerSnapshotEvent | AgentEvent | AlertEvent | StreamGapEvent | StreamEndEvent;

/** The event's data as a FleetEvent (its `type` from the SSE `event:` field); undefined when the data is not a JSON object. */
export function parseFleetEvent(e: SseEvent): FleetEvent | undefined {
  let data: unknown;
  try {
    data = JSON.parse(e.data);
  } catch {
    return undefined;
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
  return { ...(data as object), type: e.event } as FleetEvent;
}
