// cosign-style signatures stored as `sha256-<hex>.sig` attachments (what
// `cosign sign --key` and `skopeo copy --sign-by-sigstore-private-key` with
// use-sigstore-attachments write): an OCI manifest whose layers are
// simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`)
// with the base64 signature in the `dev.cosignproject.cosign/signature`
// annotation. Owns: fetching those, checking each signature against the
// trusted keys (or, for keyless layers carrying a Fulcio certificate, through
// the verifier's keyless check: bundles.ts verifyCosignKeyless), and checking the payload names this exact digest and
// repository with the required annotations.
import { createPublicKey, verify as cryptoVerify, constants, type KeyObject } from 'node:crypto';
import type { TrustedKey } from '@bulkhead/shared';
import { normalizeName, RegistryError, type ImageRef, type RegistryClient } from './registry-client';

import { COSIGN_CERTIFICATE_ANNOTATION, COSIGN_PAYLOAD_TYPE, COSIGN_SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE } from './media-types';

export { COSIGN_PAYLOAD_TYPE, COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIG_ARTIFACT_TYPE, SIMPLE_SIGNING_MEDIA_TYPE } from './media-types';
/** Signature layers looked at per attachment; more is garbage or an attack. */
const MAX_LAYERS = 32;
/** A simple-signing payload is ~300 bytes, a few KB with annotations (32 layers × this is held at once). */
const MAX_PAYLOAD_BYTES = 64 * 1024;

/** What one signature source found (cosign attachments, bundles). */
export interface SourceResult {
  /** Signatures seen (valid or not). */
  found: number;
  /** Names of the trusted keys/identities with a valid signature that counted. */
  signers: Set<string>;
  /** Why signatures did not count, one short phrase each (deduplicated, bounded by the caller). */
  problems: string[];
}

export interface PreparedKey {
  name: string;
  key: KeyObject;
}

/** Parse the trusted keys once (a bad PEM names the key, never throws later). */
export function prepareKeys(keys: readonly TrustedKey[]): { keys: PreparedKey[]; errors: string[] } {
  const out: PreparedKey[] = [];
  const errors: string[] = [];
  for (const k of keys) {
    try {
      const key = createPublicKey(k.pem);
      out.push({ name: k.name, key });
    } catch {
      errors.push(`trusted key ${k.name} is not a PEM public key`);
    }
  }
  return { keys: out, errors };
}

/**
 * Does `sig` over `data` verify with `key`, the way cosign/sigstore verifies
 * per key type: ECDSA (ASN.1 DER) with SHA-256 for P-256, SHA-384 for P-384,
 * SHA-512 for P-521 (sigstore's LoadVerifier defaults; SHA-256 also accepted,
 * as `cosign verify` uses SHA-256 unless told otherwise); Ed25519 over the
 * message itself; RSA PKCS#1 v1.5 with SHA-256 (cosign's default for RSA
 * keys) and RSA-PSS with SHA-256.
 */
export function verifyWithKey(key: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    switch (key.asymmetricKeyType) {
      case 'ec': {
        const curve = key.asymmetricKeyDetails?.namedCurve;
        const hashes = curve === 'secp384r1' ? ['sha384', 'sha256'] : curve === 'secp521r1' ? ['sha512', 'sha256'] : ['sha256'];
        return hashes.some((h) => cryptoVerify(h, data, key, sig));
      }
      case 'ed25519':
        return cryptoVerify(null, data, key, sig);
      case 'rsa':
        return cryptoVerify('sha256', data, key, sig)
          || cryptoVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig);
      case 'rsa-pss':
        return cryptoVerify('sha256', data, { key, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig);
      default:
        return false;
    }
  } catch {
    return false;
  }
}

/**
 * Check a simple-signing payload: type, exact digest, same repository,
 * required annotations. Returns the problem, or undefined when it holds.
 */
export function checkSimpleSigningPayload(payload: Buffer, ref: ImageRef, annotations: Record<string, string>): string | undefined {
  let j: unknown;
  try { j = JSON.parse(payload.toString('utf8')); } catch { return 'payload is not JSON'; }
  const crit = (j as { critical?: unknown })?.critical as Record<string, unknown> | undefined;
  if (!crit || typeof crit !== 'object') return 'payload has no "critical" section';
  if (crit.type !== COSIGN_PAYLOAD_TYPE) return `payload type is "${String(crit.type).slice(0, 60)}"`;
  const image = crit.image as Record<string, unknown> | undefined;
  const signed = image?.['docker-manifest-digest'];
  if (signed !== ref.digest) return `signature is for another digest (${typeof signed === 'string' ? signed.slice(0, 80) : 'none'})`;
  const identity = (crit.identity as Record<string, unknown> | undefined)?.['docker-reference'];
  if (typeof identity !== 'string' || !identity) return 'payload names no docker-reference';
  let other: { registry: string; repository: string };
  try {
    other = normalizeName(identity.split('@')[0]!);
  } catch {
    return `payload docker-reference "${identity.slice(0, 120)}" is not a reference`;
  }
  if (other.registry !== ref.registry || other.repository !== ref.repository) {
    return `signature names another repository (${other.registry}/${other.repository})`;
  }
  const optional = ((j as { optional?: unknown }).optional ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(annotations)) {
    if (optional?.[k] !== v) return `annotation ${k} is ${optional?.[k] === undefined ? 'missing' : `"${String(optional[k]).slice(0, 60)}"`}, "${v}" required`;
  }
  return undefined;
}

