// The agent's image-signature verifier: for a repo digest the engine will run
// and one rule's SignatureRequirement, ask the registry for cosign `.sig`
// attachments and Sigstore bundle referrers, and decide a SignatureVerdict.
// Owns the verdict cache (bounded, TTL by status), in-flight de-duplication,
// and the guarantee that nothing here throws: every failure becomes an
// 'unreachable' or 'rejected' verdict with a one-line reason.
import { createHash } from 'node:crypto';
import { BulkheadError, type SignatureRequirement, type SignatureVerdict } from '@bulkhead/shared';
import { checkSignatureLayers, prepareKeys, verifyCosignAttachment, type KeylessLayerCheck, type PreparedKey, type SourceResult } from './cosign';
import { BUNDLE_ARTIFACT_TYPE, COSIGN_SIG_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE } from './media-types';
import { loadDockerConfigFile, parseRepoDigest, RegistryClient, RegistryError, type DockerCredentialConfig, type ImageRef, type ReferrerDescriptor, type RegistryClientOptions } from './registry-client';
import { CredentialHelpers } from './credential-helpers';

export interface SignatureVerifierOptions extends RegistryClientOptions {
  /** Whole verification, all requests included. Default 1500 ms. */
  timeoutMs?: number;
  /** How long a 'verified' verdict is reused. Default 10 min. */
  verifiedTtlMs?: number;
  /** How long 'unsigned' and 'rejected' verdicts are reused. Default 60 s (a signature may be added). */
  negativeTtlMs?: number;
  /** How long an 'unreachable' verdict is reused. Default 10 s. */
  unreachableTtlMs?: number;
  /** Verdicts kept. Default 2048. */
  maxEntries?: number;
  /** Clock (tests). */
  now?: () => number;
  /** An existing client (shares TLS agents and tokens); otherwise one is made from these options. */
  client?: RegistryClient;
}

interface CacheEntry { verdict: SignatureVerdict; expires: number }

/** Requirements are long-lived objects of a compiled policy: hash each once. */
const requirementKeys = new WeakMap<SignatureRequirement, string>();

/**
 * Stable hash of a requirement (keys by PEM, identities, root, count, annotations), for cache
 * keys. Memoised per object: a requirement must not be mutated once used (build a new one).
 */
export function signatureRequirementKey(req: SignatureRequirement): string {
  let k = requirementKeys.get(req);
  if (k === undefined) {
    k = hashRequirement(req);
    requirementKeys.set(req, k);
  }
  return k;
}

function hashRequirement(req: SignatureRequirement): string {
  const canon = {
    keys: [...req.keys].map((k) => [k.name, k.pem.replace(/\s+/g, '')]).sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : a[1]! < b[1]! ? -1 : 1)),
    identities: [...req.identities].map((i) => [i.issuer, i.subject ?? '', i.subjectGlob ?? '']).map((a) => JSON.stringify(a)).sort(),
    trustedRoot: req.trustedRoot ? createHash('sha256').update(req.trustedRoot).digest('hex') : '',
    minSignatures: req.minSignatures,
    annotations: Object.keys(req.annotations).sort().map((k) => [k, req.annotations[k]]),
  };
  return createHash('sha256').update(JSON.stringify(canon)).digest('hex').slice(0, 32);
}

/** Verifications talking to registries at once (the rest wait, see inSlot). */
const MAX_CONCURRENT = 2;

export class SignatureVerifier {
  readonly client: RegistryClient;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<SignatureVerdict>>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly timeoutMs: number;
  private readonly ttl: { verified: number; negative: number; unreachable: number };
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(opts: SignatureVerifierOptions = {}) {
    this.client = opts.client ?? new RegistryClient(opts);
    this.timeoutMs = opts.timeoutMs ?? 1500;
    this.ttl = { verified: opts.verifiedTtlMs ?? 600_000, negative: opts.negativeTtlMs ?? 60_000, unreachable: opts.unreachableTtlMs ?? 10_000 };
    this.maxEntries = opts.maxEntries ?? 2048;
    this.now = opts.now ?? Date.now;
  }

