// Owns "which signature verdicts does this evaluation need, and are they
// known yet": for every `image-signature` rule of a policy that applies to a
// container (in scope, not exempted), the verdict for the container's repo
// digest under that rule's requirement — from the verifier's cache when it is
// there (the create stays synchronous), else verified against the registry
// within a deadline. The evaluator then reads them from
// EvaluationContext.signatures (packages/shared/src/policy/checks/signatures.ts).
//
// Key files and trusted roots named by path are read here (async, cached for
// FILE_TTL_MS, so a rotated key takes effect within that time). A file that
// cannot be read makes an `unreachable` verdict naming it: the rule's
// failClosed then decides, as for a registry that cannot be asked.
import { readFile } from 'node:fs/promises';
import { applicableRules, signatureParamsOfRule, signatureRequirement, signatureVerdictKey, signedRepoDigest } from '@bulkhead/shared';
import type {
  ContainerFacts__Output, HostFacts__Output, ImageSignatureParamsValue, Logger, Policy, Rule, SignatureRequirement, SignatureVerdict,
} from '@bulkhead/shared';

/** What the gate needs of the verifier (SignatureVerifier satisfies it). */
export interface VerifierLike {
  /** The cached verdict, if any (synchronous: the hot path). */
  peek(repoDigest: string, req: SignatureRequirement): SignatureVerdict | undefined;
  /** Verifies against the registry; never rejects. `deadline`: wall clock, ms since the epoch. */
  verify(repoDigest: string, req: SignatureRequirement, opts?: { deadline?: number }): Promise<SignatureVerdict>;
}

export interface SignatureGateOptions {
  verifier: VerifierLike;
  logger: Logger;
  /** How long a key / trusted root file read is reused. Default 30 s. */
  fileTtlMs?: number;
  /** Deadline for a verification when the caller gives none (reaction, audit). Default 10 s. */
  defaultBudgetMs?: number;
  /** Wall clock for verdicts made here (file errors). Default Date.now. */
  now?: () => number;
  readText?: (path: string) => Promise<string>;
}

export type SignatureVerdicts = ReadonlyMap<string, SignatureVerdict>;

/**
 * admission — a create or start (authz): undecided means refused (failClosed);
 * reaction — a container already running (engine events, sweeps): an outage keeps the last verdict or defers.
 */
export type Door = 'admission' | 'reaction';

const LAST_DECISIVE_MAX = 4096;

const FILE_MAX_BYTES = 1024 * 1024;

interface FileEntry {
  at: number;
  text?: string;
  error?: string;
  p?: Promise<void>;
}

interface Needed {
  key: string;
  repoDigest: string;
  params: ImageSignatureParamsValue;
}

const EMPTY: SignatureVerdicts = new Map();

export class SignatureGate {
  private readonly files = new Map<string, FileEntry>();
  private readonly fileTtlMs: number;
  private readonly budgetMs: number;
  private readonly now: () => number;
  private readonly readText: (path: string) => Promise<string>;
  /** Verdict key → the last verified / unsigned / rejected verdict (bounded): what the reaction door keeps during an outage. */
  private readonly lastDecisive = new Map<string, SignatureVerdict>();
  /** Keys of lastDecisive not reported to the controller yet (takeReport). */
  private readonly unreported = new Set<string>();
  /** Per parameters object: the requirement last built and the file contents it was built from. */
  private readonly requirements = new WeakMap<ImageSignatureParamsValue, { texts: string[]; req: SignatureRequirement }>();
  /** Per policy object: its image-signature rules (none → the gate costs nothing). */
  private readonly rulesOf = new WeakMap<Policy, readonly Rule[]>();

  constructor(private readonly o: SignatureGateOptions) {
    this.fileTtlMs = o.fileTtlMs ?? 30_000;
    this.budgetMs = o.defaultBudgetMs ?? 10_000;
    this.now = o.now ?? Date.now;
    this.readText = o.readText ?? readBounded;
  }

  /** Whether the policy has any image-signature rule (else never call collect). */
  relevant(policy: Policy): boolean {
    return this.signatureRules(policy).length > 0;
  }

