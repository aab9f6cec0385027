// A small OCI distribution client for reading image signatures: manifests,
// blobs, tag lists and referrers over HTTPS, every body verified against its
// digest and capped in size, every request bounded by a per-request timeout
// and the caller's overall deadline.
//
// Why hand-written and not a library: the agent needs only GETs of a handful
// of endpoints, but with hard guarantees the available npm clients do not give
// together (digest verification of every manifest/blob, byte caps enforced
// while streaming, a deadline that also covers the token round trip, Docker's
// certs.d CA layout and config.json credentials, credentials never in an error
// message). Node's own https module is enough; undici is not a dependency of
// the agent and would add nothing here.
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import tls from 'node:tls';
import { CredentialHelperError, type CredentialHelpers } from './credential-helpers';

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export const DEFAULT_CERTS_DIR = '/etc/docker/certs.d';

/** Why a registry request failed. 'unreachable' covers network, TLS, timeouts, 5xx and refused credentials. */
export type RegistryErrorKind = 'unreachable' | 'not-found' | 'invalid';

export class RegistryError extends Error {
  constructor(readonly kind: RegistryErrorKind, message: string, readonly status?: number) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** One registry credential (from config.json). Never logged or put in messages. */
export interface RegistryCredential {
  username?: string;
  password?: string;
  identityToken?: string;
}

export interface RegistryClientOptions {
  /** Docker's per-registry CA layout: DIR/HOST[:PORT]/*.crt (+ client.cert/client.key). Default /etc/docker/certs.d. */
  certsDir?: string;
  /** Credentials by registry host ("127.0.0.1:5000", "docker.io"); see loadDockerAuthFile. */
  credentials?: ReadonlyMap<string, RegistryCredential>;
  /** Docker credential helpers (config.json credHelpers / credsStore): asked before `credentials`, as Docker does. */
  credentialHelpers?: CredentialHelpers;
  /** Per request (connect to last byte). Default 5 s. */
  requestTimeoutMs?: number;
  /** Cap on any manifest, index or tag list body. Default 4 MiB. */
  maxManifestBytes?: number;
  /** Cap on any blob body. Default 4 MiB (signature payloads and bundles are small). */
  maxBlobBytes?: number;
  /** Extra CA certificates (PEM) trusted for every registry, in addition to the system store. */
  extraCa?: string[];
  /** Called for each HTTP request sent (tests count round trips). Never receives credentials. */
  onRequest?: (method: string, url: string) => void;
}

export interface Fetched {
  body: Buffer;
  contentType: string;
  /** sha256:… of the body. */
  digest: string;
}

/** A parsed image reference "registry/repo@sha256:…". */
export interface ImageRef {
  /** Registry host as written (docker.io for Docker Hub). */
  registry: string;
  /** Repository path, with library/ for official Hub images. */
  repository: string;
  digest: string;
}

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** Parse "host[:port]/path@sha256:…" (Docker's normalisation: no host → docker.io, one component → library/). */
export function parseRepoDigest(repoDigest: string): ImageRef {
  const at = repoDigest.lastIndexOf('@');
  if (at <= 0) throw new RegistryError('invalid', `"${repoDigest}" is not a repo digest (name@sha256:…)`);
  const name = repoDigest.slice(0, at);
  const digest = repoDigest.slice(at + 1);
  if (!DIGEST_RE.test(digest)) throw new RegistryError('invalid', `"${repoDigest}" has no sha256 digest`);
  const { registry, repository } = normalizeName(name);
  return { registry, repository, digest };
}

/** Docker reference normalisation of a repository name (tag stripped). */
export function normalizeName(name: string): { registry: string; repository: string } {
  let n = name;
  const lastSlash = n.lastIndexOf('/');
  const colon = n.lastIndexOf(':');
  if (colon > lastSlash) n = n.slice(0, colon); // a tag
  const slash = n.indexOf('/');
  const first = slash < 0 ? '' : n.slice(0, slash);
  let registry: string;
  let repository: string;
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    repository = n.slice(slash + 1);
  } else {
    registry = 'docker.io';
    repository = n;
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = 'docker.io';
  if (registry === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(repository)) {
    throw new RegistryError('invalid', `"${name}" is not a valid repository name`);
  }
  return { registry, repository };
}

/** The host the API is served from (Docker Hub's API host differs from its name). */
function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

interface CachedToken { token: string; expires: number }

interface RequestOpts {
  accept?: string;
  maxBytes: number;
  deadline: number;
  /** Scope for the Bearer flow ("repository:shop/web:pull"). */
  scope: string;
}

export class RegistryClient {
  private readonly certsDir: string;
  private readonly requestTimeoutMs: number;
  private readonly maxManifestBytes: number;
  private readonly maxBlobBytes: number;
  private readonly agents = new Map<string, Promise<https.Agent>>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly basicHosts = new Set<string>();
  private readonly pendingAuth = new Map<string, Promise<string | undefined>>();

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.certsDir = opts.certsDir ?? DEFAULT_CERTS_DIR;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
    // Signature manifests and referrer indexes are a few KB; a hostile registry must not make the agent hold MBs.
    this.maxManifestBytes = opts.maxManifestBytes ?? 256 * 1024;
    this.maxBlobBytes = opts.maxBlobBytes ?? 1024 * 1024;
  }

  /** GET a manifest by tag or digest. When `reference` is a digest, the body must hash to it. */
  async getManifest(registry: string, repository: string, reference: string, deadline: number): Promise<Fetched> {
    const f = await this.get(registry, `/v2/${repository}/manifests/${reference}`, {
      accept: MANIFEST_ACCEPT, maxBytes: this.maxManifestBytes, deadline, scope: `repository:${repository}:pull`,
    });
    if (reference.startsWith('sha256:') && f.digest !== reference) {
      throw new RegistryError('invalid', `manifest ${reference} of ${registry}/${repository}: body hashes to ${f.digest}`);
    }
    return f;
  }

  /** GET a blob; the body must hash to `digest`. */
  async getBlob(registry: string, repository: string, digest: string, deadline: number, maxBytes?: number): Promise<Fetched> {
    if (!DIGEST_RE.test(digest)) throw new RegistryError('invalid', `blob digest "${String(digest).slice(0, 80)}" is not sha256:<hex>`);
    const f = await this.get(registry, `/v2/${repository}/blobs/${digest}`, {
      maxBytes: Math.min(maxBytes ?? this.maxBlobBytes, this.maxBlobBytes), deadline, scope: `repository:${repository}:pull`,
    });
    if (f.digest !== digest) throw new RegistryError('invalid', `blob ${digest} of ${registry}/${repository}: body hashes to ${f.digest}`);
    return f;
  }

  async listTags(registry: string, repository: string, deadline: number): Promise<string[]> {
    const f = await this.get(registry, `/v2/${repository}/tags/list`, {
      maxBytes: this.maxManifestBytes, deadline, scope: `repository:${repository}:pull`,
    });
    const j = parseJson(f.body, 'tag list') as { tags?: unknown };
    return Array.isArray(j.tags) ? j.tags.filter((t): t is string => typeof t === 'string') : [];
  }

  /**
   * The referrers of `digest` (an OCI image index). The referrers API first;
   * when it answers 404, the tag-schema fallback `sha256-<hex>`; neither → an
   * empty list. `artifactType` filters the descriptors either way.
   */
  async getReferrers(registry: string, repository: string, digest: string, deadline: number, artifactType?: string): Promise<ReferrerDescriptor[]> {
    let index: unknown;
    try {
      const q = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
      const f = await this.get(registry, `/v2/${repository}/referrers/${digest}${q}`, {
        accept: 'application/vnd.oci.image.index.v1+json', maxBytes: this.maxManifestBytes, deadline, scope: `repository:${repository}:pull`,
      });
      index = parseJson(f.body, 'referrers index');
    } catch (e) {
      if (!(e instanceof RegistryError && e.kind === 'not-found')) throw e;
      try {
        const f = await this.getManifest(registry, repository, digest.replace(':', '-'), deadline);
        index = parseJson(f.body, 'referrers fallback index');
      } catch (e2) {
        if (e2 instanceof RegistryError && e2.kind === 'not-found') return [];
        throw e2;
      }
    }
    // An OCI image index (spec 1.1: `manifests` may be empty, never absent); anything else is
    // refused, not read as "no referrers".
    const idx = index as { manifests?: unknown; mediaType?: unknown } | null;
    if (!idx || typeof idx !== 'object' || Array.isArray(idx)) throw new RegistryError('invalid', 'referrers index is not a JSON object');
    if (idx.mediaType !== undefined && idx.mediaType !== 'application/vnd.oci.image.index.v1+json') {
      throw new RegistryError('invalid', `referrers index has media type ${JSON.stringify(String(idx.mediaType).slice(0, 80))}, not an OCI image index`);
    }
    const manifests = idx.manifests;
    if (!Array.isArray(manifests)) throw new RegistryError('invalid', 'referrers index has no manifests list');
    const out: ReferrerDescriptor[] = [];
    for (const m of manifests.slice(0, 256)) {
      if (!m || typeof m !== 'object') continue;
      const d = m as Record<string, unknown>;
      if (typeof d.digest !== 'string' || !DIGEST_RE.test(d.digest)) continue;
      const at = typeof d.artifactType === 'string' ? d.artifactType : '';
      if (artifactType && at !== artifactType) continue;
      out.push({
        digest: d.digest,
        mediaType: typeof d.mediaType === 'string' ? d.mediaType : '',
        artifactType: at,
        size: typeof d.size === 'number' ? d.size : -1,
      });
    }
    return out;
  }

  /** Drop cached TLS agents (CA files changed) and tokens. */
  close(): void {
    for (const a of this.agents.values()) void a.then((x) => x.destroy(), () => undefined);
    this.agents.clear();
    this.tokens.clear();
    this.basicHosts.clear();
  }

  // ---- transport --------------------------------------------------------

  private async get(registry: string, path: string, o: RequestOpts): Promise<Fetched> {
    const host = apiHost(registry);
    const cred = await this.credentialFor(registry, o.deadline);
    const tokenKey = `${host} ${o.scope}`;
    let auth: string | undefined;
    const cached = this.tokens.get(tokenKey);
    if (cached && cached.expires > Date.now()) auth = `Bearer ${cached.token}`;
    // A registry that asked for Basic once gets it up front (one round trip, not two).
    else if (this.basicHosts.has(host) && cred?.username && cred.password !== undefined) auth = basicAuth(cred);
    let res = await this.request(registry, `https://${host}${path}`, o, auth);
    if (res.status === 401) {
      const challenge = res.headers['www-authenticate'];
      // Parallel requests of one verification share one token request (in flight, or just got).
      const got = this.tokens.get(tokenKey);
      let pending = got && got.expires > Date.now() && `Bearer ${got.token}` !== auth ? Promise.resolve(`Bearer ${got.token}`) : this.pendingAuth.get(tokenKey);
      if (!pending) {
        pending = this.authorize(registry, typeof challenge === 'string' ? challenge : '', cred, o, tokenKey);
        this.pendingAuth.set(tokenKey, pending);
        const clear = (): void => { this.pendingAuth.delete(tokenKey); };
        pending.then(clear, clear);
      }
      auth = await pending;
      res = await this.request(registry, `https://${host}${path}`, o, auth);
    }
    if (res.status === 404) throw new RegistryError('not-found', `${registry}: ${path.replace(/^\/v2\//, '')} not found`, 404);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryError('unreachable', `registry ${registry} refused access (HTTP ${res.status}${cred ? ', with the configured credentials' : ', no credentials configured'})`, res.status);
    }
    if (res.status < 200 || res.status >= 300) throw new RegistryError('unreachable', `registry ${registry} answered HTTP ${res.status} for ${path.replace(/^\/v2\//, '')}`, res.status);
    return { body: res.body, contentType: String(res.headers['content-type'] ?? ''), digest: `sha256:${createHash('sha256').update(res.body).digest('hex')}` };
  }

