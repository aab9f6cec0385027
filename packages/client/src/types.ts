// Owns the names the client gives to the generated API types
// (./generated/openapi.ts, from the controller's OpenAPI document): helpers that
// pick an operation's query, path parameters, body and success answer, and one
// alias per resource so callers write `Container`, not a path expression.
import type { paths } from './generated/openapi';

export type { paths, components } from './generated/openapi';

/** The API paths ("/v1/containers/{agent}/{id}"). */
export type ApiPath = keyof paths;
export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
/** The methods `P` has. */
export type MethodOf<P extends ApiPath> = { [M in Method]: paths[P][M] extends { responses: unknown } ? M : never }[Method];
type Op<P extends ApiPath, M extends Method> = NonNullable<paths[P][M]>;

type JsonContent<R> = R extends { content: { 'application/json': infer T } } ? T : R extends { content?: never } ? undefined : unknown;
type SuccessOf<R> = R extends { 200: infer S } ? JsonContent<S> : R extends { 201: infer S } ? JsonContent<S> : R extends { 202: infer S } ? JsonContent<S> : R extends { 204: unknown } ? undefined : R extends { '2XX': infer S } ? JsonContent<S> : unknown;

/** The JSON of `M P`'s success answer. */
export type ResponseOf<P extends ApiPath, M extends MethodOf<P>> = Op<P, M> extends { responses: infer R } ? SuccessOf<R> : never;
/** `M P`'s query parameters. */
export type QueryOf<P extends ApiPath, M extends MethodOf<P>> = Op<P, M> extends { parameters: { query?: infer Q } } ? ([Q] extends [never] ? never : NonNullable<Q>) : never;
/** `M P`'s path parameters. */
export type PathParamsOf<P extends ApiPath, M extends MethodOf<P>> = Op<P, M> extends { parameters: { path: infer Q } } ? ([Q] extends [never] ? never : NonNullable<Q>) : never;
/** `M P`'s JSON request body. */
export type BodyOf<P extends ApiPath, M extends MethodOf<P>> = Op<P, M> extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;

type Item<T> = T extends { items: Array<infer I> } ? I : never;

// ---- session -------------------------------------------------------------
export type Session = ResponseOf<'/v1/session', 'get'>;
export type Logout = ResponseOf<'/v1/session', 'delete'>;
export type WhoAmI = ResponseOf<'/v1/auth/whoami', 'get'>;
export type Token = ResponseOf<'/v1/auth/token', 'post'>;
// ---- agents --------------------------------------------------------------
export type AgentList = ResponseOf<'/v1/agents', 'get'>;
export type Agent = ResponseOf<'/v1/agents/{id}', 'get'>;
export type HostAuditQuery = QueryOf<'/v1/agents/{id}/audit', 'get'>;
/** GET /v1/agents/:id/audit answers one of three shapes, by `format`. */
export type HostAuditAnswer = ResponseOf<'/v1/agents/{id}/audit', 'get'>;
/** format=report (the default): lockdown findings, fixes, CIS summary, hygiene, prune record. */
export type HostAudit = Extract<HostAuditAnswer, { lockdown: unknown }>;
/** format=cis: the docker-bench-security JSON report. */
export type CisReport = Extract<HostAuditAnswer, { dockerbenchsecurity: unknown }>;
/** format=prune: the image prune record. */
export type HostAuditPruneList = Extract<HostAuditAnswer, { items: unknown }>;
// ---- containers ----------------------------------------------------------
export type ContainerQuery = QueryOf<'/v1/containers', 'get'>;
export type ContainerPage = ResponseOf<'/v1/containers', 'get'>;
export type Container = ResponseOf<'/v1/containers/{agent}/{id}', 'get'>;
export type ContainerUsageHistory = ResponseOf<'/v1/containers/{agent}/{id}/usage', 'get'>;
export type UsagePoint = ContainerUsageHistory['points'][number];
export type ContainerActionBody = BodyOf<'/v1/containers/{agent}/{id}/actions', 'post'>;
export type ContainerActionResult = ResponseOf<'/v1/containers/{agent}/{id}/actions', 'post'>;
export type SummaryQuery = QueryOf<'/v1/summary', 'get'>;
export type Summary = ResponseOf<'/v1/summary', 'get'>;
// ---- violations, alerts ----------------------------------------------------
export type ViolationQuery = QueryOf<'/v1/violations', 'get'>;
export type ViolationPage = ResponseOf<'/v1/violations', 'get'>;
export type Violation = Item<ViolationPage>;
export type AlertQuery = QueryOf<'/v1/alerts', 'get'>;
export type AlertPage = ResponseOf<'/v1/alerts', 'get'>;
export type Alert = Item<AlertPage>;
// ---- webhooks ------------------------------------------------------------
export type WebhookList = ResponseOf<'/v1/webhooks', 'get'>;
export type Webhook = ResponseOf<'/v1/webhooks/{id}', 'get'>;
export type WebhookCreateBody = BodyOf<'/v1/webhooks', 'post'>;
export type WebhookWithSecret = ResponseOf<'/v1/webhooks', 'post'>;
export type WebhookUpdateBody = BodyOf<'/v1/webhooks/{id}', 'patch'>;
export type DeliveryQuery = QueryOf<'/v1/webhooks/{id}/deliveries', 'get'>;
export type DeliveryPage = ResponseOf<'/v1/webhooks/{id}/deliveries', 'get'>;
export type Delivery = Item<DeliveryPage>;
export type Redelivery = ResponseOf<'/v1/deliveries/{id}/redeliver', 'post'>;
export type WebhookTest = ResponseOf<'/v1/webhooks/{id}/test', 'post'>;
// ---- policy --------------------------------------------------------------
export type Policy = ResponseOf<'/v1/policies', 'get'>;
export type PolicyVersionList = ResponseOf<'/v1/policies/versions', 'get'>;
export type PolicyVersion = Item<PolicyVersionList>;
export type DryRunResult = ResponseOf<'/v1/policies:dry-run', 'post'>;
// ---- audit trail ---------------------------------------------------------
export type AuditQuery = QueryOf<'/v1/audit-log', 'get'>;
export type AuditPage = ResponseOf<'/v1/audit-log', 'get'>;
export type AuditEntry = Item<AuditPage>;
export type AuditVerify = ResponseOf<'/v1/audit-log/verify', 'get'>;
// ---- keys, join tokens -----------------------------------------------------
export type ApiKeyList = ResponseOf<'/v1/keys', 'get'>;
export type ApiKey = ResponseOf<'/v1/keys/{id}', 'get'>;
export type ApiKeyCreateBody = BodyOf<'/v1/keys', 'post'>;
export type ApiKeyWithSecret = ResponseOf<'/v1/keys', 'post'>;
export type JoinTokenQuery = QueryOf<'/v1/join-tokens', 'get'>;
export type JoinTokenPage = ResponseOf<'/v1/join-tokens', 'get'>;
export type JoinToken = Item<JoinTokenPage>;
export type JoinTokenCreateBody = BodyOf<'/v1/join-tokens', 'post'>;
export type JoinTokenCreated = ResponseOf<'/v1/join-tokens', 'post'>;
// ---- scans, images -------------------------------------------------------
export type Scan = ResponseOf<'/v1/scans/{digest}', 'get'>;
export type ImageQuery = QueryOf<'/v1/images', 'get'>;
export type ImagePage = ResponseOf<'/v1/images', 'get'>;
export type ImageTag = ResponseOf<'/v1/images/{ref}', 'get'>;
