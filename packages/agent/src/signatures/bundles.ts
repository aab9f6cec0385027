// Sigstore bundles attached to an image through the OCI 1.1 referrers API (or
// its tag-schema fallback `sha256-<hex>`), as `cosign sign --new-bundle-format`
// writes them: a referrer manifest with artifactType
// application/vnd.dev.sigstore.bundle.v0.3+json whose layer is the bundle JSON;
// the bundle holds a DSSE envelope over an in-toto Statement whose subject is
// the image manifest digest and whose predicateType is
// https://sigstore.dev/cosign/sign/v1.
//
// Cryptography and formats are @sigstore/bundle (parsing and validation) and
// @sigstore/verify (signature, certificate chain, SCTs, tlog inclusion and
// timestamps against a trusted root), offline.
//   - By key: each trusted key is offered to the verifier regardless of the
//     bundle's key hint (cosign writes a hint we do not rely on). Without a
//     configured trusted root, transparency-log entries and timestamps cannot
//     be checked and are not required (like `cosign verify --key
//     --insecure-ignore-tlog`): the trust is in the key.
//   - Keyless (identities): only with a configured trusted root; the Fulcio
//     chain, one SCT, one tlog entry and one timestamp are required, then the
//     certificate's issuer and subject are matched against the identities.
//     Keyless cosign `.sig` layers (certificate and Rekor entry in annotations)
//     are turned into the bundle they amount to and verified the same way
//     (verifyCosignKeyless).
import { createHash } from 'node:crypto';
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier, type SignedEntity, type TrustMaterial } from '@sigstore/verify';
import { compileGlob } from '@bulkhead/shared';
import type { SignatureRequirement, TrustedIdentity } from '@bulkhead/shared';
import type { PreparedKey, SourceResult } from './cosign';
import { normalizeName, RegistryError, type ImageRef, type RegistryClient } from './registry-client';

import { BUNDLE_ARTIFACT_TYPE, COSIGN_CERTIFICATE_ANNOTATION, COSIGN_REKOR_BUNDLE_ANNOTATION, COSIGN_SIGN_PREDICATE, COSIGN_TIMESTAMP_ANNOTATION } from './media-types';

export { BUNDLE_ARTIFACT_TYPE, COSIGN_SIGN_PREDICATE } from './media-types';
const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** A signature bundle (certificate chain, log entry, DSSE envelope) is ~10 KB. */
const MAX_BUNDLE_BYTES = 256 * 1024;

const EMPTY_ROOT = TrustedRoot.fromJSON({
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [],
});

/** Parsed trusted roots by content (policies repeat the same root). */
const rootCache = new Map<string, TrustedRoot | Error>();

function parseTrustedRoot(text: string): TrustedRoot {
  let r = rootCache.get(text);
  if (!r) {
    try {
      r = TrustedRoot.fromJSON(JSON.parse(text));
    } catch (e) {
      r = new Error(`trusted root is not a Sigstore trusted_root.json (${e instanceof Error ? e.message : String(e)})`);
    }
    if (rootCache.size > 16) rootCache.clear();
    rootCache.set(text, r);
  }
  if (r instanceof Error) throw r;
  return r;
}

/** A Sigstore bundle referrer manifest (already fetched and digest-checked): fetch its bundle layer and verify it. */
export async function checkBundleManifest(
  client: RegistryClient, ref: ImageRef, manifest: unknown, keys: readonly PreparedKey[], req: SignatureRequirement, deadline: number,
): Promise<SourceResult> {
  const result: SourceResult = { found: 1, signers: new Set(), problems: [] };
  const layers = (manifest as { layers?: unknown })?.layers;
  const layer = Array.isArray(layers) ? (layers as Array<Record<string, unknown> | null>).find((l) => l?.mediaType === BUNDLE_ARTIFACT_TYPE) : undefined;
  if (!layer || typeof layer.digest !== 'string') { result.problems.push('bundle referrer without a bundle layer'); return result; }
  if (typeof layer.size === 'number' && layer.size > MAX_BUNDLE_BYTES) { result.problems.push(`bundle of ${layer.size} bytes is too large`); return result; }
  let bundleJson: Buffer;
  try {
    bundleJson = (await client.getBlob(ref.registry, ref.repository, layer.digest, deadline, MAX_BUNDLE_BYTES)).body;
  } catch (e) {
    if (e instanceof RegistryError && e.kind === 'unreachable') throw e;
    result.problems.push(`bundle unreadable (${e instanceof Error ? e.message : String(e)})`);
    return result;
  }
  const outcome = verifyBundle(bundleJson, ref, keys, req);
  if (typeof outcome === 'string') result.problems.push(outcome);
  else result.signers.add(outcome.signer);
  return result;
}

