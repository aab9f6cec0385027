// Owns checking the credential of a /v1 request: an API key
// ("bk_ak_…_…", verified by api/api-keys.ts), a bearer token ("bkt_…",
// bearer-tokens.ts, whose key is looked up on every use), or — only when no
// Authorization header is sent — a browser session cookie (sessions.ts; its
// key is looked up on every use too). Failed attempts (for a session cookie: only an
// id naming no session — a known session that ended is a stale tab, not a guess)
// count against the client address and, for API keys, the presented key id
// *at that address* (rate-limiter.ts says why not the key id alone); a
// bucket over the limit gets 429 before any credential is checked.
import { BulkheadError, type Logger } from '@bulkhead/shared';
import type { Store } from '../store/store';
import { parseApiKey, verifyApiKey } from '../api/api-keys';
import { looksLikeToken, verifyToken } from './bearer-tokens';
import type { Principal } from './principal';
import type { AuthFailureLimits, LimitHit } from './rate-limiter';
import { roleAtLeast } from './roles';
import { projectsWithin } from './project-scope';
import type { SessionStore } from './session-store';
import { hashSessionId, looksLikeSessionId, publicSessionId } from './sessions';

const BEARER_RE = /^Bearer[ \t]+(\S+)[ \t]*$/i;
/** last_used_at is written at most this often per key. */
const TOUCH_EVERY_MS = 60_000;

export interface AuthenticatorOptions {
  store: Pick<Store, 'getApiKey' | 'touchApiKey'>;
  /** Browser sessions; without them a session cookie is refused. */
  sessions?: SessionStore | undefined;
  /** A session unused this long is over. */
  sessionIdleMs: number;
  tokenSecret: Buffer;
  limits: AuthFailureLimits;
  logger: Logger;
}

/** What the authenticator learnt about a request, even when it refused it (for the audit trail). */
export interface AuthAttempt {
  /** The key id the caller presented (unverified), when it was shaped like one. */
  presentedKeyId?: string;
  /** Seconds until the caller may retry, on 429. */
  retryAfterS?: number;
  /** The bucket that was over the limit, on 429. */
  limitedBucket?: string;
  /** The session cookie was the credential and was refused (401): the answer clears it. */
  sessionCookieRejected?: boolean;
  /** The session cookie named no session at all (malformed or unknown id): counted as a failed attempt. */
  sessionGuess?: boolean;
}

