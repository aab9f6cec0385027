// Owns the agent's state directory: its private key (0600, generated here and
// never sent anywhere), its certificate, the controller CA it pinned, and
// identity.json. Written atomically so a crash mid-enroll leaves no half state.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BulkheadError, writeFileAtomic, writeSecretFile } from '@bulkhead/shared';
import { formatControllerList, parseControllerList } from '../link/controller-address';

export interface AgentIdentity {
  agentId: string;
  /** HOST:PORT of the controller's gRPC listener: the first of `controllers` when there are several. */
  controller: string;
  /**
   * Every address given at enrollment, in order, when more than one (replicas of one
   * controller). Absent for a single address, so identity.json stays readable by agents that
   * know only `controller`. Read it through identityControllers().
   */
  controllers?: string[];
  caFingerprint: string;
  enrolledAt: string;
  certNotAfter: string;
}

export interface AgentCredentials {
  identity: AgentIdentity;
  keyPem: string;
  certPem: string;
  caPem: string;
}

export function statePaths(dir: string) {
  return {
    dir,
    key: join(dir, 'agent.key'),
    cert: join(dir, 'agent.crt'),
    ca: join(dir, 'ca.crt'),
    identity: join(dir, 'identity.json'),
  };
}

/** The controller addresses saved at enrollment, in order (one or more). */
export function identityControllers(identity: AgentIdentity): string[] {
  return identity.controllers && identity.controllers.length > 0 ? [...identity.controllers] : [identity.controller];
}

/** The identity fields for `controllers` (one or more): `controller` is the first, `controllers` only for several. */
export function controllersIdentity(controllers: readonly string[]): Pick<AgentIdentity, 'controller' | 'controllers'> {
  return controllers.length > 1 ? { controller: controllers[0]!, controllers: [...controllers] } : { controller: controllers[0]! };
}

export function isEnrolled(dir: string): boolean {
  return existsSync(statePaths(dir).identity);
}

export function saveCredentials(dir: string, c: AgentCredentials): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = statePaths(dir);
  writeSecretFile(p.key, c.keyPem);
  writeFileAtomic(p.cert, c.certPem);
  writeFileAtomic(p.ca, c.caPem);
  // identity.json last: its presence means the rest is complete.
  writeFileAtomic(p.identity, JSON.stringify(c.identity, null, 2) + '\n', 0o600);
}

/**
 * Reads and checks the credentials before anything starts: a key, certificate
 * or pinned CA that cannot be parsed (a truncated copy, a bad disk, a hand
 * edit) is refused here naming the file and how to recover, instead of failing
 * later inside TLS with an OpenSSL message and no file name.
 */
export function loadCredentials(dir: string): AgentCredentials {
  const p = statePaths(dir);
  if (!existsSync(p.identity)) {
    throw new BulkheadError('BK_ERR_NOT_ENROLLED', `no identity in ${dir}; run \`bulkhead-agent enroll --state-dir ${dir} …\` first`);
  }
  const reenroll = (controller = '<controller HOST:PORT>', fingerprint = '<CA fingerprint>') =>
    `enroll this host again: bulkhead-agent enroll --controller ${controller} --token <new join token> --ca-fingerprint ${fingerprint} --state-dir ${dir}`;
  let identity: AgentIdentity;
  try {
    identity = JSON.parse(readFileSync(p.identity, 'utf8')) as AgentIdentity;
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.identity} is not valid JSON (damaged?); ${reenroll()}`, { cause });
  }
  if (typeof identity !== 'object' || identity === null || !identity.agentId || !identity.controller) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.identity} lacks agentId/controller; ${reenroll()}`);
  }
  if (identity.controllers !== undefined) {
    try {
      if (!Array.isArray(identity.controllers)) throw new BulkheadError('BK_ERR_CONFIG_INVALID', 'controllers is not a list');
      parseControllerList(identity.controllers.map(String));
    } catch (cause) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.identity} has a bad controllers list (${(cause as Error).message}); fix it or ${reenroll()}`, { cause });
    }
  }
  const hint = reenroll(formatControllerList(identityControllers(identity)), identity.caFingerprint || undefined);
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (cause) {
      throw new BulkheadError('BK_ERR_CONFIG_INVALID', `cannot read ${path}: ${(cause as Error).message}; ${hint}`, { cause });
    }
  };
  const mode = statSync(p.key).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.key} is readable by group or others (mode ${mode.toString(8)}); run chmod 600 ${p.key}`);
  }
  const keyPem = read(p.key);
  const certPem = read(p.cert);
  const caPem = read(p.ca);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.key} is not a readable private key (${(cause as Error).message}); ${hint}`, { cause });
  }
  const cert = parseCert(p.cert, certPem, hint);
  parseCert(p.ca, caPem, hint);
  if (!cert.checkPrivateKey(key)) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.cert} is not the certificate of the key in ${p.key}; ${hint}`);
  }
  return { identity, keyPem, certPem, caPem };
}

function parseCert(path: string, pem: string, hint: string): X509Certificate {
  try {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    return new X509Certificate(pem);
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${path} is not a readable certificate (${(cause as Error).message}); ${hint}`, { cause });
  }
}