/** Verify one bundle (JSON bytes) for `ref`: the signer's name, or why not. Never throws. */
export function verifyBundle(json: Buffer, ref: ImageRef, keys: readonly PreparedKey[], req: SignatureRequirement): { signer: string } | string {
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(json.toString('utf8')));
  } catch (e) {
    return `bundle is not a valid Sigstore bundle (${e instanceof Error ? e.message.slice(0, 120) : 'parse error'})`;
  }
  if (bundle.content.$case !== 'dsseEnvelope') return 'bundle is a plain message signature, not an image signature statement';
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) return `bundle payload type is "${env.payloadType.slice(0, 60)}"`;
  const statementProblem = checkStatement(Buffer.from(env.payload), ref, req.annotations);
  let entity: SignedEntity;
  try {
    entity = toSignedEntity(bundle);
  } catch (e) {
    return `bundle is malformed (${e instanceof Error ? e.message.slice(0, 120) : 'error'})`;
  }
  let root: TrustedRoot | undefined;
  if (req.trustedRoot) {
    try { root = parseTrustedRoot(req.trustedRoot); } catch (e) { return e instanceof Error ? e.message : String(e); }
  }
  let signer: string | undefined;
  let why = 'bad signature or signature by an unknown key';
  if (entity.key.$case === 'public-key') {
    // Without a root, tlog entries and timestamps cannot be checked: the key alone is trusted.
    const e2: SignedEntity = root ? entity : { ...entity, tlogEntries: [], timestamps: [] };
    for (const k of keys) {
      const material: TrustMaterial = toTrustMaterial(root ?? EMPTY_ROOT, () => ({ publicKey: k.key, validFor: () => true }));
      const v = new Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
      try {
        v.verify(e2);
        signer = k.name;
        break;
      } catch { /* next key */ }
    }
  } else {
    if (!root) return 'keyless bundle, but no trusted root is configured';
    const k = verifyKeyless(entity, root, req, 'bundle');
    if (typeof k === 'string') why = k;
    else signer = k.signer;
  }
  if (!signer) return why;
  if (statementProblem) return `bundle by ${signer}: ${statementProblem}`;
  return { signer };
}

/**
 * A keyless signed entity (certificate key) against the trusted root: the Fulcio chain, one
 * SCT, one tlog entry and one timestamp (cosign's defaults), then the certificate's issuer and
 * subject against the identities. The signer's name, or why not.
 */
function verifyKeyless(entity: SignedEntity, root: TrustedRoot, req: SignatureRequirement, what: string): { signer: string } | string {
  if (req.identities.length === 0) return `keyless ${what}, but no trusted identities are configured`;
  try {
    const v = new Verifier(toTrustMaterial(root, () => { throw new Error('no keys'); }), { tlogThreshold: 1, ctlogThreshold: 1, timestampThreshold: 1 });
    const s = v.verify(entity);
    const issuer = s.identity?.extensions?.issuer ?? '';
    const subject = s.identity?.subjectAlternativeName ?? '';
    const match = req.identities.find((i) => identityMatches(i, issuer, subject));
    if (match) return { signer: `${match.issuer} ${subject}` };
    return `keyless signature by ${subject || '(no subject)'} from ${issuer || '(no issuer)'}, not a trusted identity`;
  } catch (e) {
    return `keyless ${what} does not verify against the trusted root (${describeVerifyError(e)})`;
  }
}

/**
 * A keyless cosign `.sig` layer (what `cosign sign` 2.x writes without a key): the simple-signing
 * payload, its signature, the Fulcio certificate and the Rekor entry with its signed entry
 * timestamp in the layer's annotations. They are put into the Sigstore bundle they amount to
 * (a message signature over the payload; v0.1, the version whose entries carry a promise) and
 * verified like any keyless bundle — the same conversion cosign makes before handing them to
 * sigstore-go. Never throws.
 */