  /** Answer a 401 challenge: Basic with the credential, or a Bearer token from the realm. */
  private async authorize(registry: string, challenge: string, cred: RegistryCredential | undefined, o: RequestOpts, tokenKey: string): Promise<string | undefined> {
    const scheme = challenge.trim().split(/\s+/, 1)[0]?.toLowerCase();
    if (scheme === 'basic') {
      if (!cred?.username || cred.password === undefined) return undefined;
      this.basicHosts.add(apiHost(registry));
      return basicAuth(cred);
    }
    if (scheme !== 'bearer') return undefined;
    const params = parseChallenge(challenge);
    const realm = params.realm;
    if (!realm) throw new RegistryError('unreachable', `registry ${registry}: Bearer challenge without a realm`);
    let realmUrl: URL;
    try { realmUrl = new URL(realm); } catch { throw new RegistryError('unreachable', `registry ${registry}: invalid token realm`); }
    if (realmUrl.protocol !== 'https:') throw new RegistryError('unreachable', `registry ${registry}: token realm is not https`);
    const scope = params.scope ?? o.scope;
    let res: RawResponse;
    if (cred?.identityToken) {
      // Docker's OAuth2 refresh-token grant for identity tokens.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: 'bulkhead-agent', scope });
      if (params.service) form.set('service', params.service);
      res = await this.request(registry, realmUrl.toString(), { ...o, maxBytes: 1024 * 1024 }, undefined, form.toString());
    } else {
      if (params.service) realmUrl.searchParams.set('service', params.service);
      realmUrl.searchParams.set('scope', scope);
      const basic = cred?.username && cred.password !== undefined ? basicAuth(cred) : undefined;
      res = await this.request(registry, realmUrl.toString(), { ...o, maxBytes: 1024 * 1024 }, basic);
    }
    if (res.status !== 200) throw new RegistryError('unreachable', `registry ${registry}: token service answered HTTP ${res.status}`, res.status);
    const j = parseJson(res.body, 'token response') as { token?: unknown; access_token?: unknown; expires_in?: unknown };
    const token = typeof j.token === 'string' ? j.token : typeof j.access_token === 'string' ? j.access_token : '';
    if (!token) throw new RegistryError('unreachable', `registry ${registry}: token service gave no token`);
    const ttl = typeof j.expires_in === 'number' && j.expires_in > 0 ? j.expires_in : 60;
    this.tokens.set(tokenKey, { token, expires: Date.now() + Math.max(0, ttl - 5) * 1000 });
    if (this.tokens.size > 256) this.tokens.delete(this.tokens.keys().next().value!);
    return `Bearer ${token}`;
  }

