// Owns `bulkhead login`, `bulkhead logout`, `bulkhead whoami` and the token
// cache: login exchanges the API key for a short-lived bearer token and keeps
// it 0600 in $XDG_CONFIG_HOME/bulkhead/token.json (or
// ~/.config/bulkhead/token.json), with the API URL and CA it was issued
// for. Later commands given no --api-key / BULKHEAD_API_KEY use it while it
// is valid — and only against that same API URL, so a token never travels
// to another controller.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDuration } from '@bulkhead/client';
import { writeSecretFile } from '../secret-file';
import type { ApiClient } from '../client';
import type { Token as TokenDto, WhoAmI as WhoAmIDto } from '@bulkhead/client';
import { formatKeyValues } from '../table';
import { toJson, type CommandContext } from './context';

export interface TokenCache {
  /** The API base URL the token was issued by (normalized, e.g. "https://ctl.example:8443/"). */
  api: string;
  /** Absolute path of the CA file used at login, if any. */
  ca: string | null;
  token: string;
  expiresAt: string;
  keyId: string;
  keyName: string;
  role: string;
  projects: string[];
  /**
   * The controller's clock minus this host's at login (ms; absent when under 2 s). `expiresAt`
   * is on the controller's clock; with a skewed host clock the token would otherwise be taken
   * for expired early (or sent after it expired).
   */
  clockOffsetMs?: number;
}

type Env = Record<string, string | undefined>;

export function tokenCachePath(env: Env): string {
  const xdg = env['XDG_CONFIG_HOME'];
  const base = xdg !== undefined && xdg !== '' ? xdg : join(env['HOME'] || homedir(), '.config');
  return join(base, 'bulkhead', 'token.json');
}

/** The cached login, or undefined when there is none (or it is unreadable). */
export function readTokenCache(env: Env): TokenCache | undefined {
  const path = tokenCachePath(env);
  if (!existsSync(path)) return undefined;
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<TokenCache>;
    if (typeof v.api !== 'string' || typeof v.token !== 'string' || typeof v.expiresAt !== 'string') return undefined;
    return {
      api: v.api,
      ca: typeof v.ca === 'string' ? v.ca : null,
      token: v.token,
      expiresAt: v.expiresAt,
      keyId: String(v.keyId ?? ''),
      keyName: String(v.keyName ?? ''),
      role: String(v.role ?? ''),
      projects: Array.isArray(v.projects) ? v.projects.map(String) : [],
      ...(typeof v.clockOffsetMs === 'number' && Number.isFinite(v.clockOffsetMs) ? { clockOffsetMs: v.clockOffsetMs } : {}),
    };
  } catch {
    return undefined;
  }
}

export function writeTokenCache(env: Env, c: TokenCache): string {
  const path = tokenCachePath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeSecretFile(path, JSON.stringify(c, null, 2) + '\n');
  return path;
}

/** Normalized form of an API base URL, for comparing with the cache. */
export function apiKeyOf(baseUrl: URL | string): string {
  return new URL(typeof baseUrl === 'string' ? baseUrl : baseUrl.href).href;
}

/**
 * The cached token for `baseUrl`, if one was cached for it; throws (via
 * `fail`) when it has expired, so the user learns to log in again instead
 * of reading a 401.
 */
export function cachedToken(cache: TokenCache | undefined, baseUrl: URL, now: Date, fail: (m: string) => Error): string | undefined {
  if (!cache || cache.api !== apiKeyOf(baseUrl)) return undefined;
  // On this host's clock: the controller's expiry, less how far its clock was ahead at login.
  const exp = Date.parse(cache.expiresAt) - (cache.clockOffsetMs ?? 0);
  if (!(exp > now.getTime())) throw fail(`the login token for ${cache.api} expired at ${cache.expiresAt}; run \`bulkhead login\` again (or set BULKHEAD_API_KEY)`);
  return cache.token;
}

export interface LoginDeps {
  env: Env;
  /** A client that uses the API key from --api-key / BULKHEAD_API_KEY (never the cached token), and the CA file it trusts. */
  connectWithKey: (cmd: Command) => { api: ApiClient; json: boolean; caFile: string | undefined };
}