  /** The cached verdict, if any and fresh (synchronous: the authz hot path). */
  peek(repoDigest: string, req: SignatureRequirement): SignatureVerdict | undefined {
    let key: string;
    try {
      key = `${repoDigest} ${signatureRequirementKey(req)}`;
    } catch {
      return undefined; // a broken requirement: verify() says why
    }
    const e = this.cache.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) { this.cache.delete(key); return undefined; }
    return e.verdict;
  }

  /** Verify (or answer from the cache). Never throws. `deadline` (ms since epoch) shortens the default timeout. */
  verify(repoDigest: string, req: SignatureRequirement, opts: { deadline?: number } = {}): Promise<SignatureVerdict> {
    let key: string;
    try {
      key = `${repoDigest} ${signatureRequirementKey(req)}`;
    } catch (e) {
      return Promise.resolve(this.verdict('rejected', repoDigest, [], `invalid signature requirement: ${e instanceof Error ? e.message : String(e)}`));
    }
    const hit = this.peek(repoDigest, req);
    if (hit) return Promise.resolve(hit);
    const running = this.inflight.get(key);
    if (running) return running;
    const deadline = Math.min(opts.deadline ?? Infinity, Date.now() + this.timeoutMs);
    const p = this.inSlot(deadline, () => this.decide(repoDigest, req, deadline))
      .catch((e: unknown) => this.verdict('unreachable', repoDigest, [], `signature check failed: ${e instanceof Error ? e.message : String(e)}`))
      .then((v) => {
        this.inflight.delete(key);
        this.remember(key, v);
        return v;
      });
    this.inflight.set(key, p);
    return p;
  }

  /**
   * At most MAX_CONCURRENT verifications talk to registries at once (each may
   * hold a few MB of manifests and bundles); the others wait for a slot until
   * their deadline, then count as unreachable.
   */
  private inSlot(deadline: number, work: () => Promise<SignatureVerdict>): Promise<SignatureVerdict> {
    const run = (): Promise<SignatureVerdict> => {
      this.running++;
      return work().finally(() => {
        this.running--;
        this.waiting.shift()?.();
      });
    };
    if (this.running < MAX_CONCURRENT) return run();
    return new Promise<void>((resolve, reject) => {
      const wait = Math.max(0, deadline - Date.now());
      const go = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`${MAX_CONCURRENT} verifications already running; no slot within the time budget`));
      }, wait);
      this.waiting.push(go);
    }).then(run);
  }

  /** Forget every cached verdict (a policy or key change does not need this: the requirement is in the key). */
  clear(): void {
    this.cache.clear();
  }

  close(): void {
    this.client.close();
  }

  private remember(key: string, v: SignatureVerdict): void {
    const ttl = v.status === 'verified' ? this.ttl.verified : v.status === 'unreachable' ? this.ttl.unreachable : this.ttl.negative;
    if (ttl <= 0) return;
    this.cache.delete(key);
    this.cache.set(key, { verdict: v, expires: this.now() + ttl });
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
  }

  private verdict(status: SignatureVerdict['status'], repoDigest: string, signers: string[], message: string): SignatureVerdict {
    return { status, repoDigest, signers, message, checkedAt: this.now() };
  }

  private async decide(repoDigest: string, req: SignatureRequirement, deadline: number): Promise<SignatureVerdict> {
    if (!repoDigest) return this.verdict('unsigned', '', [], 'image has no repo digest (built or loaded locally): it cannot carry a registry signature');
    let ref;
    try {
      ref = parseRepoDigest(repoDigest);
    } catch (e) {
      return this.verdict('rejected', repoDigest, [], e instanceof Error ? e.message : String(e));
    }
    const min = Math.max(1, Math.floor(req.minSignatures || 1));
    const { keys, errors } = prepareKeys(req.keys);
    const wanted = describeWanted(req);
    if (keys.length === 0 && req.identities.length === 0) {
      // Nothing could ever verify: say so instead of asking the registry.
      return this.verdict('rejected', repoDigest, [], `no usable trusted signer for ${repoDigest}${errors.length ? `: ${errors.join('; ')}` : ' (no keys or identities configured)'}`);
    }
    let results: SourceResult[];
    try {
      // The `.sig` tag and the referrers (API, else the tag-schema fallback) in parallel.
      const [attached, referrers] = await Promise.all([
        keys.length > 0 || req.identities.length > 0
          ? verifyCosignAttachment(this.client, ref, keys, req.annotations, deadline, keylessCheck(req))
          : Promise.resolve(emptyResult()),
        this.client.getReferrers(ref.registry, ref.repository, ref.digest, deadline).catch((e: unknown) => {
          if (e instanceof RegistryError && e.kind === 'invalid') return e; // garbage index: a reason, not an outage
          throw e;
        }),
      ]);
      if (referrers instanceof RegistryError) {
        results = [attached, { found: 1, signers: new Set(), problems: [`referrers index unreadable (${referrers.message})`] }];
      } else {
        results = [attached, ...await verifyReferrers(this.client, ref, referrers, keys, req, deadline)];
      }
    } catch (e) {
      const msg = e instanceof RegistryError ? e.message : `registry ${ref.registry} unreachable: ${e instanceof Error ? e.message : String(e)}`;
      return this.verdict('unreachable', repoDigest, [], msg);
    }
    const signers = new Set<string>();
    let found = 0;
    const problems: string[] = [...errors];
    for (const r of results) {
      found += r.found;
      for (const s of r.signers) signers.add(s);
      for (const p of r.problems) if (!problems.includes(p)) problems.push(p);
    }
    const names = [...signers].sort();
    if (names.length >= min) {
      return this.verdict('verified', repoDigest, names, `signed by ${names.join(', ')} for ${repoDigest}`);
    }
    if (found === 0) {
      return this.verdict('unsigned', repoDigest, [], `no signature by ${wanted} for ${repoDigest} (the registry has no signatures for this digest)`);
    }
    const why = problems.slice(0, 3).join('; ') + (problems.length > 3 ? `; +${problems.length - 3} more` : '');
    if (names.length > 0) {
      return this.verdict('rejected', repoDigest, names, `${names.length} of ${min} required signers (${names.join(', ')}) for ${repoDigest}${why ? ` (${why})` : ''}`);
    }
    return this.verdict('rejected', repoDigest, [],
      `no signature by ${wanted} for ${repoDigest}: ${found} signature${found === 1 ? '' : 's'} found, none valid for a trusted signer${why ? ` (${why})` : ''}`);
  }
}