  /**
   * The verdicts `policy` needs for `facts`: a map at once when every one is
   * cached (or none is needed), else a promise that settles by `deadline`
   * (performance.now() ms). Never rejects: failures are verdicts.
   */
  collect(
    policy: Policy, facts: ContainerFacts__Output, host: HostFacts__Output | undefined, now: Date, deadline?: number, door: Door = 'admission',
  ): SignatureVerdicts | Promise<SignatureVerdicts> {
    if (this.signatureRules(policy).length === 0) return EMPTY;
    const needed = this.needed(policy, facts, host, now);
    if (needed.length === 0) return EMPTY;
    const out = new Map<string, SignatureVerdict>();
    let missing: Needed[] | undefined;
    for (const n of needed) {
      if (out.has(n.key)) continue;
      const req = this.requirementNow(n.params);
      const v = req === undefined ? undefined : typeof req === 'string' ? this.fileVerdict(n.repoDigest, req) : this.o.verifier.peek(n.repoDigest, req);
      if (v !== undefined) out.set(n.key, this.atDoor(n.key, v, door));
      else (missing ??= []).push(n);
    }
    if (!missing) return out;
    const until = deadline ?? performance.now() + this.budgetMs;
    return Promise.all(missing.map(async (n) => {
      const v = await this.verifyOne(n, until);
      out.set(n.key, this.atDoor(n.key, v, door));
    })).then(() => out);
  }

  /** Like collect, always as a promise (reaction, audit). */
  async resolve(
    policy: Policy, facts: ContainerFacts__Output, host: HostFacts__Output | undefined, now: Date, deadline?: number, door: Door = 'admission',
  ): Promise<SignatureVerdicts> {
    return this.collect(policy, facts, host, now, deadline, door);
  }

  /**
   * Remembers decisive verdicts; at the reaction door an `unreachable` one
   * is replaced by the last decisive verdict for the same key (the registry
   * said so before; it cannot be asked now), or deferred when there is none:
   * a registry outage must never stop containers that run.
   */
  private atDoor(key: string, v: SignatureVerdict, door: Door): SignatureVerdict {
    if (v.status !== 'unreachable') {
      const prev = this.lastDecisive.get(key);
      this.lastDecisive.delete(key);
      this.lastDecisive.set(key, v);
      if (prev === undefined || prev.checkedAt !== v.checkedAt || prev.status !== v.status) this.unreported.add(key);
      while (this.lastDecisive.size > LAST_DECISIVE_MAX) {
        const oldest = this.lastDecisive.keys().next().value!;
        this.lastDecisive.delete(oldest);
        this.unreported.delete(oldest);
      }
      return v;
    }
    if (door === 'admission') return v;
    const last = this.lastDecisive.get(key);
    if (last !== undefined) return last;
    return { ...v, defer: true };
  }

  /**
   * Up to `max` decisive verdicts not reported to the controller yet, oldest first, as
   * [verdict key, verdict]; they count as reported once taken (give them back with
   * `unreport` when the send failed).
   */
  takeReport(max: number): Array<[string, SignatureVerdict]> {
    const out: Array<[string, SignatureVerdict]> = [];
    for (const key of this.unreported) {
      if (out.length >= max) break;
      this.unreported.delete(key);
      const v = this.lastDecisive.get(key);
      if (v !== undefined) out.push([key, v]);
    }
    return out;
  }

  /** These were not delivered: report them again. */
  unreport(keys: readonly string[]): void {
    for (const k of keys) if (this.lastDecisive.has(k)) this.unreported.add(k);
  }

  /** Everything decided is to be reported again (a new stream: the controller may have restarted). */
  resync(): void {
    for (const k of this.lastDecisive.keys()) this.unreported.add(k);
  }

  private signatureRules(policy: Policy): readonly Rule[] {
    let rules = this.rulesOf.get(policy);
    if (rules === undefined) {
      rules = policy.spec.rules.filter((r) => r.check.type === 'image-signature');
      this.rulesOf.set(policy, rules);
    }
    return rules;
  }

  private needed(policy: Policy, facts: ContainerFacts__Output, host: HostFacts__Output | undefined, now: Date): Needed[] {
    const repoDigest = signedRepoDigest(facts);
    if (repoDigest === '') return []; // the check itself reports "no repo digest": nothing to verify
    const out: Needed[] = [];
    for (const r of applicableRules(policy, host ? { container: facts, host } : { container: facts }, now)) {
      if (r.check.type !== 'image-signature') continue;
      const params = this.paramsOfRule(r);
      out.push({ key: signatureVerdictKey(params, repoDigest), repoDigest, params });
    }
    return out;
  }

