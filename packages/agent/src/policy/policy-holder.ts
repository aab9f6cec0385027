// Owns the policy in force on this host: the last bundle the controller
// pushed (persisted, so the agent keeps enforcing while the controller is
// unreachable and across restarts), or a local policy file for standalone
// use, or nothing.
//
// Precedence: a controller bundle (received now or persisted earlier) wins
// over a local file; the local file applies only until the first bundle.
// With neither, NOTHING is enforced — a fresh agent that never heard from
// its controller must not block deploys by accident (fail-open, see
// docs/authz.md). A bad bundle never replaces a good one.
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BulkheadError, PolicyValidationError, parsePolicy, policyFromTrustedBundle, writeFileAtomic,
  type Logger, type Policy, type ScanSummary,
} from '@bulkhead/shared';

export const POLICY_BUNDLE_FILE = 'policy-bundle.json';
export const DEFAULT_PROJECT_LABEL = 'bulkhead.project';

/** What the controller sends (PolicyBundle); `version` may arrive as a string or Long-like. */
export interface PolicyBundleInput {
  version: number | string | { toString(): string };
  policyJson: string;
  scansJson: string;
  sha256: string;
  /** Tag pins (JSON object "repository:tag" → digest); "" or absent when the policy pins nothing. */
  tagPinsJson?: string;
}

export type PolicySource = 'none' | 'bundle' | 'local';

/** An immutable snapshot of what is in force; a new object on every change. */
export interface PolicyState {
  /** undefined = nothing is enforced. */
  policy: Policy | undefined;
  /** Scan summaries by image digest ("sha256:…"), for vulnerability rules. */
  scans: ReadonlyMap<string, ScanSummary>;
  /** Tag pins from the controller ("repository:tag" → digest), for `image-tag-pinned` rules; absent = none. */
  tagPins?: ReadonlyMap<string, string>;
  /** The controller's version; 0 for a local file or none. */
  version: number;
  source: PolicySource;
  /** Of the bundle (policyJson + scansJson); of the file's text for a local policy; "" for none. */
  sha256: string;
  /** The container label naming a container's project. */
  projectLabel: string;
}

export interface ApplyResult {
  applied: boolean;
  /** Why the bundle was refused (every validation error, one per line). */
  error?: string;
}

export interface PolicyHolderOptions {
  /** The agent's state dir; the bundle is kept in `<stateDir>/policy-bundle.json`. */
  stateDir: string;
  logger: Logger;
  /** A policy file (YAML/JSON) enforced until the first controller bundle. */
  localPolicyPath?: string | undefined;
}

export interface PolicyHolderEvents {
  /** The policy in force changed (a new bundle applied, a local file loaded). */
  change: [state: PolicyState];
}

const NONE: PolicyState = Object.freeze({
  policy: undefined, scans: new Map(), tagPins: new Map(), version: 0, source: 'none', sha256: '', projectLabel: DEFAULT_PROJECT_LABEL,
}) as PolicyState;

export class PolicyHolder extends EventEmitter<PolicyHolderEvents> {
  private st: PolicyState = NONE;
  private readonly file: string;

  private constructor(private readonly o: PolicyHolderOptions) {
    super();
    this.file = join(o.stateDir, POLICY_BUNDLE_FILE);
  }

  /**
   * Loads the persisted bundle (a missing, unreadable or corrupt file is
   * logged and ignored — the agent starts enforcing nothing rather than not
   * starting), then the local policy file when there was no bundle. A bad
   * local file throws BK_ERR_POLICY_INVALID: the operator asked for it
   * explicitly, so failing at start-up is the clear answer.
   */
  static open(o: PolicyHolderOptions): PolicyHolder {
    const h = new PolicyHolder(o);
    h.loadPersisted();
    if (h.st.source === 'none' && o.localPolicyPath) h.loadLocalPolicy(o.localPolicyPath);
    return h;
  }

  /** What is in force now. Cheap: a field read. */
  get state(): PolicyState {
    return this.st;
  }

  get version(): number {
    return this.st.version;
  }

