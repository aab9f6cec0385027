// Owns the agent's state directory: its private key (0600, generated here and
// never sent anywhere), its certificate, the controller CA it pinned, and
// identity.json. Written atomically so a crash mid-enroll leaves no half state.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BulkheadError, writeFileAtomic, writeSecretFile } from '@bulkhead/shared';

export interface AgentIdentity {
  agentId: string;
  /** HOST:PORT of the controller's gRPC listener. */
  controller: string;
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

export function loadCredentials(dir: string): AgentCredentials {
  const p = statePaths(dir);
  if (!existsSync(p.identity)) {
    throw new BulkheadError('BK_ERR_NOT_ENROLLED', `no identity in ${dir}; run \`bulkhead-agent enroll --state-dir ${dir} …\` first`);
  }
  const mode = statSync(p.key).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.key} is readable by group or others (mode ${mode.toString(8)}); run chmod 600 ${p.key}`);
  }
  let identity: AgentIdentity;
  try {
    identity = JSON.parse(readFileSync(p.identity, 'utf8')) as AgentIdentity;
  } catch (cause) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.identity} is not valid JSON`, { cause });
  }
  if (!identity.agentId || !identity.controller) throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${p.identity} lacks agentId/controller`);
  return {
    identity,
    keyPem: readFileSync(p.key, 'utf8'),
    certPem: readFileSync(p.cert, 'utf8'),
    caPem: readFileSync(p.ca, 'utf8'),
  };
}