  /** Docker's precedence: a credential helper for the host (credHelpers, else credsStore), else `auths`. */
  private async credentialFor(registry: string, deadline: number): Promise<RegistryCredential | undefined> {
    const helpers = this.opts.credentialHelpers;
    if (helpers?.helperFor(registry) !== undefined) {
      try {
        return await helpers.get(registry, deadline);
      } catch (e) {
        // The rule's failClosed decides, as for a registry that cannot be reached.
        if (e instanceof CredentialHelperError) throw new RegistryError('unreachable', `registry ${registry}: ${e.message}`);
        throw e;
      }
    }
    return this.opts.credentials?.get(registry);
  }

  private agentFor(registry: string): Promise<https.Agent> {
    let a = this.agents.get(registry);
    if (!a) {
      a = this.makeAgent(registry);
      this.agents.set(registry, a);
      a.catch(() => this.agents.delete(registry));
    }
    return a;
  }

  /** System roots + DIR/HOST/*.crt, client.cert/client.key when present (Docker's certs.d layout). */
  private async makeAgent(registry: string): Promise<https.Agent> {
    const ca = [...tls.rootCertificates, ...(this.opts.extraCa ?? [])];
    let cert: Buffer | undefined;
    let key: Buffer | undefined;
    const dir = join(this.certsDir, registry);
    let names: string[] = [];
    try { names = await readdir(dir); } catch { /* no per-registry directory: system store only */ }
    for (const n of names.sort()) {
      if (n.endsWith('.crt')) ca.push(await readFile(join(dir, n), 'utf8'));
      else if (n.endsWith('.cert')) cert = await readFile(join(dir, n));
      else if (n.endsWith('.key')) key = await readFile(join(dir, n));
    }
    return new https.Agent({ keepAlive: true, maxSockets: 8, ca, ...(cert && key ? { cert, key } : {}) });
  }

