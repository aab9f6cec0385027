// Owns rotating the controller CA without re-enrolling agents, in three steps
// an operator runs (each followed by SIGHUP to the running controller):
//
//   start     a new CA (its own subject) is written as ca-next.*; the controller
//             trusts both for agent certificates and sends both to every agent,
//             which stores them as the CAs it trusts for the server certificate.
//   activate  refused until every agent said it trusts the new CA (--force to
//             skip agents that are gone). The new CA becomes ca.*, the old one
//             ca-previous.*; the server certificate is re-issued under the new
//             CA; agents whose certificate is from the old CA renew at once.
//   finish    refused while a non-revoked agent still holds an old-CA
//             certificate (--force to cut them off). The old CA is deleted;
//             an old-CA certificate is refused from then on.
//
// The store records, per agent, the CA of its certificate and the CAs it
// trusts (agents.cert_ca, agents.trusted_cas); `ca status` shows both.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { BulkheadError, certFingerprint, createCa, issueServerCert, writeFileAtomic, writeSecretFile } from '@bulkhead/shared';
import type { AgentRecord, Store } from '../store/store';
import { caCommonName, dataDirPaths, defaultSans, issuedBy, loadPki, type ControllerPki, type RotationPhase } from './data-dir';
import { certSans } from './server-cert';

export interface CaInfo {
  role: 'issuing' | 'next' | 'previous';
  fingerprint: string;
  subject: string;
  notAfter: string;
}

export interface AgentCaState {
  id: string;
  hostname: string;
  status: string;
  /** Fingerprint of the CA of its current certificate; "unknown" for certificates issued before this was recorded. */
  certCa: string;
  /** Whether it said it trusts each CA the controller trusts. */
  trusts: Record<string, boolean>;
}

export interface CaStatus {
  rotation: RotationPhase;
  cas: CaInfo[];
  agents: AgentCaState[];
  /** What to run next, in words. */
  next: string;
}

function caInfo(pem: string, role: CaInfo['role']): CaInfo {
  const x = new X509Certificate(pem);
  return { role, fingerprint: certFingerprint(pem), subject: x.subject.split('\n').join(', '), notAfter: new Date(x.validTo).toISOString() };
}

function cas(pki: ControllerPki): CaInfo[] {
  const out = [caInfo(pki.ca.certPem, 'issuing')];
  for (const pem of pki.trust.slice(1)) out.push(caInfo(pem, pki.rotation === 'started' ? 'next' : 'previous'));
  return out;
}

/** An agent's certificate CA: recorded since migration 0009; older ones predate any rotation, so they are from the CA that was first. */
function certCaOf(a: AgentRecord): string {
  return a.certCa ?? 'unknown';
}

export async function caStatus(dir: string, store: Store): Promise<CaStatus> {
  const pki = loadPki(dir);
  const list = cas(pki);
  const agents = (await store.listAgents()).filter((a) => a.status !== 'revoked').map((a): AgentCaState => ({
    id: a.id,
    hostname: a.hostname,
    status: a.status,
    certCa: certCaOf(a),
    trusts: Object.fromEntries(list.map((c) => [c.fingerprint, (a.trustedCas ?? []).includes(c.fingerprint)])),
  }));
  const next = pki.rotation === 'none'
    ? 'no rotation in progress; `ca rotate start` begins one'
    : pki.rotation === 'started'
      ? `${agents.filter((a) => !a.trusts[list[1]!.fingerprint]).length} agent(s) do not trust the new CA yet; \`ca rotate activate\` once none are left`
      : `${agents.filter((a) => a.certCa !== pki.caFingerprint).length} agent(s) still hold a certificate from the old CA; \`ca rotate finish\` once none are left`;
  return { rotation: pki.rotation, cas: list, agents, next };
}

export async function rotateStart(dir: string): Promise<{ next: CaInfo }> {
  const pki = loadPki(dir);
  if (pki.rotation !== 'none') throw new BulkheadError('BK_ERR_CONFLICT', `a CA rotation is already ${pki.rotation} in ${dir}; run \`bulkhead-controller ca status --data-dir ${dir}\``);
  const p = dataDirPaths(dir);
  const ca = await createCa(caCommonName());
  writeSecretFile(p.caNextKey, ca.keyPem);
  writeFileAtomic(p.caNextCert, ca.certPem);
  return { next: caInfo(ca.certPem, 'next') };
}

export interface ActivateResult {
  issuing: CaInfo;
  previous: CaInfo;
  serverCertificate: { fingerprint: string; sans: string[] };
  /** Agents that did not say they trust the new CA (activated anyway with --force). */
  notTrusting: AgentCaState[];
}

