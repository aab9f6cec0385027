// Owns renewing the agent's certificate before it expires. On schedule (see
// cert-renewal-options.ts) it makes a NEW key pair on this host, asks the
// controller for a certificate over the live link, and swaps the files in:
//
//   agent.key.next   new key, 0600, written (temp + rename) before the CSR is sent
//   agent.crt.next   the certificate the controller returned
//   agent.key/.crt → agent.key.prev/.crt.prev, then .next → agent.key/.crt
//
// The link then reconnects with the new pair; the .prev files are removed
// once that stream is welcomed. Enforcement never waits on any of this: it
// does not depend on the link.
import { X509Certificate, createPrivateKey, createPublicKey, createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  BulkheadError, agentIdFromCert, certPublicKeyFingerprint, issuedByOneOf, createCsr, describeCert, parseErrorString, writeFileAtomic, writeSecretFile, type Logger,
} from '@bulkhead/shared';
import { identityControllers, statePaths, type AgentCredentials } from '../state/agent-state';
import { formatControllerList } from '../link/controller-address';
import {
  MAX_TIMER_MS, planRenewal, renewalRetryDelayMs, resolveCertRenewalOptions, type CertRenewalOptions, type ResolvedCertRenewalOptions,
} from './cert-renewal-options';

/** The controller's answer, as the link hands it over. */
export interface RenewalAnswer {
  certificatePem: string;
  notAfterMs: number;
  serial: string;
  error: string;
}

/** What the renewer needs of the link. */
export interface RenewalLink {
  /** True while a stream is established (welcomed). */
  connected(): boolean;
  /** Calls `l` whenever the link becomes connected; returns an unsubscribe. */
  onConnected(l: () => void): () => void;
  /** Sends the CSR on the current stream; resolves with the controller's answer. */
  requestRenewal(csrPem: string, timeoutMs: number): Promise<RenewalAnswer>;
  /** Reconnects with the new credentials. */
  useCredentials(creds: AgentCredentials): void;
}

export interface CertRenewerDeps {
  stateDir: string;
  credentials: AgentCredentials;
  link: RenewalLink;
  logger: Logger;
  options?: CertRenewalOptions;
  now?: () => Date;
  random?: () => number;
}

export function renewalPaths(stateDir: string) {
  const p = statePaths(stateDir);
  return { ...p, nextKey: `${p.key}.next`, nextCert: `${p.cert}.next`, prevKey: `${p.key}.prev`, prevCert: `${p.cert}.prev` };
}

/** The operator's way out once a certificate has expired. */
export function reenrollHint(creds: AgentCredentials, stateDir: string): string {
  return `bulkhead-agent enroll --controller ${formatControllerList(identityControllers(creds.identity))} --token <new join token> --ca-fingerprint ${creds.identity.caFingerprint} --state-dir ${stateDir}`;
}

export class CertRenewer {
  private creds: AgentCredentials;
  private readonly o: ResolvedCertRenewalOptions;
  private readonly now: () => Date;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private failures = 0;
  private running = false;
  private stopped = false;

  constructor(private readonly d: CertRenewerDeps) {
    this.creds = d.credentials;
    this.o = resolveCertRenewalOptions(d.options);
    this.now = d.now ?? (() => new Date());
  }

  get options(): ResolvedCertRenewalOptions {
    return this.o;
  }

  /** The controller sent new trusted CAs (a CA rotation): renewed certificates are checked against them. */
  updateTrust(caPem: string, caFingerprint: string): void {
    this.creds = { ...this.creds, caPem, identity: { ...this.creds.identity, caFingerprint } };
  }

