// Parses controller addresses: one "HOST:PORT" / "[v6]:PORT", or a list of them
// (`--controller a:7443,b:7443`, the flag repeated, or both) naming replicas of one
// controller (same CA, same database). The agent tries them in the order given and
// moves to the next one when a connection fails or a stream drops (controller-link.ts).
import { isIPv4, isIPv6 } from 'node:net';
import { BulkheadError } from '@bulkhead/shared';

/** More addresses than this is a mistake (a pasted host list); a load balancer or a DNS name serves large pools. */
export const MAX_CONTROLLER_ADDRESSES = 16;

export function splitController(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:/\s,]+)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `controller address "${addr}" is not HOST:PORT (e.g. controller.example.com:7443)`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * A list of controller addresses from comma-separated strings (each may hold one address or
 * several). Every entry must be HOST:PORT; an empty entry (`a:1,,b:2`, a trailing comma), a
 * bad port or the same address twice (host compared without case) is refused naming the entry,
 * so a typo is found at start-up rather than as one replica that is never reached.
 */
export function parseControllerList(input: string | readonly string[]): string[] {
  const given = typeof input === 'string' ? [input] : input;
  const out: string[] = [];
  const seen = new Map<string, string>();
  for (const value of given) {
    const parts = value.split(',');
    parts.forEach((raw, i) => {
      const entry = raw.trim();
      if (entry === '') {
        throw new BulkheadError(
          'BK_ERR_CONFIG_INVALID',
          `controller address list "${value}" has an empty entry (position ${i + 1} of ${parts.length}); give HOST:PORT[,HOST:PORT…] without empty items`,
        );
      }
      const { host, port } = splitController(entry);
      const key = `${host.toLowerCase()}:${port}`;
      const before = seen.get(key);
      if (before !== undefined) {
        throw new BulkheadError('BK_ERR_CONFIG_INVALID', `controller address "${entry}" is given twice (also as "${before}"); list each replica once`);
      }
      seen.set(key, entry);
      out.push(entry);
    });
  }
  if (out.length === 0) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'no controller address given; use --controller HOST:PORT[,HOST:PORT…]');
  if (out.length > MAX_CONTROLLER_ADDRESSES) {
    throw new BulkheadError(
      'BK_ERR_CONFIG_INVALID',
      `${out.length} controller addresses given; at most ${MAX_CONTROLLER_ADDRESSES} (put a larger pool behind a load balancer or one DNS name)`,
    );
  }
  return out;
}

/** The list as the flag takes it, for messages and hints: "a:7443,b:7443". */
export function formatControllerList(list: readonly string[]): string {
  return list.join(',');
}

/**
 * The gRPC channel target for one controller address. An IP address gets grpc-js's `ipv4:` or
 * `ipv6:` scheme: the same connection, authority and TLS check (against that IP) as the default
 * DNS scheme, but without a DNS resolver, which builds a c-ares channel for every new channel —
 * and the link builds a channel per attempt (about a twentieth of a simulated agent's CPU in a
 * replica failover). A host name keeps the default scheme (DNS).
 */
export function grpcTarget(address: string): string {
  const { host } = splitController(address);
  if (isIPv4(host)) return `ipv4:${address.trim()}`;
  if (isIPv6(host)) return `ipv6:${address.trim()}`;
  return address;
}
