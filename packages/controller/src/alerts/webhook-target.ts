// Owns where webhooks may be sent. http(s) URLs only, and never to
// link-local or cloud metadata addresses (the classic SSRF pivot: a webhook
// URL pointing at 169.254.169.254 would post alert bodies — and read the
// answers — from the controller's network position) unless the endpoint is
// created with allowUnsafeTarget. The check runs when the endpoint is saved
// AND on every new connection at delivery time, through the socket's own DNS
// lookup, so a name that later resolves somewhere unsafe (DNS rebinding) is
// refused with the address the socket would actually have used.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { BulkheadError } from '@bulkhead/shared';

/** Host names that are metadata services whatever they resolve to. */
const METADATA_HOSTS = new Set(['metadata.google.internal', 'metadata.goog', 'metadata']);

const UNSAFE = new BlockList();
UNSAFE.addSubnet('169.254.0.0', 16, 'ipv4');          // IPv4 link-local, incl. 169.254.169.254 (AWS, GCP, Azure, OCI, DO)
UNSAFE.addSubnet('fe80::', 10, 'ipv6');               // IPv6 link-local
UNSAFE.addAddress('fd00:ec2::254', 'ipv6');           // AWS IMDS over IPv6
UNSAFE.addAddress('100.100.100.200', 'ipv4');         // Alibaba Cloud metadata

/** Why `address` is unsafe, or undefined when it is fine. Understands IPv4-mapped IPv6. */
export function unsafeAddressReason(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0) return undefined;
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] : undefined;
  const [a, f] = mapped !== undefined ? [mapped, 'ipv4' as const] : [address, family === 4 ? ('ipv4' as const) : ('ipv6' as const)];
  if (!UNSAFE.check(a, f)) return undefined;
  return /^(169\.254\.169\.254|fd00:ec2::254|100\.100\.100\.200)$/i.test(a) ? `${address} is a cloud metadata address` : `${address} is a link-local address`;
}

function bareHost(hostname: string): string {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/** Why the literal host is unsafe (metadata name or unsafe IP literal), before any DNS. */
export function unsafeHostReason(hostname: string): string | undefined {
  const h = bareHost(hostname);
  if (METADATA_HOSTS.has(h)) return `${h} is a cloud metadata host`;
  return unsafeAddressReason(h);
}

/** Parses and checks the form of a webhook URL: http(s), a host, no fragment, ≤ 2048 chars. */
export function parseWebhookUrl(raw: string): URL {
  if (raw.length > 2048) throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the webhook URL is longer than 2048 characters');
  // The URL parser silently drops tabs, CR and LF and trims control
  // characters and spaces at the ends, so what was typed would not be what is
  // stored: refuse instead of guessing what was meant.
  const bad = /[\x00-\x1f\x7f]|^ | $/.exec(raw);
  if (bad) {
    const c = bad[0].charCodeAt(0);
    const name = c === 0x0d ? 'CR' : c === 0x0a ? 'LF' : c === 0x09 ? 'tab' : c === 0x20 ? 'space' : `control character 0x${c.toString(16).padStart(2, '0')}`;
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `url: contains a raw ${name} at position ${bad.index}; percent-encode it or remove it`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the webhook URL is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BulkheadError('BK_ERR_BAD_REQUEST', `webhook URLs must be http:// or https://, not ${url.protocol}//`);
  }
  if (url.hostname === '') throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the webhook URL has no host');
  if (url.hash !== '') throw new BulkheadError('BK_ERR_BAD_REQUEST', 'the webhook URL must not have a #fragment');
  return url;
}

export type Resolver = (host: string) => Promise<string[]>;

export const systemResolver: Resolver = (host) =>
  new Promise((resolve, reject) => dnsLookup(host, { all: true, verbatim: true }, (err, addrs) => (err ? reject(err) : resolve(addrs.map((a) => a.address)))));

/**
 * Saving an endpoint: refuses (BK_ERR_WEBHOOK_UNSAFE_TARGET) a URL whose host
 * is, or resolves to, an unsafe address. A name that does not resolve right
 * now is accepted — delivery re-checks every connection anyway.
 */
export async function checkTargetOnSave(url: URL, allowUnsafe: boolean, resolve: Resolver = systemResolver): Promise<void> {
  if (allowUnsafe) return;
  const literal = unsafeHostReason(url.hostname);
  if (literal !== undefined) throw unsafeError(url, literal);
  const host = bareHost(url.hostname);
  if (isIP(host) !== 0) return;
  let addrs: string[];
  try {
    addrs = await resolve(host);
  } catch {
    return;
  }
  for (const a of addrs) {
    const why = unsafeAddressReason(a);
    if (why !== undefined) throw unsafeError(url, `${host} resolves to ${why.replace(/^\S+ is /, '')} (${a})`);
  }
}

function unsafeError(url: URL, why: string): BulkheadError {
  return new BulkheadError('BK_ERR_WEBHOOK_UNSAFE_TARGET', `refusing webhook target ${url.protocol}//${url.host}: ${why}; set allowUnsafeTarget to override`);
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http(s).request that refuses unsafe addresses. Node calls it
 * for every new connection to a host name (IP literals never reach it, so
 * callers check those with unsafeHostReason first).
 */
export type GuardedLookup = (hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback) => void;

/** The DNS function underneath (tests pass a fake to simulate a name that starts resolving somewhere unsafe). */
export type LookupAllFn = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

export function makeGuardedLookup(lookupAll: LookupAllFn = dnsLookup): GuardedLookup {
  return (hostname, options, callback) => guarded(lookupAll, hostname, options, callback);
}

export const guardedLookup: GuardedLookup = makeGuardedLookup();

function guarded(lookupAll: LookupAllFn, hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback): void {
  lookupAll(hostname, { ...options, all: true }, (err, addrs) => {
    if (err) return callback(err, '');
    for (const a of addrs) {
      const why = unsafeAddressReason(a.address);
      if (why !== undefined) {
        const e = new Error(`${hostname} resolves to ${why.replace(/^\S+ is /, '')} (${a.address}); refused`) as NodeJS.ErrnoException;
        e.code = 'BK_UNSAFE_TARGET';
        return callback(e, '');
      }
    }
    if ((options as LookupAllOptions).all === true) return callback(null, addrs);
    const first = addrs[0];
    if (!first) {
      const e = new Error(`${hostname} has no addresses`) as NodeJS.ErrnoException;
      e.code = 'ENOTFOUND';
      return callback(e, '');
    }
    return callback(null, first.address, first.family);
  });
}