  /** Finishes a swap a crash interrupted, then schedules the next renewal. */
  start(): void {
    this.recoverInterruptedSwap();
    this.unsubscribe = this.d.link.onConnected(() => this.removePrevious());
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.unsubscribe?.();
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const cert = describeCert(this.creds.certPem);
    const plan = planRenewal(cert, this.now(), this.o);
    if (plan.kind === 'expired') {
      const err = new BulkheadError('BK_ERR_CERT_EXPIRED', `the agent certificate (serial ${cert.serial}) expired at ${cert.notAfter.toISOString()}; it can no longer be renewed. Enroll this host again: ${reenrollHint(this.creds, this.d.stateDir)}`);
      this.d.logger.error({ code: err.code, reason: err.message, retryInMs: this.o.expiredRetryMs }, 'agent certificate expired');
      this.arm(this.o.expiredRetryMs, () => this.schedule());
      return;
    }
    if (plan.ms > 0) this.d.logger.info({ serial: cert.serial, notAfter: cert.notAfter.toISOString(), renewAt: new Date(this.now().getTime() + plan.ms).toISOString() }, 'certificate renewal scheduled');
    this.arm(plan.ms, () => this.due());
  }

  /** setTimeout with delays beyond its 24.8-day limit taken in steps (re-planned at each step). */
  private arm(ms: number, fn: () => void): void {
    if (this.stopped) return;
    if (ms > MAX_TIMER_MS) {
      this.timer = setTimeout(() => this.schedule(), MAX_TIMER_MS);
    } else {
      this.timer = setTimeout(fn, ms);
    }
    this.timer.unref();
  }

  /** Renewal is due: now if the link is up, else as soon as it is. */
  private due(): void {
    if (this.stopped || this.running) return;
    if (!this.d.link.connected()) {
      const off = this.d.link.onConnected(() => {
        off();
        this.due();
      });
      return;
    }
    void this.renewNow();
  }

