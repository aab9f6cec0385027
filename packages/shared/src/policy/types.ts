// The policy contract: what a policy document holds, what a rule check is,
// and what evaluation returns. The ONE evaluator (evaluator.ts) is a pure
// function of (policy, container facts, host facts, context) → findings, and
// every door uses it: the Docker authorization plugin, the reaction to engine
// events, the controller's dry-run and the audit report.
import type { ContainerFacts__Output, HostFacts__Output } from '../proto/index';

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type Mode = 'monitor' | 'enforce';
export type ActionType = 'kill' | 'stop' | 'pause' | 'quarantine' | 'limit' | 'alert';

export interface LimitSpec {
  /** e.g. "512m", "1g" or bytes. */
  memory?: string | number;
  /** CPUs, e.g. 0.5. */
  cpus?: number;
  pids?: number;
}

export interface RuleAction {
  type: ActionType;
  /** `stop`: seconds before SIGKILL. Default 10. */
  stopTimeoutSeconds?: number;
  /** `limit`: quotas applied through the Docker update API. */
  limits?: LimitSpec;
}

/** Which containers a rule applies to. Every given field must match; an absent field matches all. */
export interface RuleScope {
  /** Host labels (agent --host-label) that must all match; value "*" = present. */
  hostLabels?: Record<string, string>;
  /** Container labels that must all match; value "*" = present. */
  containerLabels?: Record<string, string>;
  /** Image ref globs ("registry.example.com/*", "*:latest"); one must match. */
  images?: string[];
  /** Project names (value of the project label); one must match. */
  projects?: string[];
}

/** A standing exception: who granted it, why, until when, and for which containers. */
export interface Exemption {
  who: string;
  why: string;
  /** ISO date-time; after it the exemption stops applying by itself. Absent = no expiry. */
  until?: string;
  /** Which containers it covers (same matching as scope); absent = all in the rule's scope. */
  match?: RuleScope & { names?: string[] };
}

export interface Rule {
  /** Stable id, e.g. "host.privileged". Unique within the policy. */
  id: string;
  description: string;
  severity: Severity;
  mode: Mode;
  action: RuleAction;
  scope?: RuleScope;
  exemptions?: Exemption[];
  /** The check: its `type` names an entry of the rule catalogue; the rest are its parameters. */
  check: { type: string; [param: string]: unknown };
}

export interface Policy {
  apiVersion: 'bulkhead.dev/v1';
  kind: 'Policy';
  metadata: { name: string; description?: string };
  spec: {
    /** The container label that names a container's project. Default "bulkhead.project". */
    projectLabel?: string;
    rules: Rule[];
  };
}

/** Vulnerability summary of one image digest, from an uploaded scanner report. */
export interface ScanSummary {
  digest: string;
  scannedAt: string;
  scanner: string;
  vulnerabilities: { id: string; severity: Severity | 'unknown'; cvss?: number; fixable: boolean; pkg?: string }[];
  /** The image id ("sha256:…", config digest) when the report carried it. */
  imageId?: string;
  /** Every repo digest of the image ("repo@sha256:…") from the report. */
  repoDigests?: string[];
  /** What was scanned, as the scanner names it (e.g. "nginx:1.27"). */
  artifactName?: string;
}

/** A container seen on the same host, for rules that compare containers (shared networks). */
export interface Neighbour {
  id: string;
  name: string;
  project: string | undefined;
  networks: string[];
}

/**
 * One reading of a running container's cgroup usage, as the agent's sampler
 * takes it every few seconds. Limits are 0 when unlimited.
 */
/**
 * Live usage beyond the cgroup: disk held on the host, block IO and the
 * network namespace's counters. One list for the agent's samples, the
 * evaluator's points and the controller's store. Absent when the agent does
 * not measure them (turned off, or an older agent); null when not measurable
 * for this container (a storage driver without an upper dir, no local log
 * file, --network host).
 */