export async function rotateActivate(dir: string, store: Store, o: { force?: boolean; extraSans?: string[] } = {}): Promise<ActivateResult> {
  const pki = loadPki(dir);
  if (pki.rotation !== 'started') throw new BulkheadError('BK_ERR_CONFLICT', `nothing to activate: the CA rotation in ${dir} is ${pki.rotation === 'none' ? 'not started (`ca rotate start`)' : 'already activated (`ca rotate finish` is next)'}`);
  const status = await caStatus(dir, store);
  const nextFp = certFingerprint(pki.trust[1]!);
  const notTrusting = status.agents.filter((a) => !a.trusts[nextFp]);
  if (notTrusting.length > 0 && !o.force) {
    throw new BulkheadError(
      'BK_ERR_CONFLICT',
      `${notTrusting.length} agent(s) have not said they trust the new CA: ${describeAgents(notTrusting)}. Once the new CA issues the server certificate they cannot connect until enrolled again. ` +
        'Wait until they connect to a controller that was sent SIGHUP after `ca rotate start`, or pass --force to leave them behind.',
    );
  }
  const p = dataDirPaths(dir);
  const next = { keyPem: readFileSync(p.caNextKey, 'utf8'), certPem: pki.trust[1]! };
  // Old CA aside first, then the new one in place: each write is atomic, and
  // loadPki refuses a torn ca.key/ca.crt pair rather than issuing with it.
  writeSecretFile(p.caPreviousKey, pki.ca.keyPem);
  writeFileAtomic(p.caPreviousCert, pki.ca.certPem);
  writeSecretFile(p.caKey, next.keyPem);
  writeFileAtomic(p.caCert, next.certPem);
  for (const f of [p.caNextKey, p.caNextCert]) if (existsSync(f)) unlinkSync(f);
  const sans = [...new Set([...certSans(pki.server.certPem), ...defaultSans(o.extraSans ?? [])])];
  const server = await issueServerCert({ ca: next, sans });
  writeSecretFile(p.serverKey, server.keyPem);
  writeFileAtomic(p.serverCert, server.certPem);
  return { issuing: caInfo(next.certPem, 'issuing'), previous: caInfo(pki.ca.certPem, 'previous'), serverCertificate: { fingerprint: certFingerprint(server.certPem), sans }, notTrusting };
}

export interface FinishResult {
  retired: CaInfo;
  /** Agents still on the old CA, cut off with --force. */
  cutOff: AgentCaState[];
}

export async function rotateFinish(dir: string, store: Store, o: { force?: boolean } = {}): Promise<FinishResult> {
  const pki = loadPki(dir);
  if (pki.rotation !== 'activated') throw new BulkheadError('BK_ERR_CONFLICT', `nothing to finish: the CA rotation in ${dir} is ${pki.rotation === 'none' ? 'not started' : 'not activated yet (`ca rotate activate`)'}`);
  const status = await caStatus(dir, store);
  const behind = status.agents.filter((a) => a.certCa !== pki.caFingerprint);
  if (behind.length > 0 && !o.force) {
    throw new BulkheadError(
      'BK_ERR_CONFLICT',
      `${behind.length} agent(s) still hold a certificate from the old CA: ${describeAgents(behind)}. They renew when they next connect; ` +
        'once the old CA is retired they are refused until enrolled again. Wait, revoke them, or pass --force to cut them off.',
    );
  }
  // A server certificate from the CA being retired (installed with `cert install` while both
  // were trusted) would leave a controller that cannot start again: refuse first.
  if (!issuedBy(pki.server.certPem, pki.ca.certPem)) {
    throw new BulkheadError('BK_ERR_CONFLICT', `the server certificate is not issued by the new CA ${pki.caFingerprint}; retiring the old CA would leave a controller that cannot start: run \`bulkhead-controller cert reissue --data-dir ${dir}\` (and SIGHUP) first`);
  }
  const p = dataDirPaths(dir);
  const retired = caInfo(pki.trust[1]!, 'previous');
  for (const f of [p.caPreviousKey, p.caPreviousCert]) if (existsSync(f)) unlinkSync(f);
  return { retired, cutOff: behind };
}

function describeAgents(list: AgentCaState[]): string {
  const shown = list.slice(0, 10).map((a) => `${a.id} (${a.hostname}, ${a.status})`).join(', ');
  return list.length > 10 ? `${shown} and ${list.length - 10} more` : shown;
}