  /** The rule's parameters over the check's defaults (the same object per rule: keys and requirements computed once). */
  private paramsOfRule(r: Rule): ImageSignatureParamsValue {
    return signatureParamsOfRule(r);
  }

  private async verifyOne(n: Needed, deadline: number): Promise<SignatureVerdict> {
    try {
      await this.readFiles(n.params);
      const req = this.requirementNow(n.params);
      if (req === undefined) return this.verdict(n.repoDigest, 'unreachable', 'the key files could not be read in time');
      if (typeof req === 'string') return this.fileVerdict(n.repoDigest, req);
      // The gate's deadlines are on performance.now()'s clock (the plugin's receipt time); the verifier's on the wall clock.
      return await this.o.verifier.verify(n.repoDigest, req, { deadline: Date.now() + (deadline - performance.now()) });
    } catch (err) {
      this.o.logger.error({ err, repoDigest: n.repoDigest }, 'signatures: verification failed unexpectedly');
      return this.verdict(n.repoDigest, 'unreachable', `verification failed: ${(err as Error).message}`);
    }
  }

  /**
   * The requirement with its files read: undefined while a file is not read
   * (or stale), a string naming a file that cannot be read.
   */
  private requirementNow(params: ImageSignatureParamsValue): SignatureRequirement | string | undefined {
    const keyFiles = new Map<string, string>();
    const t = this.now();
    for (const path of filesOf(params)) {
      const e = this.files.get(path);
      if (e === undefined || e.p !== undefined || t - e.at > this.fileTtlMs) return undefined;
      if (e.error !== undefined) return e.error;
      keyFiles.set(path, e.text!);
    }
    // The same requirement object while the files read the same: the verifier
    // memoises its cache key per object, so a cached verdict costs no hashing.
    const texts = [...keyFiles.values()];
    const cached = this.requirements.get(params);
    if (cached !== undefined && cached.texts.length === texts.length && cached.texts.every((x, i) => x === texts[i])) return cached.req;
    const trustedRoot = params.trustedRootFile !== undefined ? keyFiles.get(params.trustedRootFile) : undefined;
    const req = signatureRequirement(params, { keyFiles, ...(trustedRoot !== undefined ? { trustedRoot } : {}) });
    this.requirements.set(params, { texts, req });
    return req;
  }

  private async readFiles(params: ImageSignatureParamsValue): Promise<void> {
    const t = this.now();
    const pending: Promise<void>[] = [];
    for (const path of filesOf(params)) {
      let e = this.files.get(path);
      if (e?.p) {
        pending.push(e.p);
        continue;
      }
      if (e !== undefined && t - e.at <= this.fileTtlMs) continue;
      const entry: FileEntry = e ?? { at: 0 };
      entry.p = this.readText(path).then(
        (text) => {
          entry.text = text;
          delete entry.error;
        },
        (err: NodeJS.ErrnoException) => {
          entry.error = `${path} cannot be read: ${err.code ?? err.message}`;
          delete entry.text;
          this.o.logger.warn({ path, code: err.code }, 'signatures: a key or trusted root file of the policy cannot be read');
        },
      ).finally(() => {
        entry.at = this.now();
        delete entry.p;
      });
      this.files.set(path, entry);
      pending.push(entry.p);
    }
    await Promise.all(pending);
  }

  private fileVerdict(repoDigest: string, why: string): SignatureVerdict {
    return this.verdict(repoDigest, 'unreachable', why);
  }

  private verdict(repoDigest: string, status: SignatureVerdict['status'], message: string): SignatureVerdict {
    return { status, repoDigest, signers: [], message, checkedAt: this.now() };
  }
}

function filesOf(params: ImageSignatureParamsValue): string[] {
  const out: string[] = [];
  for (const k of params.keys ?? []) if (k.file !== undefined) out.push(k.file);
  if (params.trustedRootFile !== undefined) out.push(params.trustedRootFile);
  return out;
}

async function readBounded(path: string): Promise<string> {
  const buf = await readFile(path);
  if (buf.length > FILE_MAX_BYTES) throw Object.assign(new Error(`larger than ${FILE_MAX_BYTES} bytes`), { code: 'EFBIG' });
  return buf.toString('utf8');
}