  /**
   * Validates and installs a controller bundle, then persists it. A refused
   * bundle (sha256 mismatch, invalid JSON, invalid policy) leaves the policy
   * in force unchanged. Re-sending the bundle in force is a no-op.
   */
  apply(bundle: PolicyBundleInput): ApplyResult {
    const version = toVersion(bundle.version);
    if (version === undefined) return this.refuse(bundle, `version "${String(bundle.version)}" is not a non-negative integer`);
    const policyJson = typeof bundle.policyJson === 'string' ? bundle.policyJson : '';
    const scansJson = typeof bundle.scansJson === 'string' ? bundle.scansJson : '';
    const tagPinsJson = typeof bundle.tagPinsJson === 'string' ? bundle.tagPinsJson : '';
    if (this.st.source === 'bundle' && this.st.version === version && this.st.sha256 === bundle.sha256) return { applied: true };
    const parsed = parseBundle(policyJson, scansJson, bundle.sha256, tagPinsJson);
    if (!parsed.ok) return this.refuse(bundle, parsed.error);
    const previous = this.st;
    this.install({ ...parsed.value, version, source: 'bundle', sha256: bundle.sha256 });
    if (previous.source === 'bundle' && version < previous.version) {
      this.o.logger.warn({ version, previous: previous.version }, 'controller sent an older policy version than the one in force; applied it (the controller is authoritative)');
    }
    try {
      writeFileAtomic(this.file, JSON.stringify({ version, policyJson, scansJson, tagPinsJson, sha256: bundle.sha256, appliedAtMs: Date.now() }), 0o600);
    } catch (err) {
      // Enforcing it now matters more than surviving a restart with it.
      this.o.logger.error({ err, file: this.file }, 'could not persist the policy bundle; it is in force but will not survive a restart');
    }
    this.o.logger.info({ version, sha256: bundle.sha256, name: parsed.value.policy.metadata?.name, rules: parsed.value.policy.spec.rules.length }, 'policy bundle applied');
    return { applied: true };
  }

  /**
   * Loads a local policy file (standalone use). Ignored (with a warning)
   * when a controller bundle is already in force. Throws
   * BK_ERR_POLICY_INVALID (a PolicyValidationError with every error) or
   * BK_ERR_CONFIG_INVALID when the file cannot be read.
   */
  loadLocalPolicy(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (cause) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `policy file ${path}: cannot read it`, { cause });
    }
    const policy = parsePolicy(text, path);
    if (this.st.source === 'bundle') {
      this.o.logger.warn({ path, version: this.st.version }, 'local policy file ignored: a controller policy bundle is in force');
      return;
    }
    this.install({
      policy, scans: new Map(), tagPins: new Map(), version: 0, source: 'local',
      sha256: createHash('sha256').update(text).digest('hex'), projectLabel: projectLabelOf(policy),
    });
    this.o.logger.info({ path, name: policy.metadata?.name, rules: policy.spec.rules.length }, 'local policy file loaded');
  }

  private loadPersisted(): void {
    if (!existsSync(this.file)) return;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch (err) {
      this.o.logger.error({ err, file: this.file }, 'persisted policy bundle is unreadable; ignored (enforcing nothing until the controller sends one)');
      return;
    }
    const b = raw as Partial<PolicyBundleInput> | null;
    const version = toVersion(b?.version);
    if (!b || version === undefined || typeof b.policyJson !== 'string' || typeof b.scansJson !== 'string' || typeof b.sha256 !== 'string') {
      this.o.logger.error({ file: this.file }, 'persisted policy bundle is malformed; ignored (enforcing nothing until the controller sends one)');
      return;
    }
    const parsed = parseBundle(b.policyJson, b.scansJson, b.sha256, typeof b.tagPinsJson === 'string' ? b.tagPinsJson : '');
    if (!parsed.ok) {
      this.o.logger.error({ file: this.file, error: parsed.error }, 'persisted policy bundle is corrupt; ignored (enforcing nothing until the controller sends one)');
      return;
    }
    this.install({ ...parsed.value, version, source: 'bundle', sha256: b.sha256 });
    this.o.logger.info({ version, sha256: b.sha256 }, 'persisted policy bundle loaded');
  }

  private install(st: PolicyState): void {
    this.st = Object.freeze(st);
    try {
      this.emit('change', this.st);
    } catch (err) {
      this.o.logger.error({ err }, 'a policy change listener threw');
    }
  }

  private refuse(bundle: PolicyBundleInput, error: string): ApplyResult {
    this.o.logger.error({ version: String(bundle.version), error, inForce: this.st.version }, 'policy bundle refused; the policy in force is unchanged');
    return { applied: false, error };
  }
}