  private async request(registry: string, url: string, o: RequestOpts, authorization: string | undefined, postForm?: string, redirects = 0): Promise<RawResponse> {
    const left = o.deadline - Date.now();
    if (left <= 0) throw new RegistryError('unreachable', `registry ${registry} unreachable: deadline exceeded`);
    const timeout = Math.min(left, this.requestTimeoutMs);
    const agent = await this.agentFor(registry);
    const u = new URL(url);
    this.opts.onRequest?.(postForm ? 'POST' : 'GET', `${u.origin}${u.pathname}`);
    const res = await new Promise<RawResponse>((resolve, reject) => {
      let done = false;
      const fail = (e: RegistryError) => { if (!done) { done = true; clearTimeout(timer); req.destroy(); reject(e); } };
      const headers: Record<string, string> = { 'user-agent': 'bulkhead-agent' };
      if (o.accept) headers.accept = o.accept;
      if (authorization) headers.authorization = authorization;
      if (postForm) { headers['content-type'] = 'application/x-www-form-urlencoded'; headers['content-length'] = String(Buffer.byteLength(postForm)); }
      const req = https.request(u, { method: postForm ? 'POST' : 'GET', agent, headers }, (r: IncomingMessage) => {
        const status = r.statusCode ?? 0;
        const declared = Number(r.headers['content-length']);
        // Error bodies and redirects are read but not kept beyond a small cap.
        const cap = status >= 200 && status < 300 ? o.maxBytes : 64 * 1024;
        if (Number.isFinite(declared) && declared > cap) {
          if (status >= 200 && status < 300) return fail(new RegistryError('invalid', `${describe(u)}: body of ${declared} bytes is over the ${cap}-byte limit`));
        }
        const chunks: Buffer[] = [];
        let n = 0;
        r.on('data', (c: Buffer) => {
          n += c.length;
          if (n > cap) {
            if (status >= 200 && status < 300) return fail(new RegistryError('invalid', `${describe(u)}: body over the ${cap}-byte limit`));
            return; // error body: drop the rest
          }
          chunks.push(c);
        });
        r.on('end', () => { if (!done) { done = true; clearTimeout(timer); resolve({ status, headers: r.headers, body: Buffer.concat(chunks) }); } });
        r.on('error', (e) => fail(new RegistryError('unreachable', `registry ${registry} unreachable: ${errText(e)}`)));
        r.on('close', () => { if (!r.complete) fail(new RegistryError('unreachable', `registry ${registry} unreachable: connection closed mid-answer`)); });
      });
      const timer = setTimeout(() => fail(new RegistryError('unreachable', `registry ${registry} unreachable: no answer within ${timeout} ms`)), timeout);
      req.on('error', (e) => fail(new RegistryError('unreachable', `registry ${registry} unreachable: ${errText(e)}`)));
      req.end(postForm);
    });
    if ([301, 302, 303, 307, 308].includes(res.status) && typeof res.headers.location === 'string') {
      if (redirects >= 3) throw new RegistryError('unreachable', `registry ${registry}: too many redirects`);
      const next = new URL(res.headers.location, u);
      if (next.protocol !== 'https:') throw new RegistryError('unreachable', `registry ${registry}: redirect to a non-https URL`);
      // Credentials stay with the registry's own host (blob storage redirects carry their own signature).
      return this.request(registry, next.toString(), o, next.host === u.host ? authorization : undefined, undefined, redirects + 1);
    }
    return res;
  }
}