let bundlesModule: typeof import('./bundles') | undefined;
/** bundles.ts (and with it @sigstore/*), loaded on first use. */
function bundles(): typeof import('./bundles') {
  return (bundlesModule ??= require('./bundles') as typeof import('./bundles'));
}

/**
 * Referrers looked at per image, fetched one after the other: a registry the
 * rule's scope covers may be hostile, and every referrer costs a manifest and
 * a bundle held in memory (the agent's whole budget is 75 MB).
 */
const MAX_REFERRERS = 4;
/** Descriptor artifact types that may be a signature: ours, and none/empty (go-containerregistry's fallback index records the config's media type). */
const MAYBE_SIGNATURE = new Set([BUNDLE_ARTIFACT_TYPE, COSIGN_SIG_ARTIFACT_TYPE, '', 'application/vnd.oci.empty.v1+json']);

/**
 * Each candidate referrer manifest is fetched (digest-checked), must name this
 * digest as its subject, and is classified by its own artifactType or layer
 * media types: a Sigstore bundle, or cosign simple-signing layers. Other
 * artifacts (SBOMs, provenance as other types) are not signatures and not counted.
 */
async function verifyReferrers(
  client: RegistryClient, ref: ImageRef, referrers: readonly ReferrerDescriptor[], keys: readonly PreparedKey[], req: SignatureRequirement, deadline: number,
): Promise<SourceResult[]> {
  const candidates = referrers.filter((r) => MAYBE_SIGNATURE.has(r.artifactType)).slice(0, MAX_REFERRERS);
  const out: SourceResult[] = [];
  for (const d of candidates) out.push(await verifyReferrer(client, ref, d, keys, req, deadline));
  return out;
}