/**
 * Verifies a keyless layer (one carrying a Fulcio certificate annotation): the signer's name
 * (a trusted identity), or why not. Given by the verifier, which owns the trusted root and
 * identities and loads @sigstore/* only when such a layer shows up.
 */
export type KeylessLayerCheck = (payload: Buffer, sig: Buffer, annotations: Record<string, unknown>) => { signer: string } | string;

/** Find and check the cosign `.sig` attachment of `ref`. Network failures throw RegistryError('unreachable'). */
export async function verifyCosignAttachment(
  client: RegistryClient, ref: ImageRef, keys: readonly PreparedKey[], annotations: Record<string, string>, deadline: number, keyless?: KeylessLayerCheck,
): Promise<SourceResult> {
  return verifySignatureManifest(client, ref, `${ref.digest.replace(':', '-')}.sig`, keys, annotations, deadline, keyless);
}

async function verifySignatureManifest(
  client: RegistryClient, ref: ImageRef, tag: string, keys: readonly PreparedKey[], annotations: Record<string, string>, deadline: number, keyless?: KeylessLayerCheck,
): Promise<SourceResult> {
  const what = `signature attachment ${tag}`;
  let manifest: unknown;
  try {
    const f = await client.getManifest(ref.registry, ref.repository, tag, deadline);
    manifest = JSON.parse(f.body.toString('utf8'));
  } catch (e) {
    if (e instanceof RegistryError && e.kind === 'not-found') return { found: 0, signers: new Set(), problems: [] };
    if (e instanceof RegistryError && e.kind === 'unreachable') throw e;
    return { found: 1, signers: new Set(), problems: [`${what} is unreadable (${e instanceof Error ? e.message : 'bad JSON'})`] };
  }
  return checkSignatureLayers(client, ref, manifest, what, keys, annotations, deadline, keyless);
}

/**
 * The simple-signing layers of a signature manifest (a `.sig` attachment, or
 * a referrer of artifactType application/vnd.dev.cosign.artifact.sig.v1+json
 * as `cosign sign --registry-referrers-mode=oci-1-1` writes).
 */
export async function checkSignatureLayers(
  client: RegistryClient, ref: ImageRef, manifest: unknown, what: string, keys: readonly PreparedKey[], annotations: Record<string, string>, deadline: number,
  keyless?: KeylessLayerCheck,
): Promise<SourceResult> {
  const result: SourceResult = { found: 0, signers: new Set(), problems: [] };
  const layers = (manifest as { layers?: unknown })?.layers;
  if (!Array.isArray(layers)) {
    result.found = 1;
    result.problems.push(`${what} has no layers`);
    return result;
  }
  const candidates = layers.slice(0, MAX_LAYERS).filter((l): l is Record<string, unknown> => !!l && typeof l === 'object');
  await Promise.all(candidates.map(async (layer) => {
    if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) return;
    result.found++;
    const ann = (layer.annotations ?? {}) as Record<string, unknown>;
    const b64 = ann[COSIGN_SIGNATURE_ANNOTATION];
    if (typeof b64 !== 'string' || !b64) { result.problems.push('signature layer without a signature annotation'); return; }
    const sig = Buffer.from(b64, 'base64');
    if (sig.length === 0 || sig.length > 4096) { result.problems.push('signature annotation is not a signature'); return; }
    if (typeof layer.size === 'number' && layer.size > MAX_PAYLOAD_BYTES) { result.problems.push(`signature payload of ${layer.size} bytes is too large`); return; }
    let payload: Buffer;
    try {
      payload = (await client.getBlob(ref.registry, ref.repository, String(layer.digest), deadline, MAX_PAYLOAD_BYTES)).body;
    } catch (e) {
      if (e instanceof RegistryError && e.kind === 'unreachable') throw e;
      result.problems.push(`signature payload unreadable (${e instanceof Error ? e.message : String(e)})`);
      return;
    }
    const signer = keys.find((k) => verifyWithKey(k.key, payload, sig));
    let name: string;
    let by: string;
    if (signer) {
      name = signer.name;
      by = `key ${signer.name}`;
    } else if (typeof ann[COSIGN_CERTIFICATE_ANNOTATION] === 'string') {
      // A keyless signature: the key is in the Fulcio certificate, trusted through the root.
      if (!keyless) { result.problems.push('keyless signature, but the rule trusts no keyless identities'); return; }
      const outcome = keyless(payload, sig, ann);
      if (typeof outcome === 'string') { result.problems.push(outcome); return; }
      name = outcome.signer;
      by = `identity ${outcome.signer}`;
    } else {
      result.problems.push('bad signature or signature by an unknown key');
      return;
    }
    const bad = checkSimpleSigningPayload(payload, ref, annotations);
    if (bad) { result.problems.push(`signature by ${by}: ${bad}`); return; }
    result.signers.add(name);
  }));
  return result;
}