export function registerLoginCommands(program: Command, ctx: CommandContext, deps: LoginDeps): void {
  program
    .command('login')
    .description('exchange the API key for a short-lived token and cache it (0600) for later commands')
    .option('--ttl <duration>', 'requested token lifetime (the controller caps it at its --token-max-ttl)', '15m')
    .addHelpText(
      'after',
      '\nThe token is cached in $XDG_CONFIG_HOME/bulkhead/token.json (default ~/.config/bulkhead/token.json), with the\n' +
        'API URL and CA it is for. Commands given no API key use it until it expires.\n' +
        '\nExample:\n  BULKHEAD_API_KEY=$(cat admin.apikey) bulkhead --api https://ctl.example:8443 --ca ca.crt login --ttl 1h\n  bulkhead agents\n',
    )
    .action(async (o: { ttl: string }, cmd: Command) => {
      try {
        parseDuration(o.ttl, '--ttl');
      } catch (e) {
        throw ctx.usageError((e as Error).message);
      }
      const { api, json, caFile } = deps.connectWithKey(cmd);
      const sent = Date.now();
      const t = await api.requestJson<TokenDto>('POST', '/v1/auth/token', { body: JSON.stringify({ ttl: o.ttl }) });
      const clockOffsetMs = controllerClockOffsetMs(t.token, sent, Date.now());
      const path = writeTokenCache(deps.env, {
        api: apiKeyOf(api.baseUrl),
        ca: caFile !== undefined ? resolve(caFile) : null,
        token: t.token,
        expiresAt: t.expiresAt,
        keyId: t.keyId,
        keyName: t.keyName,
        role: t.role,
        projects: t.projects,
        ...(clockOffsetMs !== 0 ? { clockOffsetMs } : {}),
      });
      const { token: _secret, ...shown } = t;
      void _secret;
      ctx.out(
        json
          ? toJson({ ...shown, cachedIn: path })
          : `Logged in to ${api.baseUrl.origin} as ${t.keyName} (${t.keyId}), role ${t.role}${t.projects.length > 0 ? `, projects ${t.projects.join(', ')}` : ''}.\n` +
              `Token cached in ${path} until ${t.expiresAt}.\n`,
      );
    });

  program
    .command('logout')
    .description('forget the cached login token')
    .addHelpText('after', '\nThe token itself stays valid until it expires, unless its API key is revoked (bulkhead keys revoke).\n')
    .action(() => {
      const path = tokenCachePath(deps.env);
      const cache = readTokenCache(deps.env);
      if (!existsSync(path)) {
        ctx.out('not logged in\n');
        return;
      }
      rmSync(path, { force: true });
      ctx.out(`logged out: removed ${path}${cache ? ` (the token stays valid until ${cache.expiresAt} unless key ${cache.keyId} is revoked)` : ''}\n`);
    });

  program
    .command('whoami')
    .description('show the credential in use: key, role, projects and expiry')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = ctx.client(cmd);
      const w = await api.getJson<WhoAmIDto>('/v1/auth/whoami');
      ctx.out(
        json
          ? toJson(w)
          : formatKeyValues([
              ['Credential', w.kind === 'token' ? `token ${w.tokenId ?? ''} of key ${w.keyId}` : `API key ${w.keyId}`],
              ['Key name', w.keyName],
              ['Role', w.role],
              ['Projects', w.projects.length > 0 ? w.projects.join(', ') : '(all)'],
              ['Expires', w.expiresAt ?? 'never'],
              ['Key expires', w.keyExpiresAt ?? 'never'],
            ]),
      );
    });
}

/**
 * How far the controller's clock is ahead of this host's (negative: behind), from the token's
 * issue time (`iat`, whole seconds, on the controller's clock) and the local times the request
 * was sent and answered. 0 when under 2 s (the measurement's own error) or unreadable.
 */
export function controllerClockOffsetMs(token: string, sentMs: number, answeredMs: number): number {
  let iatMs: number;
  try {
    const body = token.slice(token.indexOf('_') + 1, token.lastIndexOf('.'));
    const iat = (JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { iat?: unknown }).iat;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return 0;
    iatMs = iat * 1000;
  } catch {
    return 0;
  }
  // iat lies in [sent, answered] on a synchronized clock (floored to the second).
  const offset = iatMs < sentMs - 1000 ? iatMs - sentMs : iatMs > answeredMs ? iatMs - answeredMs : 0;
  return Math.abs(offset) >= 2000 ? Math.round(offset) : 0;
}
