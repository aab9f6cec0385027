// Media and artifact types of image signatures, in a module of their own so the
// verifier can recognise a Sigstore bundle without loading @sigstore/* (≈10 MB
// of RSS) until an image actually has one.
export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const COSIGN_PAYLOAD_TYPE = 'cosign container image signature';
/** cosign's oci-1-1 referrer signatures (config media type; cosign sets no artifactType). */
export const COSIGN_SIG_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
export const BUNDLE_ARTIFACT_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
/** Keyless cosign `.sig` layers: the Fulcio certificate (PEM), its chain, the Rekor entry (SET), an RFC 3161 timestamp. */
export const COSIGN_CERTIFICATE_ANNOTATION = 'dev.sigstore.cosign/certificate';
export const COSIGN_CHAIN_ANNOTATION = 'dev.sigstore.cosign/chain';
export const COSIGN_REKOR_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';
export const COSIGN_TIMESTAMP_ANNOTATION = 'dev.sigstore.cosign/rfc3161timestamp';
