// @bulkhead/client: the typed client of the Bulkhead controller API (docs/api.md),
// shared by the `bulkhead` CLI (packages/cli, a node:https transport) and the web
// console (the fetch transport, '@bulkhead/client/fetch'). Browser-safe: nothing
// here imports from Node.
export { BulkheadClient, fillPath, queryEntries, type CallOptions, type ClientOptions, type PageParams, type QueryInput, type QueryValue, type RequestOptions } from './client';
export { ApiError, ConnectionError, problemError, type PolicyError, type Problem } from './errors';
export type { HttpMethod, Transport, TransportRequest, TransportResponse } from './transport';
export { SseParser, type SseEvent } from './sse';
export * from './constants';
export type * from './types';
export { VERSION } from './version';
export { formatBytes, formatSize, parseDuration } from './format';
export { parseFleetEvent, type AgentEvent, type AlertEvent, type ContainerRemovedEvent, type ContainerSnapshotEvent, type ContainerUpdatedEvent, type FleetEvent, type StreamEndEvent, type StreamGapEvent } from './events';