export function verifyCosignKeyless(payload: Buffer, sig: Buffer, ann: Record<string, unknown>, req: SignatureRequirement): { signer: string } | string {
  if (!req.trustedRoot) return 'keyless signature, but no trusted root is configured';
  if (req.identities.length === 0) return 'keyless signature, but no trusted identities are configured';
  let root: TrustedRoot;
  try { root = parseTrustedRoot(req.trustedRoot); } catch (e) { return e instanceof Error ? e.message : String(e); }
  let entity: SignedEntity;
  try {
    const certs = pemCertificates(String(ann[COSIGN_CERTIFICATE_ANNOTATION]));
    if (certs.length === 0) return 'keyless signature whose certificate annotation holds no certificate';
    const tlogEntries: unknown[] = [];
    const rekor = ann[COSIGN_REKOR_BUNDLE_ANNOTATION];
    if (typeof rekor === 'string' && rekor) {
      const r = JSON.parse(rekor) as { SignedEntryTimestamp?: string; Payload?: { body?: string; integratedTime?: number; logIndex?: number; logID?: string } };
      const body = JSON.parse(Buffer.from(r.Payload?.body ?? '', 'base64').toString('utf8')) as { kind?: string; apiVersion?: string };
      tlogEntries.push({
        logIndex: String(r.Payload?.logIndex ?? ''),
        logId: { keyId: Buffer.from(r.Payload?.logID ?? '', 'hex').toString('base64') },
        kindVersion: { kind: String(body.kind ?? ''), version: String(body.apiVersion ?? '') },
        integratedTime: String(r.Payload?.integratedTime ?? ''),
        inclusionPromise: { signedEntryTimestamp: r.SignedEntryTimestamp ?? '' },
        canonicalizedBody: r.Payload?.body ?? '',
      });
    }
    const rfc3161Timestamps: unknown[] = [];
    const ts = ann[COSIGN_TIMESTAMP_ANNOTATION];
    if (typeof ts === 'string' && ts) {
      const t = JSON.parse(ts) as { SignedRFC3161Timestamp?: string };
      if (t.SignedRFC3161Timestamp) rfc3161Timestamps.push({ signedTimestamp: t.SignedRFC3161Timestamp });
    }
    const bundle = bundleFromJSON({
      mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.1',
      verificationMaterial: {
        x509CertificateChain: { certificates: certs.map((c) => ({ rawBytes: c.toString('base64') })) },
        tlogEntries,
        timestampVerificationData: { rfc3161Timestamps },
      },
      messageSignature: {
        messageDigest: { algorithm: 'SHA2_256', digest: createHash('sha256').update(payload).digest('base64') },
        signature: sig.toString('base64'),
      },
    });
    entity = toSignedEntity(bundle, payload);
  } catch (e) {
    return `keyless signature with malformed annotations (${e instanceof Error ? e.message.slice(0, 120) : 'error'})`;
  }
  return verifyKeyless(entity, root, req, 'signature');
}

function pemCertificates(text: string): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/g;
  for (let m = re.exec(text); m && out.length < 4; m = re.exec(text)) out.push(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
  return out;
}

/**
 * @sigstore/verify's error with its cause: "Failed to verify certificate chain" alone does not
 * tell an operator whether the CA is unknown or the certificate had expired when logged.
 */
function describeVerifyError(e: unknown): string {
  if (!(e instanceof Error)) return 'error';
  const cause = (e as { cause?: unknown }).cause;
  const msg = cause instanceof Error && cause.message && cause.message !== e.message ? `${e.message}: ${cause.message}` : e.message;
  return msg.slice(0, 200);
}

export function identityMatches(i: TrustedIdentity, issuer: string, subject: string): boolean {
  if (i.issuer !== issuer) return false;
  if (i.subject !== undefined) return i.subject === subject;
  // A glob, matched without backtracking (glob.ts): a policy must not be able to stall the agent.
  if (i.subjectGlob !== undefined) return compileGlob(i.subjectGlob)(subject);
  return false;
}

/** The in-toto Statement must be a cosign image signature naming this digest (and this repository when it names one). */
export function checkStatement(payload: Buffer, ref: ImageRef, annotations: Record<string, string>): string | undefined {
  let st: Record<string, unknown>;
  try { st = JSON.parse(payload.toString('utf8')) as Record<string, unknown>; } catch { return 'statement is not JSON'; }
  if (!st || typeof st !== 'object') return 'statement is not an object';
  if (st.predicateType !== COSIGN_SIGN_PREDICATE) return `statement predicate is "${String(st.predicateType).slice(0, 80)}", not an image signature`;
  const hex = ref.digest.slice('sha256:'.length);
  const subjects = Array.isArray(st.subject) ? (st.subject as Array<Record<string, unknown>>) : [];
  const subj = subjects.find((s) => (s?.digest as Record<string, unknown> | undefined)?.sha256 === hex);
  if (!subj) return 'signature is for another digest';
  if (typeof subj.name === 'string' && subj.name) {
    let named: { registry: string; repository: string } | undefined;
    try { named = normalizeName(subj.name.split('@')[0]!); } catch { named = undefined; }
    if (!named) return `statement subject "${subj.name.slice(0, 120)}" is not a reference`;
    if (named.registry !== ref.registry || named.repository !== ref.repository) return `signature names another repository (${named.registry}/${named.repository})`;
  }
  const ann = { ...(((subj.annotations ?? {}) as Record<string, unknown>)), ...(((st.predicate as Record<string, unknown> | undefined)?.annotations ?? {}) as Record<string, unknown>) };
  for (const [k, v] of Object.entries(annotations)) {
    if (ann[k] !== v) return `annotation ${k} is ${ann[k] === undefined ? 'missing' : `"${String(ann[k]).slice(0, 60)}"`}, "${v}" required`;
  }
  return undefined;
}