async function verifyReferrer(
  client: RegistryClient, ref: ImageRef, d: ReferrerDescriptor, keys: readonly PreparedKey[], req: SignatureRequirement, deadline: number,
): Promise<SourceResult> {
  {
    let manifest: Record<string, unknown>;
    try {
      const f = await client.getManifest(ref.registry, ref.repository, d.digest, deadline);
      manifest = JSON.parse(f.body.toString('utf8')) as Record<string, unknown>;
      if (!manifest || typeof manifest !== 'object') throw new Error('not an object');
    } catch (e) {
      if (e instanceof RegistryError && e.kind === 'unreachable') throw e;
      return { found: 1, signers: new Set(), problems: [`referrer ${d.digest.slice(0, 19)}… unreadable (${e instanceof Error ? e.message : String(e)})`] };
    }
    const layers = Array.isArray(manifest.layers) ? (manifest.layers as Array<Record<string, unknown> | null>) : [];
    // cosign sets artifactType on bundles, only the config media type on oci-1-1 signatures.
    const type = typeof manifest.artifactType === 'string' ? manifest.artifactType : String((manifest.config as { mediaType?: unknown } | undefined)?.mediaType ?? '');
    const isBundle = type === BUNDLE_ARTIFACT_TYPE || layers.some((l) => l?.mediaType === BUNDLE_ARTIFACT_TYPE);
    const isCosign = type === COSIGN_SIG_ARTIFACT_TYPE || layers.some((l) => l?.mediaType === SIMPLE_SIGNING_MEDIA_TYPE);
    if (!isBundle && !isCosign) return emptyResult();
    if ((manifest.subject as { digest?: unknown } | undefined)?.digest !== ref.digest) {
      return { found: 1, signers: new Set(), problems: ['signature referrer for another digest'] };
    }
    // @sigstore/* is loaded the first time an image has a bundle (≈10 MB the idle agent keeps otherwise).
    if (isBundle) return bundles().checkBundleManifest(client, ref, manifest, keys, req, deadline);
    return keys.length > 0 || req.identities.length > 0
      ? checkSignatureLayers(client, ref, manifest, `signature referrer ${d.digest.slice(0, 19)}…`, keys, req.annotations, deadline, keylessCheck(req))
      : emptyResult();
  }
}

/** Keyless `.sig` layers are checked only for rules with identities (@sigstore/* loaded on the first one). */
function keylessCheck(req: SignatureRequirement): KeylessLayerCheck | undefined {
  if (req.identities.length === 0) return undefined;
  return (payload, sig, ann) => bundles().verifyCosignKeyless(payload, sig, ann, req);
}

function emptyResult(): SourceResult {
  return { found: 0, signers: new Set(), problems: [] };
}

function describeWanted(req: SignatureRequirement): string {
  const parts = [
    ...req.keys.map((k) => `key ${k.name}`),
    ...req.identities.map((i) => `identity ${i.issuer} ${i.subject ?? `~${i.subjectGlob ?? ''}`}`),
  ];
  if (parts.length === 0) return 'any trusted signer (none configured)';
  if (parts.length <= 3) return parts.join(' or ');
  return `${parts.slice(0, 3).join(', ')} or ${parts.length - 3} more`;
}

/**
 * The agent's verifier from its run options: loads the credentials file
 * (refusing one readable by other users, BK_ERR_CONFIG_INVALID) at start so a
 * bad file stops the agent instead of failing every later check.
 */
export async function createSignatureVerifier(opts: { registryCertsDir: string; registryAuthFile: string | undefined; timeoutMs: number; cacheTtlMs: number }): Promise<SignatureVerifier> {
  let config: DockerCredentialConfig | undefined;
  let credentialHelpers: CredentialHelpers | undefined;
  if (opts.registryAuthFile) {
    try {
      config = await loadDockerConfigFile(opts.registryAuthFile);
      if (config.credHelpers.size > 0 || config.credsStore !== undefined) {
        credentialHelpers = new CredentialHelpers({ credHelpers: config.credHelpers, credsStore: config.credsStore });
      }
    } catch (e) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `--registry-auth-file: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
  return new SignatureVerifier({
    certsDir: opts.registryCertsDir,
    ...(config ? { credentials: config.auths } : {}),
    ...(credentialHelpers ? { credentialHelpers } : {}),
    timeoutMs: opts.timeoutMs,
    verifiedTtlMs: opts.cacheTtlMs,
    negativeTtlMs: Math.min(opts.cacheTtlMs, 60_000),
    unreachableTtlMs: Math.min(opts.cacheTtlMs, 10_000),
  });
}
