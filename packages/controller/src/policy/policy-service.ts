// Owns the policy in force at the controller: installing the default policy
// on first start, validating and versioning new ones (a rejected document
// never replaces the one in force), the bundle pushed to agents and its
// subscribers, dry-runs against the live fleet, and scanner report uploads.
import type { ReportedVerdicts } from '../signatures/reported-verdicts';
import { createHash } from 'node:crypto';
import {
  BulkheadError, DEFAULT_POLICY_YAML, PolicyValidationError, isBulkheadError, parsePolicy, parseTrivyReport, policyFromJson, scanKeys,
  type Logger, type Policy, type PolicyErrorDetail, type ScanSummary,
} from '@bulkhead/shared';
import type { PolicyVersionRecord, PolicyVersionSummary, ScanRecord, Store } from '../store/store';
import { buildBundle, BUNDLE_OVERHEAD_BYTES, DEFAULT_SCANS_BUDGET_BYTES, MAX_POLICY_BUNDLE_BYTES, type PolicyBundleMessage } from './policy-bundle';
import { dryRunPolicy, neededVerdictKeys, type DryRunResult, type FleetMember } from './dry-run';
import { MAX_TAG_PINS, MAX_TAG_ROWS_READ, pinFilter, pinsTags, scopedPinRules, selectPins } from '../images/tag-pins';

export interface PolicyServiceOptions {
  store: Store;
  logger: Logger;
  /** Signature verdicts agents reported, for dry-runs of image-signature rules; absent = none (every such container undecided). */
  signatureVerdicts?: ReportedVerdicts;
  /** Default: () => new Date(). */
  now?: () => Date;
  /** Bytes of scan summaries per bundle (newest first). Default 3 MiB. */
  scansBudgetBytes?: number;
  /** Largest bundle sent to agents: their gRPC receive limit. Default MAX_POLICY_BUNDLE_BYTES (8 MiB). */
  maxBundleBytes?: number;
  /**
   * Controller replicas: told when this process changed the bundle (a new version, a scan, new
   * tag pins), so the other replicas on the database reload() and push it to their agents.
   * Not told for a change reload() found.
   */
  announce?: (bundle: PolicyBundleMessage) => void;
}

export interface ApplyOptions {
  /** Shown in validation errors. Default "policy.yaml". */
  filename?: string;
  /** API key id of whoever applied it. */
  actor: string;
  comment?: string;
}

export type ApplyResult =
  | { ok: true; policy: PolicyVersionRecord }
  | { ok: false; errors: PolicyErrorDetail[] };

export type DryRunOutcome =
  | { ok: true; result: DryRunResult }
  | { ok: false; errors: PolicyErrorDetail[] };

/** The policy in force, parsed. */
export interface CurrentPolicy {
  record: PolicyVersionRecord;
  policy: Policy;
}

export type BundleListener = (bundle: PolicyBundleMessage) => void;

/** Who installed the default policy. */
export const INIT_ACTOR = 'init';
export const DEFAULT_POLICY_FILENAME = 'default-policy.yaml';