export class Authenticator {
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly o: AuthenticatorOptions) {}

  /**
   * Resolves to the principal, or throws BK_ERR_UNAUTHENTICATED (401) / BK_ERR_RATE_LIMITED (429).
   * `sessionId` is the session cookie's value: used only when there is no Authorization header.
   */
  async authenticate(header: string | undefined, clientIp: string, now: Date, seen: AuthAttempt = {}, sessionId?: string): Promise<Principal> {
    const ms = now.getTime();
    this.throttle(this.o.limits.checkAddress(clientIp, ms), seen);
    if ((header === undefined || header === '') && sessionId !== undefined && sessionId !== '') {
      try {
        const p = await this.fromSession(sessionId, now, seen);
        this.touch(p, now);
        return p;
      } catch (err) {
        if (err instanceof BulkheadError && err.code === 'BK_ERR_UNAUTHENTICATED') {
          // The browser is told to drop the cookie (api-security.ts sends the cleared cookie).
          seen.sessionCookieRejected = true;
          // Only an id no session has (malformed or unknown) is a guess. A session this
          // controller knows that ended (logged out, idle, past its lifetime, its key gone) is a
          // stale console tab, not an attack: counting it would lock out the valid API keys
          // used from the same address.
          if (seen.sessionGuess === true) {
            this.throttle(this.o.limits.checkAddress(clientIp, ms), seen);
            this.o.limits.fail(clientIp, undefined, ms);
          }
        }
        throw err;
      }
    }
    if (header === undefined || header === '') {
      // No credential is not a guess: not counted, but still refused (and audited).
      throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'missing "Authorization: Bearer <api key or token>" header');
    }
    const value = BEARER_RE.exec(header)?.[1];
    const keyId = value !== undefined && !looksLikeToken(value) ? parseApiKey(value)?.keyId : undefined;
    if (keyId !== undefined) {
      seen.presentedKeyId = keyId;
      this.throttle(this.o.limits.checkKey(keyId, clientIp, ms), seen);
    }
    try {
      const p = value !== undefined && looksLikeToken(value) ? await this.fromToken(value, now, seen) : await this.fromKey(header, now);
      this.touch(p, now);
      return p;
    } catch (err) {
      if (err instanceof BulkheadError && err.code === 'BK_ERR_UNAUTHENTICATED') {
        // Checked again now: attempts that arrived together all passed the
        // check above before any of them was counted. Beyond the limit, the
        // answer is 429, whatever was presented.
        this.throttle(this.o.limits.checkAddress(clientIp, ms), seen);
        if (keyId !== undefined) this.throttle(this.o.limits.checkKey(keyId, clientIp, ms), seen);
        this.o.limits.fail(clientIp, keyId, ms);
      }
      throw err;
    }
  }

  /**
   * Whether a principal authenticated earlier still holds (a long-lived event stream asks at each
   * heartbeat): its key exists, is neither revoked nor expired; a token is not past its exp; a
   * session is not logged out, idle past its timeout, or past its lifetime. Counts no failure.
   */
  async stillValid(p: Principal, now: Date): Promise<boolean> {
    const ms = now.getTime();
    if (p.expiresAt !== null && p.expiresAt.getTime() <= ms) return false;
    const key = await this.o.store.getApiKey(p.keyId);
    if (!key || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt.getTime() <= ms)) return false;
    if (p.session) {
      const s = await this.o.sessions?.getSession(p.session.idHash);
      if (!s || s.revokedAt !== null || s.expiresAt.getTime() <= ms || s.lastUsedAt.getTime() + this.o.sessionIdleMs <= ms) return false;
    }
    return true;
  }

  /** Resolves when pending last-used writes are done (call before closing the store). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  private throttle(over: LimitHit | undefined, seen: AuthAttempt): void {
    if (!over) return;
    seen.retryAfterS = Math.max(1, Math.ceil(over.retryAfterMs / 1000));
    seen.limitedBucket = over.bucket;
    throw new BulkheadError('BK_ERR_RATE_LIMITED', `too many failed authentication attempts ${over.scope}; retry in ${seen.retryAfterS}s`);
  }

  private async fromKey(header: string, now: Date): Promise<Principal> {
    const key = await verifyApiKey(this.o.store, header, now);
    return {
      kind: 'key',
      keyId: key.id,
      keyName: key.name,
      role: key.role,
      projects: [...key.projects],
      keyExpiresAt: key.expiresAt,
      expiresAt: key.expiresAt,
      tokenId: null,
      key,
    };
  }

  private async fromToken(token: string, now: Date, seen: AuthAttempt): Promise<Principal> {
    const claims = verifyToken(this.o.tokenSecret, token, now);
    seen.presentedKeyId = claims.kid;
    const key = await this.o.store.getApiKey(claims.kid);
    if (!key) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `the API key behind this token (${claims.kid}) no longer exists`);
    if (key.revokedAt !== null) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `the API key behind this token (${key.id}) was revoked`);
    if (key.expiresAt !== null && key.expiresAt.getTime() <= now.getTime()) {
      throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `the API key behind this token (${key.id}) expired at ${key.expiresAt.toISOString()}`);
    }
    // Tokens are minted within their key's rights and keys never change; a
    // token claiming more is not ours to honour, signature or not.
    if (!roleAtLeast(key.role, claims.role) || !projectsWithin(claims.projects, key.projects)) {
      throw new BulkheadError('BK_ERR_UNAUTHENTICATED', "the token claims more rights than its API key holds");
    }
    const exp = new Date(claims.exp * 1000);
    return {
      kind: 'token',
      keyId: key.id,
      keyName: key.name,
      role: claims.role,
      projects: [...claims.projects],
      keyExpiresAt: key.expiresAt,
      expiresAt: exp,
      tokenId: claims.jti,
      key,
    };
  }

  private async fromSession(id: string, now: Date, seen: AuthAttempt): Promise<Principal> {
    if (!this.o.sessions) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'this controller keeps no sessions; send "Authorization: Bearer <api key>"');
    if (!looksLikeSessionId(id)) {
      seen.sessionGuess = true;
      throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'malformed session cookie; log in again');
    }
    const idHash = hashSessionId(id);
    const s = await this.o.sessions.getSession(idHash);
    // Unknown (a guess: counted), logged out and pruned are one answer: the caller only learns to log in again.
    if (!s) seen.sessionGuess = true;
    if (!s || s.revokedAt !== null) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', 'no such session (logged out or expired); log in again');
    const ms = now.getTime();
    if (s.expiresAt.getTime() <= ms) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `session ended at ${s.expiresAt.toISOString()} (maximum lifetime); log in again`);
    if (s.lastUsedAt.getTime() + this.o.sessionIdleMs <= ms) {
      throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `session unused for more than ${Math.round(this.o.sessionIdleMs / 1000)}s (idle timeout); log in again`);
    }
    const key = await this.o.store.getApiKey(s.keyId);
    if (!key) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `the API key behind this session (${s.keyId}) no longer exists`);
    if (key.revokedAt !== null) throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `the API key behind this session (${key.id}) was revoked`);
    if (key.expiresAt !== null && key.expiresAt.getTime() <= ms) {
      throw new BulkheadError('BK_ERR_UNAUTHENTICATED', `the API key behind this session (${key.id}) expired at ${key.expiresAt.toISOString()}`);
    }
    await this.touchSession(idHash, s.lastUsedAt, now);
    return {
      kind: 'session',
      keyId: key.id,
      keyName: key.name,
      role: key.role,
      projects: [...key.projects],
      keyExpiresAt: key.expiresAt,
      expiresAt: s.expiresAt,
      tokenId: null,
      session: { publicId: publicSessionId(idHash), id, idHash, createdAt: s.createdAt, expiresAt: s.expiresAt },
      key,
    };
  }

  /**
   * Moves the session's idle clock. Written at most every tenth of the idle timeout (and at
   * least once a minute), so a busy console costs a write now and then, not one per request;
   * the idle timeout is then exact to within that tenth, erring on the early side. The write is
   * awaited (it is rare): a request that follows at once must see the moved clock, or a busy
   * session could be judged idle from a stale last use.
   */
  private async touchSession(idHash: string, lastUsedAt: Date, now: Date): Promise<void> {
    if (now.getTime() - lastUsedAt.getTime() < Math.min(60_000, this.o.sessionIdleMs / 10)) return;
    await this.o.sessions!.touchSession(idHash, now).catch((err: unknown) => this.o.logger.warn({ err }, 'recording session use failed'));
  }

  /** Records last use without delaying the request; at most once a minute per key. */
  private touch(p: Principal, now: Date): void {
    const last = p.key.lastUsedAt?.getTime();
    if (last !== undefined && now.getTime() - last < TOUCH_EVERY_MS) return;
    const w = this.o.store.touchApiKey(p.keyId, now).catch((err: unknown) => this.o.logger.warn({ err, keyId: p.keyId }, 'recording API key use failed'));
    this.pending.add(w);
    void w.finally(() => this.pending.delete(w));
  }
}
