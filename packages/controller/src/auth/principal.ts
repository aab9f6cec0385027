// Owns the authenticated identity of a /v1 request: an API key presented
// directly, a bearer token exchanged for one, or a browser session logged in
// with one (its cookie). Routes read it as
// `req.auth`; project scoping and delegation checks work on it.
import type { ApiKeyRecord } from '../store/store';
import type { Role } from './roles';

export interface Principal {
  kind: 'key' | 'token' | 'session';
  keyId: string;
  keyName: string;
  /** The rights in force: the key's, or the (possibly narrower) token's. */
  role: Role;
  /** Empty = every project. */
  projects: string[];
  /** When the key behind the credential expires (null = never): nothing it mints may outlive it. */
  keyExpiresAt: Date | null;
  /** When this credential stops working: the token's exp, or the key's expiry. */
  expiresAt: Date | null;
  /** The token's jti; null for an API key or a session. */
  tokenId: string | null;
  /** A session: its public id ("ses_…"), and the id itself (the cookie's value, for its CSRF token). */
  session?: { publicId: string; id: string; idHash: string; createdAt: Date; expiresAt: Date };
  key: ApiKeyRecord;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated principal on /v1 routes; null elsewhere. */
    auth: Principal | null;
  }
}

export function describePrincipal(p: Principal): string {
  const what = p.kind === 'token' ? 'token of key' : p.kind === 'session' ? `session ${p.session?.publicId ?? ''} of key` : 'key';
  return `${what} ${p.keyId} "${p.keyName}"`;
}