export class PolicyService {
  private readonly listeners = new Set<BundleListener>();
  private readonly now: () => Date;
  private readonly scansBudgetBytes: number;
  private readonly maxBundleBytes: number;
  /** Applies and scan uploads run one at a time, so versions and bundles change in order. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: PolicyServiceOptions,
    private currentPolicy: CurrentPolicy,
    private currentBundle: PolicyBundleMessage,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.scansBudgetBytes = opts.scansBudgetBytes ?? DEFAULT_SCANS_BUDGET_BYTES;
    this.maxBundleBytes = opts.maxBundleBytes ?? MAX_POLICY_BUNDLE_BYTES;
  }

  /** Loads the latest policy, installing the default one as version 1 on an empty store. */
  static async create(opts: PolicyServiceOptions): Promise<PolicyService> {
    const now = opts.now ?? (() => new Date());
    let record = await opts.store.getPolicy();
    if (!record) {
      const policy = parsePolicy(DEFAULT_POLICY_YAML, DEFAULT_POLICY_FILENAME);
      const enforcing = policy.spec.rules.filter((r) => r.mode !== 'monitor').map((r) => r.id);
      if (enforcing.length > 0) {
        // A fresh install must show what it would do before doing anything.
        throw new BulkheadError('BK_ERR_INTERNAL', `the default policy has rules in enforce mode: ${enforcing.join(', ')}`);
      }
      // onlyIfNone: another replica starting at the same time may have installed it first; then that one is used.
      record = await opts.store.insertPolicyVersion(toRecordInput(policy, DEFAULT_POLICY_YAML, INIT_ACTOR, 'default policy (all rules monitor)', now()), { onlyIfNone: true });
      opts.logger.info({ version: record.version, rules: policy.spec.rules.length }, 'installed the default policy (monitor mode)');
    }
    const current = { record, policy: loadStored(record, opts.logger) };
    const scans = await opts.store.listScans();
    const pins = await tagPinsFor(opts.store, current.policy);
    const built = buildBundle(record, scans, opts.scansBudgetBytes ?? DEFAULT_SCANS_BUDGET_BYTES, opts.maxBundleBytes ?? MAX_POLICY_BUNDLE_BYTES, pins);
    warnTruncated(opts.logger, built);
    return new PolicyService(opts, current, built.bundle);
  }

  /** The policy in force. */
  current(): CurrentPolicy {
    return this.currentPolicy;
  }

  /** The bundle agents should hold right now. */
  bundle(): PolicyBundleMessage {
    return this.currentBundle;
  }

