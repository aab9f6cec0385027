// @bulkhead/shared: what both the agent and the controller need.
import { keepOpenTelemetryUnloaded } from './modules/stand-in';

// Before anything loads prom-client (both daemons' metrics modules import it).
keepOpenTelemetryUnloaded();

export { standIn, unavailableModule, keepOpenTelemetryUnloaded } from './modules/stand-in';
export { ERRORS, BulkheadError, isBulkheadError, parseErrorString } from './errors/registry';
export type { ErrorCode, ErrorSpec } from './errors/registry';
export { createLogger, REDACT_PATHS } from './logging/logger';
export type { Logger, LoggerOptions } from './logging/logger';
export { parseDuration } from './config/duration';
export {
  createCa, issueServerCert, createCsr, signAgentCsr, issueAgentCertWithDates, certFingerprint, certPublicKeyFingerprint,
  normalizeFingerprint, agentIdFromCert, describeCert, canonicalSerial, AGENT_URI_PREFIX, splitPemCertificates, issuedByOneOf,
} from './pki/pki';
export type { KeyAndCert, ServerCertOptions, AgentCertOptions, CertSummary } from './pki/pki';
export { loadProto, protoRoot, LOADER_OPTIONS } from './proto/index';
export type * from './proto/index';
export { writeSecretFile, writeFileAtomic } from './fs/secure-files';
export { VERSION } from './version';
export type * from './policy/types';
export { detectSecrets, detectSecretsInEnv, detectSecretsInArgv, isSecretName, SECRET_DETECTORS, SECRET_DETECTOR_NAMES } from './policy/secrets';
export type { SecretDetector } from './policy/secrets';
export { evaluate } from './policy/evaluator';
export type { EvaluationInput } from './policy/evaluator';
export { parsePolicy, policyFromJson, PolicyValidationError } from './policy/parse';
export { policyFromTrustedBundle } from './policy/trusted-bundle';
export type { PolicyErrorDetail } from './policy/parse';
export { compilePolicy, projectOf, enforceable, applicableRules, inRuleScope } from './policy/evaluator';
export type { CompiledPolicy } from './policy/evaluator';
export { formatPolicyError } from './policy/parse';
export { CHECKS, CHECK_TYPES, getCheck, signatureVerdictKey, signatureParamsKey, signatureParamsOfRule, signedRepoDigest, signatureRequirement, MAX_SIGNATURE_SIGNERS } from './policy/checks/index';
export type { ImageSignatureParamsValue } from './policy/checks/index';
export { isRootUser } from './policy/checks/host';
export { effectiveLogConfig, effectiveUlimits } from './policy/checks/limits';
export type { EffectiveLogConfig } from './policy/checks/limits';
export { tagIdentity, tagPinKey, hasRuleScope } from './policy/checks/images';
export type { TagIdentity } from './policy/checks/images';
export type { CatalogueEntry } from './policy/checks/index';
export { USAGE_CHECK_TYPES, MAX_USAGE_FOR_SECONDS, isUsageRule, usageWindowMs } from './policy/checks/index';
// Never re-export from './policy/schema' or './policy/validate' here: they load
// TypeBox, which the agent must not load (packages/agent/test/no-typebox.test.ts).
export { policyJsonSchema, policyJsonSchemaText } from './policy/json-schema';
export { POLICY_SCHEMA_ID, POLICY_API_VERSION, DEFAULT_PROJECT_LABEL } from './policy/constants';
export { parseTrivyReport, scanKeys } from './policy/trivy';
export type { TrivyParseOptions } from './policy/trivy';
export { DEFAULT_POLICY_YAML } from './policy/default-policy';
export { parseImageRef } from './policy/image-ref';
export { compileGlob } from './policy/glob';
export type { ImageRef } from './policy/image-ref';
export { formatSize, parseMemorySize } from './policy/units';
export { startMetricsListener, startOptionalMetricsListener, resolveMetricsAddress, parseMetricsAddress, isLoopbackHost } from './net/metrics-listener';
export type { MetricsAddress, MetricsListener, MetricsListenerOptions } from './net/metrics-listener';
export { collectProcessMetrics, EVENT_LOOP_MONITOR_RESOLUTION_MS } from './metrics/process-metrics';
export { cliExitCode, exitQuietlyOnEpipe } from './cli/exit-code';
export { inventoryStateHash } from './inventory/state-hash';
export { Semaphore } from './concurrency/semaphore';
