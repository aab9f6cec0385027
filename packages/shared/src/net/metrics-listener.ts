// Owns the plain-HTTP listener both daemons serve Prometheus metrics on:
// parsing and vetting its address (loopback unless remote scraping is
// explicitly allowed) and answering `GET /metrics`. It knows nothing about
// prom-client: each daemon hands in a function that renders its registry.
//
// Plain HTTP on loopback is the Prometheus norm (node_exporter, dockerd's
// own --metrics-addr): a scraper on the same host, or a local proxy that adds
// TLS, reads it. Metrics reveal fleet shape (agent counts, rule ids), so a
// non-loopback address must be asked for by name.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList, isIP, type AddressInfo } from 'node:net';
import { BulkheadError } from '../errors/registry';
import type { Logger } from '../logging/logger';

export interface MetricsAddress {
  host: string;
  port: number;
}

/** "127.0.0.1:9464", "[::1]:9464" or "localhost:9464" → host and port; a clear error otherwise. */
export function parseMetricsAddress(addr: string, flag: string): MetricsAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${flag}: "${addr}" is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** 127.0.0.0/8, ::1 (any spelling), ::ffff:127.x and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  if (family === 0) return false;
  return LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Parses `--metrics-listen` and refuses a non-loopback address unless
 * `allowRemote` (`--metrics-allow-remote`) says so.
 */
export function resolveMetricsAddress(addr: string, allowRemote: boolean, flag = '--metrics-listen'): MetricsAddress {
  const a = parseMetricsAddress(addr, flag);
  if (!allowRemote && !isLoopbackHost(a.host)) {
    throw new BulkheadError(
      'BK_ERR_CONFIG_INVALID',
      `${flag} ${addr} is not a loopback address; metrics are plain HTTP without authentication, so serving them beyond this host needs --metrics-allow-remote`,
    );
  }
  return a;
}

export interface MetricsListenerOptions {
  address: MetricsAddress;
  /** Renders the exposition text; called once per scrape. */
  render: () => Promise<{ contentType: string; body: string }>;
  logger: Logger;
}

export interface MetricsListener {
  /** The bound port (useful with port 0). */
  port: number;
  host: string;
  close(): Promise<void>;
}

/** Binds the listener; rejects (BK_ERR_STARTUP_FAILED) when the address cannot be bound. */
export async function startMetricsListener(o: MetricsListenerOptions): Promise<MetricsListener> {
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found; metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    o.render().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        o.logger.error({ err }, 'rendering metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('rendering metrics failed; see the log\n');
      },
    );
  });
  // A scraper holds one keep-alive connection; nothing here is slow.
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new BulkheadError('BK_ERR_STARTUP_FAILED', `metrics listener on ${o.address.host}:${o.address.port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(o.address.port, o.address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => o.logger.error({ err }, 'metrics listener error'));
  const bound = server.address() as AddressInfo;
  return {
    port: bound.port,
    host: o.address.host,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The daemons' metrics listener: off when `listen` is undefined; a listener
 * that cannot bind (port taken) is logged and skipped, never fatal — losing
 * the observer must not take down what it observes (for the agent: with the
 * authorization plugin up, an agent that exits leaves dockerd refusing every
 * request).
 */
export async function startOptionalMetricsListener(o: {
  listen: string | undefined;
  allowRemote: boolean;
  render: MetricsListenerOptions['render'];
  logger: Logger;
}): Promise<MetricsListener | undefined> {
  if (o.listen === undefined) return undefined;
  const log = o.logger.child({ component: 'metrics' });
  try {
    const l = await startMetricsListener({ address: resolveMetricsAddress(o.listen, o.allowRemote), render: o.render, logger: log });
    log.info({ host: l.host, port: l.port }, 'metrics listening');
    return l;
  } catch (err) {
    log.error({ err: (err as Error).message, listen: o.listen }, 'metrics listener failed; running without metrics');
    return undefined;
  }
}