export interface ReferrerDescriptor {
  digest: string;
  mediaType: string;
  artifactType: string;
  size: number;
}

interface RawResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

function basicAuth(cred: RegistryCredential): string {
  return `Basic ${Buffer.from(`${cred.username ?? ''}:${cred.password ?? ''}`).toString('base64')}`;
}

function describe(u: URL): string {
  return `${u.host}${u.pathname.replace(/^\/v2\//, ' ')}`;
}

/** A network error's short form ("connect ECONNREFUSED 127.0.0.1:5000"), never a URL with credentials. */
function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  // OpenSSL's raw text ("803C…:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:…") → its reason.
  const ssl = typeof err?.message === 'string' ? /SSL routines:[^:]*:([^:]+)/.exec(err.message) : null;
  if (ssl) return `TLS handshake failed: ${ssl[1]}`;
  if (err?.code && typeof err.message === 'string' && /^[A-Z_]+$/.test(err.code)) {
    return err.message.includes(err.code) ? err.message : `${err.code}: ${err.message}`;
  }
  return err?.message ?? String(e);
}

function parseJson(body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new RegistryError('invalid', `${what} is not JSON`);
  }
}

/** `Bearer realm="…",service="…",scope="…"` → { realm, service, scope }. */
export function parseChallenge(h: string): Record<string, string> {
  const out: Record<string, string> = {};
  const rest = h.replace(/^\s*\S+\s*/, '');
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(rest))) out[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
  return out;
}

