// Owns how the agent reaches the Docker engine: turning a docker host URL
// (flag, config, DOCKER_HOST, or the default socket) into a dockerode client.
// We keep dockerode's own types instead of wrapping every call: the rest of
// the agent depends on the narrow `DockerApi` view below, which a unit test
// can satisfy with a fake.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
// Must precede dockerode: keeps ssh2 (~14 MB RSS) from loading; see the file.
import './stand-ins';
import Dockerode from 'dockerode';
import { BulkheadError } from '@bulkhead/shared';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

export type DockerClient = Dockerode;

/**
 * The part of dockerode the agent's Docker layer uses, promise forms only.
 * A Dockerode instance satisfies it; so does a small fake in a unit test
 * (dockerode's callback overloads would otherwise make every fake a cast).
 */
export interface DockerApi {
  getEvents(options?: Dockerode.GetEventsOptions): Promise<NodeJS.ReadableStream>;
  listContainers(options?: Dockerode.ContainerListOptions): Promise<Dockerode.ContainerInfo[]>;
  getContainer(id: string): { inspect(): Promise<Dockerode.ContainerInspectInfo> };
  getImage(id: string): { inspect(): Promise<Dockerode.ImageInspectInfo> };
  version(): Promise<Dockerode.DockerVersion>;
  info(): Promise<unknown>;
}

export interface DockerTls {
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
}

export interface DockerClientOptions {
  /**
   * `unix:///path/docker.sock`, `tcp://host:2375`, `https://host:2376` or a
   * bare socket path. Default: DOCKER_HOST, else /var/run/docker.sock.
   */
  dockerHost?: string;
  /** Client certificates for a TLS tcp endpoint. Default: DOCKER_CERT_PATH when DOCKER_TLS_VERIFY=1. */
  tls?: DockerTls;
  /** Per-request timeout in ms. Default: none (the event stream is long-lived). */
  timeoutMs?: number;
  /** Environment to read DOCKER_HOST & co. from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

/** The endpoint a docker host URL names, without any credentials. */
export type DockerEndpoint =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'tcp'; host: string; port: number; tls: boolean };

/** Which docker host URL applies: the explicit one, DOCKER_HOST, or the default socket. */
export function resolveDockerHost(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['DOCKER_HOST'];
  if (explicit !== undefined && explicit.trim() !== '') return explicit.trim();
  if (fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv.trim();
  return `unix://${DEFAULT_DOCKER_SOCKET}`;
}

/** Parses a docker host URL; throws BK_ERR_CONFIG_INVALID for anything else. */
export function parseDockerHost(url: string, env: NodeJS.ProcessEnv = process.env): DockerEndpoint {
  if (url.startsWith('/')) return { kind: 'unix', socketPath: url };
  if (url.startsWith('unix://')) {
    const socketPath = url.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw invalid(url, 'a unix socket path must be absolute');
    return { kind: 'unix', socketPath };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw invalid(url, 'not a URL', cause);
  }
  if (u.protocol !== 'tcp:' && u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw invalid(url, `unsupported scheme "${u.protocol}" (use unix://, tcp:// or https://)`);
  }
  if (u.hostname === '') throw invalid(url, 'missing host');
  const tls = u.protocol === 'https:' || env['DOCKER_TLS_VERIFY'] === '1' || u.port === '2376';
  const port = u.port !== '' ? Number(u.port) : tls ? 2376 : 2375;
  // URL keeps IPv6 literals bracketed; sockets want them bare.
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { kind: 'tcp', host, port, tls };
}

/** Builds dockerode's options for an endpoint (exported for tests). */
export function dockerodeOptions(endpoint: DockerEndpoint, opts: Pick<DockerClientOptions, 'tls' | 'timeoutMs' | 'env'> = {}): Dockerode.DockerOptions {
  const base: Dockerode.DockerOptions = {};
  if (opts.timeoutMs !== undefined) base.timeout = opts.timeoutMs;
  if (endpoint.kind === 'unix') {
    // docker-modem merges DOCKER_HOST's settings under ours; an explicit
    // `host: undefined` stops a tcp DOCKER_HOST from winning over our socket.
    return { ...base, socketPath: endpoint.socketPath, host: undefined, protocol: 'http' };
  }
  const out: Dockerode.DockerOptions = {
    ...base, socketPath: undefined, host: endpoint.host, port: endpoint.port, protocol: endpoint.tls ? 'https' : 'http',
  };
  if (endpoint.tls) {
    const tls = opts.tls ?? tlsFromEnv(opts.env ?? process.env);
    if (tls) {
      out.ca = tls.ca;
      out.cert = tls.cert;
      out.key = tls.key;
    }
  }
  return out;
}

/** A dockerode client for the configured engine. Does not connect until first use. */
export function createDockerClient(opts: DockerClientOptions = {}): DockerClient {
  const env = opts.env ?? process.env;
  const endpoint = parseDockerHost(resolveDockerHost(opts.dockerHost, env), env);
  return new Dockerode(dockerodeOptions(endpoint, { ...opts, env }));
}

/** The unix socket a docker host URL names (the default socket when none is given), or undefined for TCP. */
export function dockerSocketPathOf(dockerHost?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const e = parseDockerHost(resolveDockerHost(dockerHost, env), env);
  return e.kind === 'unix' ? e.socketPath : undefined;
}

/** A short human description of where a client points, for logs. */
export function describeDockerHost(dockerHost?: string, env: NodeJS.ProcessEnv = process.env): string {
  const e = parseDockerHost(resolveDockerHost(dockerHost, env), env);
  return e.kind === 'unix' ? `unix://${e.socketPath}` : `${e.tls ? 'https' : 'tcp'}://${e.host}:${e.port}`;
}

function tlsFromEnv(env: NodeJS.ProcessEnv): DockerTls | undefined {
  const dir = env['DOCKER_CERT_PATH'];
  if (dir === undefined || dir === '') return undefined;
  try {
    return {
      ca: readFileSync(join(dir, 'ca.pem')),
      cert: readFileSync(join(dir, 'cert.pem')),
      key: readFileSync(join(dir, 'key.pem')),
    };
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `DOCKER_CERT_PATH=${dir}: cannot read ca.pem/cert.pem/key.pem`, { cause });
  }
}

function invalid(url: string, why: string, cause?: unknown): BulkheadError {
  return new BulkheadError('BK_ERR_CONFIG_INVALID', `docker host "${url}": ${why}`, cause === undefined ? undefined : { cause });
}
