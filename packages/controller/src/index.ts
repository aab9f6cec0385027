// @bulkhead/controller: the central server, its REST API and the ops CLI.
export { Controller } from './controller';
export { resolveControllerOptions } from './controller-options';
export type { ControllerOptions, ControllerOptionsInput } from './controller-options';
export { startGrpcServer, serverCredentials } from './grpc/grpc-server';
export type { GrpcServerOptions, RunningGrpcServer } from './grpc/grpc-server';
export { AgentLinkService } from './grpc/agent-link-service';
export { createJoinToken, redeemJoinToken } from './enrollment/join-tokens';
export { initPki, loadPki, dataDirPaths, defaultSans } from './pki/data-dir';
export type { ControllerPki, DataDirPaths } from './pki/data-dir';
export type { Store, AgentRecord, ContainerRecord, ContainerQuery, JoinTokenRecord, ApiKeyRecord } from './store/store';
export { main as controllerCliMain } from './cli/main';
export { openStore } from './store/open-store';
export type { StoreConfig } from './store/open-store';
export { SqliteStore } from './store/sqlite-store';
export { createApiServer } from './api/server';
export type { ApiServerOptions } from './api/server';
export { generateApiKey, verifyApiKey } from './api/api-keys';
// Manual actions, metrics, OpenAPI.
export { ManualActions, MANUAL_ACTIONS } from './commands/manual-actions';
export type { ManualAction, ManualActionOutcome, CommandSender } from './commands/manual-actions';
export { ControllerMetrics } from './metrics/controller-metrics';
export type { LinkMetrics, ApiRequestObserver, DeliveryObserver, FleetSources } from './metrics/controller-metrics';
export { registerOpenApi, OPENAPI_PATH } from './openapi/openapi';