  /** Called with every new bundle (new policy version or new scans). Returns an unsubscribe function. */
  subscribe(listener: BundleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Tag tracking saw a digest for the first time: when the policy pins tags, the bundle is
   * rebuilt with the pins now known and pushed if it changed.
   */
  refreshTagPins(): Promise<void> {
    if (!pinsTags(this.currentPolicy.policy)) return Promise.resolve();
    return this.serialized(() => this.rebuildBundle());
  }

  /**
   * Another replica on this database changed the policy, the scans or the tag pins: the
   * latest version is loaded and the bundle rebuilt; subscribers (the agent link) get it
   * if it differs from the one held.
   */
  reload(): Promise<void> {
    return this.serialized(async () => {
      const record = await this.opts.store.getPolicy();
      if (record && record.version !== this.currentPolicy.record.version) {
        this.currentPolicy = { record, policy: loadStored(record, this.opts.logger) };
        this.opts.logger.info({ version: record.version, name: record.name }, 'policy version applied on another replica loaded');
      }
      await this.rebuildBundle(false);
    });
  }

  /** A stored version (latest when omitted). */
  get(version?: number): Promise<PolicyVersionRecord | undefined> {
    return this.opts.store.getPolicy(version);
  }

  listVersions(): Promise<PolicyVersionSummary[]> {
    return this.opts.store.listPolicyVersions();
  }

  /**
   * Validates `text` (YAML or JSON) and, if valid, stores it as the next
   * version and pushes it to agents. An invalid document changes nothing and
   * comes back with every error found.
   */
  apply(text: string, o: ApplyOptions): Promise<ApplyResult> {
    return this.serialized(async () => {
      const parsed = tryParse(text, o.filename ?? 'policy.yaml');
      if (!parsed.ok) {
        this.opts.logger.info({ actor: o.actor, errors: parsed.errors.length }, 'policy rejected');
        return parsed;
      }
      const input = toRecordInput(parsed.policy, text, o.actor, o.comment ?? '', this.now());
      await this.checkBundleSize(input.json);
      const record = await this.opts.store.insertPolicyVersion(input);
      this.currentPolicy = { record, policy: parsed.policy };
      this.opts.logger.info({ version: record.version, name: record.name, actor: o.actor, sha256: record.sha256 }, 'policy applied');
      await this.rebuildBundle();
      return { ok: true, policy: record };
    });
  }

  /**
   * Evaluates a candidate policy against every live container of every
   * agent (offline agents on their last inventory) and reports what it would
   * hit. Reads only.
   */
  async dryRun(text: string, o: { filename?: string } = {}): Promise<DryRunOutcome> {
    const parsed = tryParse(text, o.filename ?? 'policy.yaml');
    if (!parsed.ok) return parsed;
    // The same answer PUT would give: a policy agents could not receive is no candidate.
    await this.checkBundleSize(JSON.stringify(parsed.policy));
    const [agents, containers, scans, pins] = await Promise.all([
      this.opts.store.listAgents(),
      this.opts.store.listContainers({}),
      this.opts.store.listScans(),
      tagPinsFor(this.opts.store, parsed.policy),
    ]);
    const byAgent = new Map<string, FleetMember>(
      agents
        .filter((a) => a.status !== 'revoked')
        .map((a) => [a.id, { agentId: a.id, hostname: a.hostname, status: a.status, host: a.host ?? undefined, containers: [] }]),
    );
    for (const c of containers) byAgent.get(c.agentId)?.containers.push(c.facts);
    // The pins agents would get with this policy: live containers running a tag as another image than its pin are hits.
    // Image-signature verdicts agents reported, from the store: the ones this dry-run needs.
    const fleet = [...byAgent.values()];
    const now = this.now();
    const book = this.opts.signatureVerdicts;
    const sha = (key: string) => createHash('sha256').update(key).digest('hex');
    const reported = book ? await book.lookupMany([...neededVerdictKeys(parsed.policy, fleet, now)].map(sha)) : undefined;
    const result = dryRunPolicy(parsed.policy, fleet, {
      now, scans: scanMap(scans), ...(pins.length > 0 ? { tagPins: new Map(pins) } : {}),
      ...(reported ? { signatureVerdict: (key: string) => reported.get(sha(key)) } : {}),
    });
    return { ok: true, result };
  }

  /**
   * Stores a scanner report (Trivy JSON) keyed by image digest, replacing an
   * earlier one for the same digest, and pushes a bundle carrying it.
   */
  uploadScan(report: unknown): Promise<ScanRecord> {
    return this.serialized(async () => {
      let summary: ScanSummary;
      const uploadedAt = this.now();
      try {
        summary = parseTrivyReport(report, { receivedAt: uploadedAt });
      } catch (e) {
        if (isBulkheadError(e)) throw e;
        throw new BulkheadError('BK_ERR_BAD_REQUEST', `not a Trivy JSON report: ${(e as Error).message}`, { cause: e });
      }
      const scannedAt = new Date(summary.scannedAt);
      const record: ScanRecord = {
        digest: summary.digest,
        scanner: summary.scanner,
        scannedAt: Number.isNaN(scannedAt.getTime()) ? uploadedAt : scannedAt,
        summary,
        uploadedAt,
      };
      await this.opts.store.upsertScan(record);
      this.opts.logger.info({ digest: record.digest, scanner: record.scanner, vulnerabilities: summary.vulnerabilities.length }, 'scan uploaded');
      await this.rebuildBundle();
      return record;
    });
  }

  getScan(digest: string): Promise<ScanRecord | undefined> {
    return this.opts.store.getScan(digest);
  }

  /**
   * Refuses a policy whose bundle, with the scan summaries the budget carries, would be larger
   * than agents receive: applied, it would reach no agent (or push scans out of the bundle).
   */
  private async checkBundleSize(policyJson: string): Promise<void> {
    const built = buildBundle({ version: 0, json: policyJson }, await this.opts.store.listScans(), this.scansBudgetBytes, Number.POSITIVE_INFINITY);
    if (built.bytes <= this.maxBundleBytes) return;
    const policyBytes = Buffer.byteLength(policyJson);
    throw new BulkheadError(
      'BK_ERR_BUNDLE_TOO_LARGE',
      `the policy bundle would be ${built.bytes} bytes (policy ${policyBytes} bytes as JSON, scan summaries ${built.bytes - policyBytes - BUNDLE_OVERHEAD_BYTES} bytes); ` +
        `agents receive at most ${this.maxBundleBytes} bytes, so the policy may be at most ${Math.max(0, this.maxBundleBytes - (built.bytes - policyBytes))} bytes as JSON`,
    );
  }

  private async rebuildBundle(announce = true): Promise<void> {
    const pins = await tagPinsFor(this.opts.store, this.currentPolicy.policy);
    const built = buildBundle(this.currentPolicy.record, await this.opts.store.listScans(), this.scansBudgetBytes, this.maxBundleBytes, pins);
    warnTruncated(this.opts.logger, built);
    if (built.bundle.sha256 === this.currentBundle.sha256 && built.bundle.version === this.currentBundle.version) return;
    this.currentBundle = built.bundle;
    if (announce) {
      try {
        this.opts.announce?.(built.bundle);
      } catch (err) {
        this.opts.logger.error({ err }, 'announcing the new policy bundle to the other replicas failed');
      }
    }
    for (const l of [...this.listeners]) {
      try {
        l(built.bundle);
      } catch (err) {
        this.opts.logger.error({ err }, 'policy bundle listener failed');
      }
    }
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function tryParse(text: string, filename: string): { ok: true; policy: Policy } | { ok: false; errors: PolicyErrorDetail[] } {
  try {
    return { ok: true, policy: parsePolicy(text, filename) };
  } catch (e) {
    if (e instanceof PolicyValidationError) return { ok: false, errors: e.errors };
    throw e;
  }
}

function toRecordInput(policy: Policy, source: string, actor: string, comment: string, at: Date): Omit<PolicyVersionRecord, 'version'> {
  const json = JSON.stringify(policy);
  return {
    name: policy.metadata.name,
    yaml: source,
    json,
    sha256: createHash('sha256').update(json).digest('hex'),
    createdAt: at,
    createdBy: actor,
    comment,
  };
}

/**
 * A stored version was valid when applied; if a newer controller's schema
 * refuses it, it stays in force as stored (agents validate on their side too)
 * and the operator is told to apply a fixed one.
 */
function loadStored(record: PolicyVersionRecord, logger: Logger): Policy {
  const raw: unknown = JSON.parse(record.json);
  try {
    return policyFromJson(raw);
  } catch (err) {
    logger.error({ err, version: record.version }, 'the stored policy no longer validates; it stays in force until a valid one is applied');
    return raw as Policy;
  }
}

/** Every scan under each of its identities (repo digests, image id); the newest wins a shared key. */
function scanMap(scans: readonly ScanRecord[]): Map<string, ScanSummary> {
  const m = new Map<string, ScanSummary>();
  for (const s of scans) for (const k of scanKeys(s.summary)) if (!m.has(k)) m.set(k, s.summary);
  return m;
}

function warnTruncated(logger: Logger, built: { scansIncluded: number; scansTotal: number; pinsIncluded: number; pinsTotal: number }): void {
  if (built.scansIncluded < built.scansTotal) {
    logger.warn({ included: built.scansIncluded, total: built.scansTotal }, 'policy bundle carries only the newest scans (size budget)');
  }
  if (built.pinsIncluded < built.pinsTotal) {
    logger.warn({ included: built.pinsIncluded, total: built.pinsTotal }, 'policy bundle carries only the newest tag pins (size budget); older pinned tags are not enforced');
  }
}

/** The tag pins the policy's image-tag-pinned rules need, newest tags first; none without such a rule. */
async function tagPinsFor(store: Store, policy: Policy): Promise<Array<[string, string]>> {
  if (!store.imageTags || !pinsTags(policy)) return [];
  const fleet = pinFilter(policy) ? await store.imageTags.listPins(MAX_TAG_ROWS_READ) : [];
  const scoped = await store.imageTags.listScopedPins(scopedPinRules(policy).map((r) => ({ ruleId: r.rule.id, scopeKey: r.scopeKey })), MAX_TAG_PINS);
  return selectPins(policy, fleet, scoped).slice(0, MAX_TAG_PINS);
}