/**
 * sha256 hex of policy_json, scans_json and tag_pins_json in that order — what the controller
 * computes. An empty tag_pins_json adds nothing, so a bundle without pins hashes as before.
 */
export function bundleSha256(policyJson: string, scansJson: string, tagPinsJson = ''): string {
  return createHash('sha256').update(policyJson).update(scansJson).update(tagPinsJson).digest('hex');
}

/** Most tag pins taken from a bundle; the controller sends fewer (policy/policy-bundle.ts). */
const MAX_TAG_PINS = 20_000;

type Parsed = { ok: true; value: Pick<PolicyState, 'policy' | 'scans' | 'tagPins' | 'projectLabel'> & { policy: Policy } } | { ok: false; error: string };

function parseTagPins(json: string): Map<string, string> | string {
  const pins = new Map<string, string>();
  if (json.trim() === '') return pins;
  let obj: unknown;
  try {
    obj = JSON.parse(json);
  } catch (err) {
    return `tag_pins_json is not JSON: ${(err as Error).message}`;
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return 'tag_pins_json is not a JSON object';
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (pins.size >= MAX_TAG_PINS) break;
    if (typeof v === 'string' && v !== '') pins.set(k, v);
  }
  return pins;
}

function parseBundle(policyJson: string, scansJson: string, sha256: string, tagPinsJson: string): Parsed {
  if (bundleSha256(policyJson, scansJson, tagPinsJson) !== sha256) return { ok: false, error: 'sha256 mismatch: the bundle is corrupt or incomplete' };
  let policy: Policy;
  try {
    // Structure only, no TypeBox (memory): the controller validated the
    // policy in full before versioning it, and the sha256 above matched. A
    // local policy file (loadLocalPolicy) still gets full validation.
    policy = policyFromTrustedBundle(JSON.parse(policyJson));
  } catch (err) {
    return { ok: false, error: describePolicyError(err) };
  }
  const scans = new Map<string, ScanSummary>();
  if (scansJson.trim() !== '') {
    let list: unknown;
    try {
      list = JSON.parse(scansJson);
    } catch (err) {
      return { ok: false, error: `scans_json is not JSON: ${(err as Error).message}` };
    }
    if (!Array.isArray(list)) return { ok: false, error: 'scans_json is not a JSON array' };
    for (const s of list as ScanSummary[]) {
      if (s && typeof s.digest === 'string' && Array.isArray(s.vulnerabilities)) scans.set(s.digest, s);
    }
  }
  const tagPins = parseTagPins(tagPinsJson);
  if (typeof tagPins === 'string') return { ok: false, error: tagPins };
  return { ok: true, value: { policy, scans, tagPins, projectLabel: projectLabelOf(policy) } };
}

/** Every validation error on its own line ("path: message"), or the error's message. */
export function describePolicyError(err: unknown): string {
  if (err instanceof PolicyValidationError) {
    // Its message lists every error already (one per line); older forms did not.
    if (err.errors.every((e) => err.message.includes(e.message))) return err.message;
    const lines = err.errors.map((e) => `${e.path || '(root)'}${e.line ? ` (line ${e.line}:${e.column})` : ''}: ${e.message}`);
    return [err.message, ...lines].join('\n');
  }
  if (err instanceof SyntaxError) return `policy_json is not JSON: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

function projectLabelOf(policy: Policy): string {
  const l = policy.spec?.projectLabel;
  return typeof l === 'string' && l !== '' ? l : DEFAULT_PROJECT_LABEL;
}

function toVersion(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'number' ? v : Number(String(v));
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}