/**
 * Credentials from a file in Docker's config.json format: `auths` → HOST →
 * `auth` (base64 "user:pass") or `username`/`password`, and `identitytoken`.
 * Keys may be "host:port", "https://host:port/…" or Docker Hub's
 * "https://index.docker.io/v1/". Credential helpers: parseDockerConfig.
 */
export function parseDockerAuthConfig(text: string): Map<string, RegistryCredential> {
  return parseDockerConfig(text).auths;
}

/** What the agent reads of a Docker config.json. */
export interface DockerCredentialConfig {
  auths: Map<string, RegistryCredential>;
  /** `credHelpers`: registry (keyed like auths) → helper name (docker-credential-<name>). */
  credHelpers: Map<string, string>;
  /** `credsStore`: the helper for every other registry. */
  credsStore: string | undefined;
}

/** auths, credHelpers and credsStore of a Docker config.json (other keys ignored). */
export function parseDockerConfig(text: string): DockerCredentialConfig {
  let j: unknown;
  try { j = JSON.parse(text); } catch { throw new Error('registry auth file is not JSON (Docker config.json format expected)'); }
  const o = (j ?? {}) as { auths?: unknown; credHelpers?: unknown; credsStore?: unknown };
  const credHelpers = new Map<string, string>();
  if (o.credHelpers && typeof o.credHelpers === 'object') {
    for (const [k, v] of Object.entries(o.credHelpers as Record<string, unknown>)) if (typeof v === 'string' && v !== '') credHelpers.set(registryKey(k), v);
  }
  const credsStore = typeof o.credsStore === 'string' && o.credsStore !== '' ? o.credsStore : undefined;
  return { auths: parseAuths(o.auths), credHelpers, credsStore };
}

function parseAuths(auths: unknown): Map<string, RegistryCredential> {
  const out = new Map<string, RegistryCredential>();
  if (!auths || typeof auths !== 'object') return out;
  for (const [k, v] of Object.entries(auths as Record<string, unknown>)) {
    if (!v || typeof v !== 'object') continue;
    const e = v as Record<string, unknown>;
    const cred: RegistryCredential = {};
    if (typeof e.auth === 'string' && e.auth) {
      const dec = Buffer.from(e.auth, 'base64').toString('utf8');
      const i = dec.indexOf(':');
      if (i > 0) { cred.username = dec.slice(0, i); cred.password = dec.slice(i + 1); }
    }
    if (typeof e.username === 'string' && e.username) cred.username = e.username;
    if (typeof e.password === 'string') cred.password = e.password;
    if (typeof e.identitytoken === 'string' && e.identitytoken) cred.identityToken = e.identitytoken;
    if (!cred.username && !cred.identityToken) continue;
    out.set(registryKey(k), cred);
  }
  return out;
}

function registryKey(k: string): string {
  let h = k.trim().replace(/^https?:\/\//, '');
  h = h.split('/')[0]!;
  if (h === 'index.docker.io' || h === 'registry-1.docker.io') h = 'docker.io';
  return h;
}

/** Read a config.json credentials file; refuse one readable by others (it holds passwords). */
export async function loadDockerAuthFile(path: string): Promise<Map<string, RegistryCredential>> {
  return (await loadDockerConfigFile(path)).auths;
}

/** loadDockerAuthFile with the credential helpers the file names. */
export async function loadDockerConfigFile(path: string): Promise<DockerCredentialConfig> {
  const st = await stat(path);
  if ((st.mode & 0o004) !== 0) {
    throw new Error(`registry auth file ${path} is readable by every user (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  return parseDockerConfig(await readFile(path, 'utf8'));
}