export interface ResourceUsageFields {
  /** Bytes in the writable layer. */
  writableBytes?: number | null;
  /** Bytes of its log files (current + rotated). */
  logBytes?: number | null;
  /** Block IO from the cgroup (blkio / io.stat), cumulative bytes and operations. */
  blkioReadBytes?: number | null;
  blkioWriteBytes?: number | null;
  blkioReadOps?: number | null;
  blkioWriteOps?: number | null;
  /** Network namespace counters (every interface, loopback included), cumulative. */
  netRxBytes?: number | null;
  netTxBytes?: number | null;
  netRxPackets?: number | null;
  netTxPackets?: number | null;
  netRxDropped?: number | null;
  netTxDropped?: number | null;
  /** Rates since the previous reading (like cpuPercent): null on a container's first one or after a counter reset. */
  netRxBytesPerSec?: number | null;
  netTxBytesPerSec?: number | null;
  netRxPacketsPerSec?: number | null;
  netTxPacketsPerSec?: number | null;
  /** Open TCP connections of the namespace (every state but TIME_WAIT and CLOSE; listening sockets included). */
  tcpConnections?: number | null;
  /** All TCP + UDP sockets of the namespace. */
  sockets?: number | null;
}

export interface UsagePoint extends ResourceUsageFields {
  /** When it was read, ms since epoch. */
  at: number;
  /** CPU in use, averaged since the previous point, as % of ONE core; null on a container's first point. */
  cpuPercent: number | null;
  /** The CPU quota (--cpus) in CPUs; 0 = unlimited. */
  cpuLimitCores: number;
  /** Memory working set (usage minus inactive page cache, as `docker stats`), bytes. */
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  pidsLimit: number;
}

/**
 * Live usage of a running container: its recent readings, oldest first,
 * spanning at least the longest `forSeconds` of the policy's usage rules.
 * Only the agent has it: a create request (authz) and the controller's
 * dry-run evaluate without it, so usage checks find nothing there.
 */
export interface UsageFacts {
  points: UsageSeries;
}

/**
 * A container's readings, oldest first, read by index: `length` and `at(i)`
 * for 0 ≤ i < length (a plain array is one). The agent's usage monitor passes
 * a view over its ring of numbers instead of an array, so the usage rules it
 * evaluates every few seconds for every container read the few readings they
 * need without a copy of the whole window (BENCHMARKS.md agent-idle: the
 * copies were a third of an idle agent's allocation rate). The usage checks
 * read it only through `length` and `at` with non-negative indices; a view is
 * valid while the evaluation runs (the agent copies it before keeping it).
 */
export interface UsageSeries {
  readonly length: number;
  at(index: number): UsagePoint | undefined;
}

export interface EvaluationContext {
  /** Evaluation time (exemption expiry, scan age). */
  now: Date;
  /** Scan results by image digest ("sha256:…") or image id. */
  scans?: ReadonlyMap<string, ScanSummary>;
  /** Other containers on the same host. */
  neighbours?: readonly Neighbour[];
  /**
   * Image signature verdicts the caller established before evaluating (the
   * agent), keyed by signatureVerdictKey(requirement, image). Absent → the
   * `image-signature` check cannot decide (dry-run at the controller).
   */
  signatures?: ReadonlyMap<string, SignatureVerdict>;
  /**
   * `signatures` holds the verdicts hosts REPORTED (the controller's dry-run),
   * not a verification made for this evaluation: a missing verdict means "not
   * verified yet on any host" — no evidence; the caller reports it as undecided.
   */
  signaturesReported?: boolean;
  /**
   * Tag pins from the controller (keys from tagPinKey()): for a rule without
   * a scope, "repository:tag" (tagIdentity().key, e.g.
   * "docker.io/library/nginx:1.27") → the digest the fleet first ran it as;
   * for a rule with a scope, "<rule id> repository:tag" → the digest first
   * seen running on a container in that rule's scope. A digest is a manifest
   * digest, or an image id for images without a repo digest.
   * Read by `image-tag-pinned`; a tag with no pin is never denied.
   */
  tagPins?: ReadonlyMap<string, string>;
}

export interface Evidence {
  /** Where it was found: "privileged", "mounts[/var/run/docker.sock]", "env:DB_URL", "label:x", "history[3]". */
  location: string;
  /** What was found — never secret material. */
  detail: string;
  /** For secret rules: the detector that matched. */
  detector?: string;
}

export interface Finding {
  ruleId: string;
  severity: Severity;
  mode: Mode;
  action: RuleAction;
  /** One line a human can act on: what is wrong and how to fix or get an exemption. */
  message: string;
  evidence: Evidence[];
  /** Set when an exemption covered it (the finding is then informational only). */
  exemptedBy?: { who: string; why: string; until?: string };
}

/** Input a check sees. */
export interface CheckInput {
  container: ContainerFacts__Output;
  host: HostFacts__Output | undefined;
  ctx: EvaluationContext;
  /** The container's project (value of the project label), if any. */
  project: string | undefined;
  /** Live usage, when the caller has it (the agent's usage monitor); usage checks need it. */
  usage?: UsageFacts | undefined;
}