  /** One renewal attempt; on failure it retries with capped, jittered backoff. Exposed for tests. */
  async renewNow(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const creds = await this.renewOnce();
      this.failures = 0;
      this.creds = creds;
      this.d.link.useCredentials(creds);
      this.schedule();
    } catch (err) {
      const e = err instanceof BulkheadError ? err : new BulkheadError('BK_ERR_INTERNAL', `certificate renewal failed: ${(err as Error).message}`, { cause: err });
      const left = describeCert(this.creds.certPem).notAfter.getTime() - this.now().getTime();
      if (left <= 0) {
        this.schedule(); // expired meanwhile: the clear error, slowly
      } else {
        // Never sleep past the expiry: the last attempts happen while the certificate still works.
        const delay = Math.min(renewalRetryDelayMs(this.failures, this.o, this.d.random), Math.max(1000, Math.floor(left / 2)));
        this.failures += 1;
        this.d.logger.warn({ code: e.code, reason: e.message, attempt: this.failures, retryInMs: delay, expiresInMs: left }, 'certificate renewal failed; will retry');
        this.arm(delay, () => this.due());
      }
    } finally {
      this.running = false;
    }
  }

  private async renewOnce(): Promise<AgentCredentials> {
    const p = renewalPaths(this.d.stateDir);
    const { keyPem, csrPem } = await createCsr(hostname());
    // The new key is on disk before anyone sees the CSR; the current key stays untouched.
    writeSecretFile(p.nextKey, keyPem);
    const answer = await this.d.link.requestRenewal(csrPem, this.o.answerTimeoutMs);
    if (answer.error) throw errorFrom(answer.error);
    const certPem = answer.certificatePem;
    this.checkIssued(certPem, keyPem);
    writeFileAtomic(p.nextCert, certPem);
    const creds: AgentCredentials = {
      ...this.creds,
      keyPem,
      certPem,
      identity: { ...this.creds.identity, certNotAfter: describeCert(certPem).notAfter.toISOString() },
    };
    this.swapIn(creds);
    const c = describeCert(certPem);
    this.d.logger.info({ serial: c.serial, notAfter: c.notAfter.toISOString() }, 'certificate renewed; reconnecting with the new certificate');
    return creds;
  }

  /** The controller's certificate must carry our identity and the key we just made. */
  private checkIssued(certPem: string, keyPem: string): void {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certPem);
    } catch (cause) {
      throw new BulkheadError('BK_ERR_PROTOCOL', 'the controller answered the renewal with something that is not a certificate', { cause });
    }
    const id = agentIdFromCert({ subjectaltname: cert.subjectAltName });
    if (id !== this.creds.identity.agentId) throw new BulkheadError('BK_ERR_AGENT_ID_MISMATCH', `renewed certificate names agent "${id ?? ''}", not ${this.creds.identity.agentId}`);
    if (certPublicKeyFingerprint(certPem) !== keyFingerprint(keyPem)) throw new BulkheadError('BK_ERR_PROTOCOL', 'renewed certificate is not for the key this agent generated');
    if (!issuedByOneOf(certPem, this.creds.caPem)) throw new BulkheadError('BK_ERR_PROTOCOL', 'renewed certificate is not signed by a controller CA this agent trusts');
  }

  /** Old pair → .prev, new pair → in place, identity.json last. Each step is a rename. */
  private swapIn(creds: AgentCredentials): void {
    const p = renewalPaths(this.d.stateDir);
    if (existsSync(p.key)) renameSync(p.key, p.prevKey);
    if (existsSync(p.cert)) renameSync(p.cert, p.prevCert);
    renameSync(p.nextKey, p.key);
    renameSync(p.nextCert, p.cert);
    writeFileAtomic(p.identity, JSON.stringify(creds.identity, null, 2) + '\n', 0o600);
  }

  /**
   * A crash between writing agent.crt.next and the renames leaves the new
   * pair beside the old one — and the controller already accepts only the
   * new one. Finish the swap when the pair matches; drop a key without a certificate.
   */
  private recoverInterruptedSwap(): void {
    const p = renewalPaths(this.d.stateDir);
    try {
      if (existsSync(p.nextKey) && existsSync(p.nextCert)) {
        const keyPem = readFileSync(p.nextKey, 'utf8');
        const certPem = readFileSync(p.nextCert, 'utf8');
        this.checkIssued(certPem, keyPem);
        if (describeCert(certPem).notAfter.getTime() > describeCert(this.creds.certPem).notAfter.getTime()) {
          const creds = { ...this.creds, keyPem, certPem, identity: { ...this.creds.identity, certNotAfter: describeCert(certPem).notAfter.toISOString() } };
          this.swapIn(creds);
          this.creds = creds;
          this.d.logger.warn({ serial: describeCert(certPem).serial }, 'finished a certificate swap that was interrupted; reconnecting with the renewed certificate');
          this.d.link.useCredentials(creds);
          return;
        }
      }
      for (const f of [p.nextKey, p.nextCert]) if (existsSync(f)) unlinkSync(f);
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message }, 'leftover files of an interrupted certificate renewal could not be used; renewing again');
      for (const f of [p.nextKey, p.nextCert]) if (existsSync(f)) unlinkSync(f);
    }
  }

  /** The new certificate is in use: the old pair is no longer needed. */
  private removePrevious(): void {
    const p = renewalPaths(this.d.stateDir);
    const current = describeCert(this.creds.certPem).serial;
    try {
      if (existsSync(p.prevCert) && describeCert(readFileSync(p.prevCert, 'utf8')).serial === current) return; // never the one in use
      for (const f of [p.prevKey, p.prevCert]) if (existsSync(f)) unlinkSync(f);
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message }, 'removing the previous agent key failed');
    }
  }
}

function keyFingerprint(keyPem: string): string {
  const spki = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  return 'sha256:' + createHash('sha256').update(spki).digest('hex');
}

function errorFrom(s: string): BulkheadError {
  const parsed = parseErrorString(s);
  return parsed ? new BulkheadError(parsed.code, parsed.message) : new BulkheadError('BK_ERR_INTERNAL', s);
}
