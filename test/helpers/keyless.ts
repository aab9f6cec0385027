// Keyless (Fulcio certificate) Sigstore signatures, made offline and on loopback, for the
// image-signature tests:
//
//   const auth = await startKeylessAuthority({ t });                 // CA + CT log + Rekor, loopback
//   const rootFile = await auth.writeTrustedRoot(dir);               // trusted_root.json for them
//   const bundle = await auth.signImage({ subject, issuer, image: reg.ref('shop/web', digest) });
//   await attachBundle(reg, 'shop/web', digest, bundle);             // referrers tag-schema fallback
//   await cosignSignKeyless(reg, auth, await auth.writeCosignTrustEnv(dir), ref, { subject, issuer });
//                                                                     // REAL cosign 2.5, classic .sig
//
// Who makes what (nothing here is a stand-in for the verifier's side):
//   - The SIGNING CLIENT is the real one of the Sigstore project, @sigstore/sign (what
//     `sigstore-js` and npm's provenance use): DSSEBundleBuilder + FulcioSigner (an ephemeral
//     P-256 key, a certificate request with proof of possession) + RekorWitness (a `dsse`
//     v0.0.1 entry, its signed entry timestamp and inclusion proof with a signed checkpoint).
//   - The SERVICES are @sigstore/mock's (the Sigstore project's own test doubles, used by
//     sigstore-js's tests): a Fulcio-style CA that issues 10-minute code-signing certificates
//     with the OIDC issuer extensions (1.3.6.1.4.1.57264.1.1 and .1.8) and a URI SAN from the
//     token's `sub`, and embeds an SCT from a CT log; a Rekor-style log that signs entry
//     timestamps and checkpoints. Their request handlers are served by a plain node:http server
//     on 127.0.0.1 (NOT @sigstore/mock's mockFulcio/mockRekor: those use nock, which patches
//     node:http globally in the test process — and that process also talks to the real
//     registry). Only the handler modules are loaded, never the package index (which loads nock).
//   - The identity token is a JWT made here (a few lines): unsigned for @sigstore/sign, signed
//     by a throw-away key for cosign (which parses it and refuses `alg: none`). Fulcio would
//     verify it against the OIDC issuer; the mock CA only reads its `iss` and `sub`, which is
//     the point of the test (they become the certificate's issuer extension and SAN).
//   - Two thin shims, each written here because the mock differs from the real service in just
//     that: Rekor's canonical `dsse` entry form (canonicalDsseEntry), and Fulcio's v1 REST
//     envelope that cosign 2.5 `sign` speaks (fulcioV1) over the mock's v2 handler.
//   - The trusted_root.json is written here from the three public keys / the CA certificate, in
//     the format of @sigstore/protobuf-specs' TrustedRoot (round-tripped through it).
//
// cosign 2.5 as an oracle for this material (verified 2026-12-06, offline):
//   - `cosign verify --new-bundle-format` finds no signature in a bundle referrer ("no signatures
//     found": 2.5 reads image signatures only from `.sig` / oci-1-1 simple-signing artifacts);
//     `cosign verify-attestation --new-bundle-format --type https://sigstore.dev/cosign/sign/v1`
//     reads the same referrer and verifies chain, SCT, Rekor SET + inclusion proof + checkpoint,
//     and identity (cosignVerifyKeyless({ attestationType })).
//   - With --trusted-root alone it still fetches the Rekor keys from the online TUF root;
//     SIGSTORE_ROOT_FILE / SIGSTORE_REKOR_PUBLIC_KEY / SIGSTORE_CT_LOG_PUBLIC_KEY_FILE
//     (writeCosignTrustEnv) keep it offline.
//   - Its refusals name the reason: "expected issuer value …", "expected SAN value …", "failed to
//     verify leaf certificate" (unknown CA), "integrated time outside certificate validity".
//   - `cosign sign -y --fulcio-url … --rekor-url … --identity-token …` (no key) signs keylessly
//     against this authority offline (it checks the SCT and the Rekor SET with the keys in the
//     SIGSTORE_* variables): a classic `.sig` attachment; `cosign verify --certificate-identity
//     … --certificate-oidc-issuer …` (no --trusted-root) verifies it with the same variables.
//
// @sigstore/mock is pinned to 0.12.x: 0.13 needs Node >= 22.22, and the suite also runs on
// Node 20 (scripts/test.sh).
import { createHash, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import rootTap, { type Test } from 'tap';
import { bundleToJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { DSSEBundleBuilder, FulcioSigner, RekorWitness } from '@sigstore/sign';
import { cosignEnv, pushBlob, runTool, sha256Digest, signTools, type TestRegistry } from './registry';

// Handler modules only (see the file head: the package index would load nock).
/* eslint-disable @typescript-eslint/no-require-imports */
const mockFulcio = require('@sigstore/mock/dist/fulcio') as typeof import('@sigstore/mock/dist/fulcio');
const mockRekor = require('@sigstore/mock/dist/rekor') as typeof import('@sigstore/mock/dist/rekor');
/* eslint-enable @typescript-eslint/no-require-imports */

type KeyPair = { publicKey: KeyObject; privateKey: KeyObject };
type CA = Awaited<ReturnType<typeof mockFulcio.initializeCA>>;

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const EMPTY_CONFIG = Buffer.from('{}');
const EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';

export interface KeylessSignOptions {
  /** The certificate's URI SAN (the token's `sub`). */
  subject: string;
  /** The OIDC issuer extension (the token's `iss`). */
  issuer: string;
  /** `HOST:PORT/repo@sha256:…`: the statement's subject (name without the digest, and the digest). */
  image: string;
  /**
   * Which CA issues the certificate: 'trusted' (in the trusted root, default), 'untrusted'
   * (another CA with its own key, same name), or 'expired' (the trusted CA's key, its clock
   * an hour back: the 10-minute certificate has expired when the log records the entry).
   */
  ca?: 'trusted' | 'untrusted' | 'expired';
  /** The statement's predicateType (default cosign's image signature predicate). */
  predicateType?: string;
  /** Annotations in the cosign predicate. */
  annotations?: Record<string, string>;
}

export interface KeylessAuthority {
  /** http://127.0.0.1:PORT (Fulcio under /<ca>, Rekor at the root). */
  url: string;
  /** trusted_root.json: the trusted CA, the CT log and the Rekor log (never the untrusted CA). */
  trustedRootJson: string;
  /** Writes trustedRootJson to DIR/trusted_root.json; returns the path. */
  writeTrustedRoot(dir: string): Promise<string>;
  /**
   * The same trust as PEM files in DIR, for cosign 2.5's environment overrides
   * (SIGSTORE_ROOT_FILE, SIGSTORE_REKOR_PUBLIC_KEY, SIGSTORE_CT_LOG_PUBLIC_KEY_FILE): even with
   * --trusted-root, `cosign verify` fetches the Rekor keys through TUF (online) unless they are
   * given this way. Returns those variables.
   */
  writeCosignTrustEnv(dir: string): Promise<Record<string, string>>;
  /** A Sigstore bundle (v0.3 JSON bytes) of a DSSE-signed in-toto statement naming `image`. */
  signImage(opts: KeylessSignOptions): Promise<Buffer>;
  close(): Promise<void>;
}

function keyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function b64url(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

/** Starts the loopback CA / CT log / Rekor; closed in `t`'s teardown (default: file end). */
export async function startKeylessAuthority(opts: { t?: Test } = {}): Promise<KeylessAuthority> {
  const ctKey = keyPair();
  const caKey = keyPair();
  const otherCaKey = keyPair();
  const tlogKey = keyPair();
  const ctLog = await mockFulcio.initializeCTLog(ctKey);
  const cas: Record<NonNullable<KeylessSignOptions['ca']>, CA> = {
    trusted: await mockFulcio.initializeCA(caKey, ctLog),
    untrusted: await mockFulcio.initializeCA(otherCaKey, ctLog),
    // Same key and name as the trusted CA (its certificates chain to the trusted root), with a
    // clock an hour back: certificates valid from -60 to -50 min.
    expired: await mockFulcio.initializeCA(caKey, ctLog, new Date(Date.now() - 3600_000)),
  };
  const handlers = new Map<string, Handler>();
  for (const [name, ca] of Object.entries(cas)) {
    const h = mockFulcio.fulcioHandler(ca);
    handlers.set(`/${name}${h.path}`, h.fn);
    handlers.set(`/${name}/api/v1/signingCert`, (body, authorization) => fulcioV1(h.fn, body, authorization));
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const fn = req.method === 'POST' ? handlers.get((req.url ?? '').split('?')[0]!) : undefined;
      if (!fn) { res.writeHead(404).end(`no handler for ${req.method} ${req.url}`); return; }
      fn(Buffer.concat(chunks).toString(), req.headers.authorization).then(
        (r) => {
          res.writeHead(r.statusCode, { 'content-type': r.contentType ?? 'text/plain' });
          res.end(typeof r.response === 'string' ? r.response : Buffer.from(r.response.buffer, r.response.byteOffset, r.response.byteLength));
        },
        (e: unknown) => res.writeHead(500).end(String(e)),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= new Promise((resolve) => server.close(() => resolve())));
  (opts.t ?? rootTap).teardown(close);

  const tlog = await mockRekor.initializeTLog(url, tlogKey);
  const rekor = mockRekor.rekorHandler(tlog);
  // @sigstore/mock's Rekor logs the proposed entry as it came; the real Rekor stores the `dsse`
  // type's canonical form instead (rekor pkg/types/dsse/v0.0.1 Canonicalize: the envelope and
  // payload hashes and the signatures with their verifiers, no envelope). Verifiers (ours and
  // cosign's) check that form, so it is made here before the mock logs it.
  handlers.set(rekor.path, (body) => rekor.fn(JSON.stringify(canonicalDsseEntry(JSON.parse(body) as ProposedDsse))));

  const spki = (k: KeyObject): Buffer => k.export({ format: 'der', type: 'spki' });
  const start = new Date(Date.now() - 2 * 3600_000).toISOString();
  const rootObject = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{
      baseUrl: url,
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: spki(tlogKey.publicKey).toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
      logId: { keyId: createHash('sha256').update(spki(tlogKey.publicKey)).digest('base64') },
    }],
    certificateAuthorities: [{
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: `${url}/trusted`,
      certChain: { certificates: [{ rawBytes: Buffer.from(cas.trusted.rootCertificate.buffer, cas.trusted.rootCertificate.byteOffset, cas.trusted.rootCertificate.byteLength).toString('base64') }] },
      validFor: { start },
    }],
    ctlogs: [{
      baseUrl: `${url}/ct`,
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: spki(ctKey.publicKey).toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
      logId: { keyId: Buffer.from(ctLog.logID.buffer, ctLog.logID.byteOffset, ctLog.logID.byteLength).toString('base64') },
    }],
    timestampAuthorities: [],
  };
  // Round-trip through the protobuf-specs type: a field it does not know is dropped, a bad one throws.
  const trustedRootJson = JSON.stringify(TrustedRoot.toJSON(TrustedRoot.fromJSON(rootObject)), null, 2);

  return {
    url,
    trustedRootJson,
    async writeTrustedRoot(dir) {
      const p = join(dir, 'trusted_root.json');
      await writeFile(p, trustedRootJson);
      return p;
    },
    async writeCosignTrustEnv(dir) {
      const pem = (der: Buffer, type: string): string => `-----BEGIN ${type}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${type}-----\n`;
      const files = {
        SIGSTORE_ROOT_FILE: [join(dir, 'fulcio-root.pem'), pem(Buffer.from(cas.trusted.rootCertificate.buffer, cas.trusted.rootCertificate.byteOffset, cas.trusted.rootCertificate.byteLength), 'CERTIFICATE')],
        SIGSTORE_REKOR_PUBLIC_KEY: [join(dir, 'rekor.pub'), pem(spki(tlogKey.publicKey), 'PUBLIC KEY')],
        SIGSTORE_CT_LOG_PUBLIC_KEY_FILE: [join(dir, 'ctlog.pub'), pem(spki(ctKey.publicKey), 'PUBLIC KEY')],
      } as const;
      const env: Record<string, string> = {};
      for (const [k, [path, text]] of Object.entries(files)) {
        await writeFile(path, text);
        env[k] = path;
      }
      return env;
    },
    async signImage(o) {
      const at = o.image.lastIndexOf('@');
      if (at < 0 || !o.image.slice(at + 1).startsWith('sha256:')) throw new Error(`want NAME@sha256:…, got ${o.image}`);
      const statement = {
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: o.image.slice(0, at), digest: { sha256: o.image.slice(at + 'sha256:'.length + 1) } }],
        predicateType: o.predicateType ?? COSIGN_SIGN_PREDICATE,
        predicate: o.annotations ? { annotations: o.annotations } : {},
      };
      const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ iss: o.issuer, sub: o.subject, aud: 'sigstore', iat: Math.floor(Date.now() / 1000) })}.`;
      const builder = new DSSEBundleBuilder({
        signer: new FulcioSigner({ fulcioBaseURL: `${url}/${o.ca ?? 'trusted'}`, identityProvider: { getToken: () => Promise.resolve(token) }, retry: 0, timeout: 10_000 }),
        witnesses: [new RekorWitness({ rekorBaseURL: url, entryType: 'dsse', majorApiVersion: 1, retry: 0, timeout: 10_000 })],
      });
      const bundle = await builder.create({ data: Buffer.from(JSON.stringify(statement)), type: 'application/vnd.in-toto+json' });
      return Buffer.from(JSON.stringify(bundleToJSON(bundle)));
    },
    close,
  };
}

type HandlerResult = { statusCode: number; response: string | ArrayBufferView; contentType?: string };
type Handler = (body: string, authorization?: string) => Promise<HandlerResult>;

/**
 * Fulcio's v1 REST API (what cosign 2.5 `sign` calls: the token in the Authorization header,
 * the public key as base64 bytes, the chain back as PEM text) on top of @sigstore/mock's v2
 * handler (what @sigstore/sign calls). Only the envelope differs; the CA is the same.
 */
async function fulcioV1(v2: Handler, body: string, authorization: string | undefined): Promise<HandlerResult> {
  const req = JSON.parse(body) as { publicKey?: { content?: string } };
  const raw = Buffer.from(req.publicKey?.content ?? '', 'base64');
  // cosign sends the PEM bytes (base64 of them, as Go encodes []byte); other clients DER.
  const pem = raw.toString('latin1').startsWith('-----BEGIN') ? raw.toString('latin1') : `-----BEGIN PUBLIC KEY-----\n${raw.toString('base64')}\n-----END PUBLIC KEY-----\n`;
  const token = (authorization ?? '').replace(/^Bearer\s+/i, '');
  const r = await v2(JSON.stringify({ credentials: { oidcIdentityToken: token }, publicKeyRequest: { publicKey: { algorithm: 'ECDSA', content: pem }, proofOfPossession: '' } }));
  if (r.statusCode !== 201 || typeof r.response !== 'string') return r;
  const chain = (JSON.parse(r.response) as { signedCertificateEmbeddedSct: { chain: { certificates: string[] } } }).signedCertificateEmbeddedSct.chain.certificates;
  return { statusCode: 201, response: chain.map((c) => (c.endsWith('\n') ? c : `${c}\n`)).join(''), contentType: 'application/pem-certificate-chain' };
}

interface ProposedDsse { apiVersion: string; kind: string; spec: { proposedContent?: { envelope: string; verifiers: string[] } } }

function canonicalDsseEntry(p: ProposedDsse): unknown {
  if (p.kind !== 'dsse' || !p.spec.proposedContent) return p;
  const { envelope, verifiers } = p.spec.proposedContent;
  const env = JSON.parse(envelope) as { payload: string; signatures: { sig: string }[] };
  const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
  return {
    apiVersion: p.apiVersion,
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(envelope) },
      payloadHash: { algorithm: 'sha256', value: sha256(Buffer.from(env.payload, 'base64')) },
      signatures: env.signatures.map((s, i) => ({ signature: s.sig, verifier: verifiers[i] ?? verifiers[0] })),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// REAL cosign 2.5, signing keylessly against the loopback authority

/**
 * An identity token as cosign accepts it: a JWS with a real algorithm (cosign parses it, and
 * refuses `alg: none`, but does not verify it: Fulcio would, the mock CA does not), signed by a
 * throw-away key made here.
 */
export function identityToken(issuer: string, subject: string): string {
  const now = Math.floor(Date.now() / 1000);
  const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingInput = `${b64url({ alg: 'ES256', typ: 'JWT' })}.${b64url({ iss: issuer, sub: subject, aud: 'sigstore', iat: now, exp: now + 600 })}`;
  return `${signingInput}.${cryptoSign('sha256', Buffer.from(signingInput), { key: k.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

/**
 * REAL `cosign sign -y --fulcio-url AUTH/<ca> --rekor-url AUTH --identity-token T REF`: a
 * keyless `.sig` attachment (simple-signing layer with the Fulcio certificate and the Rekor
 * entry in its annotations). cosign checks the SCT and the Rekor entry with the keys in
 * `trustEnv` (writeCosignTrustEnv). Throws on failure.
 */
export async function cosignSignKeyless(
  reg: TestRegistry, auth: KeylessAuthority, trustEnv: Record<string, string>, ref: string, o: Omit<KeylessSignOptions, 'image' | 'predicateType' | 'annotations'>,
): Promise<void> {
  const tools = await signTools();
  const r = await runTool(tools.cosign, [
    'sign', '-y', '--fulcio-url', `${auth.url}/${o.ca ?? 'trusted'}`, '--rekor-url', auth.url,
    '--identity-token', identityToken(o.issuer, o.subject), ref,
  ], { env: cosignEnv(reg, trustEnv), timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`cosign sign (keyless) ${ref} failed (exit ${r.code}):\n${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------------
// attaching a bundle the way cosign does on a registry without the referrers API

async function putManifest(reg: TestRegistry, repo: string, ref: string, body: Buffer, mediaType: string): Promise<void> {
  const r = await reg.request('PUT', `${repo}/manifests/${ref}`, { body, headers: { 'content-type': mediaType } });
  if (r.status !== 201) throw new Error(`manifest push ${repo}:${ref}: HTTP ${r.status} ${r.body.toString()}`);
}

/**
 * Attaches `bundle` to `repo@digest` as cosign 2.5 `attest --new-bundle-format` does on a
 * registry without the OCI 1.1 referrers API (docker-registry 2.8): a manifest with
 * artifactType application/vnd.dev.sigstore.bundle.v0.3+json, the empty config, one layer =
 * the bundle, `subject` = the image; listed in the OCI index under the tag-schema fallback tag
 * `sha256-<hex>` (added to the index already there). Returns the referrer manifest's digest.
 */
export async function attachBundle(reg: TestRegistry, repo: string, digest: string, bundle: Buffer, opts: { predicateType?: string } = {}): Promise<string> {
  const subject = await reg.getManifest(repo, digest);
  const configDigest = await pushBlob(reg, repo, EMPTY_CONFIG);
  const layerDigest = await pushBlob(reg, repo, bundle);
  const annotations = {
    'dev.sigstore.bundle.content': 'dsse-envelope',
    'dev.sigstore.bundle.predicateType': opts.predicateType ?? COSIGN_SIGN_PREDICATE,
  };
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: BUNDLE_MEDIA_TYPE,
    config: { mediaType: EMPTY_MEDIA_TYPE, digest: configDigest, size: EMPTY_CONFIG.length },
    layers: [{ mediaType: BUNDLE_MEDIA_TYPE, digest: layerDigest, size: bundle.length }],
    subject: { mediaType: subject.mediaType.split(';')[0], digest, size: subject.body.length },
    annotations,
  }));
  const manifestDigest = sha256Digest(manifest);
  await putManifest(reg, repo, manifestDigest, manifest, 'application/vnd.oci.image.manifest.v1+json');

  const tag = digest.replace(':', '-');
  let manifests: unknown[] = [];
  if ((await reg.tags(repo)).includes(tag)) {
    manifests = (JSON.parse((await reg.getManifest(repo, tag)).body.toString()) as { manifests?: unknown[] }).manifests ?? [];
  }
  manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, artifactType: BUNDLE_MEDIA_TYPE, annotations });
  await putManifest(reg, repo, tag, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests })), 'application/vnd.oci.image.index.v1+json');
  return manifestDigest;
}