/**
 * One entry of the rule catalogue. `validate` checks the rule's parameters at
 * policy load (returning human-readable errors with the parameter path);
 * `check` returns evidence when the container breaks the rule, [] otherwise.
 */
export interface CheckDefinition<P = Record<string, unknown>> {
  type: string;
  /** One line for docs and `bulkhead policy` output. */
  summary: string;
  /**
   * JSON Schema (TypeBox) of the parameters besides `type`, built on the first
   * call: only validation needs it, and the agent never loads TypeBox.
   */
  params: () => unknown;
  /** Parameters used when a rule omits them. */
  defaults: P;
  check(input: CheckInput, params: P): Evidence[];
  /** Catalogue group, for docs: moves 1–2 (images), 3 (host), 6 (isolation). */
  group?: 'images' | 'host' | 'isolation';
  /**
   * Decided from live usage (CheckInput.usage) only: never at a create
   * request, and nothing without usage. The agent's usage monitor evaluates
   * these rules on every sample.
   */
  runtime?: boolean;
  /** How to fix a violation; the evaluator puts it in every finding's message. */
  remedy?: string;
  /**
   * Checks beyond the parameter schema (sizes, cross-field rules), run at
   * policy load on the parameters merged over `defaults`. Paths are relative to
   * the check, e.g. "maxMemory" or "paths[2]".
   */
  validate?(params: P): { path: string; message: string }[];
  /**
   * Optional precompilation: called once per policy with the merged parameters;
   * the returned function replaces `check` for every container (globs, sets and
   * regexes built once instead of per evaluation). `rule` is the rule being
   * compiled, for checks whose context data is kept per rule (tag pins of a
   * scoped `image-tag-pinned` rule).
   */
  compile?(params: P, rule?: Rule): (input: CheckInput) => Evidence[];
}

// ---- image signatures (check `image-signature`) ----------------------------
// The evaluator is synchronous and never talks to a registry: the agent
// verifies first (packages/agent/src/signatures/) and hands the verdicts in
// through EvaluationContext.signatures, keyed by signatureVerdictKey().

/** A trusted public key: SPKI PEM (ECDSA P-256/P-384, Ed25519 or RSA). */
export interface TrustedKey {
  /** Named in denials and reports ("prod-signer"). */
  name: string;
  pem: string;
}

/** A keyless signer: the Fulcio certificate's OIDC issuer and subject (SAN). */
export interface TrustedIdentity {
  issuer: string;
  /** Exact subject (e-mail or URI). One of subject / subjectGlob is required. */
  subject?: string;
  /**
   * The subject as a glob (`*`, `?`; glob.ts): matched without backtracking,
   * so a policy cannot stall the agent the way a regular expression could.
   */
  subjectGlob?: string;
}

/** What one rule asks of an image's signatures (merged from the rule's params). */
export interface SignatureRequirement {
  keys: TrustedKey[];
  identities: TrustedIdentity[];
  /** Sigstore trusted root (trusted_root.json) content, for keyless identities; read offline. */
  trustedRoot?: string;
  /** Distinct trusted signers whose valid signature is required. Default 1. */
  minSignatures: number;
  /** Annotations every counted signature's payload must carry with these exact values. */
  annotations: Record<string, string>;
}

/**
 * verified   — at least minSignatures trusted signers signed this exact digest for this repository
 * unsigned   — no signature found at all, or the image has no repo digest (built or loaded locally)
 * rejected   — signatures exist but none (or too few) are valid, trusted, for this digest and repo, with the annotations
 * unreachable — the registry could not be asked (down, slow, TLS, auth): the rule's failClosed decides
 */
export type SignatureStatus = 'verified' | 'unsigned' | 'rejected' | 'unreachable';

export interface SignatureVerdict {
  status: SignatureStatus;
  /** "registry.example.com/shop/web@sha256:…" that was verified ("" when the image has none). */
  repoDigest: string;
  /** Names of the trusted keys / identities (issuer + subject) whose valid signature counted. */
  signers: string[];
  /** One line for a denial: what was looked for and what was found (never credentials). */
  message: string;
  /** When it was decided (ms since epoch). */
  checkedAt: number;
  /**
   * `unreachable` at the reaction door for a container already running that
   * was never judged before: not a violation yet (a registry outage must not
   * stop running containers), judged again on the next sweep. Creates and
   * starts never defer.
   */
  defer?: boolean;
}
