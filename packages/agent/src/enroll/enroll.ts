// Owns enrollment: trade a one-time join token for an agent certificate.
//
// The agent does not know the controller CA yet, only its fingerprint. So it
// first opens a bare TLS connection, takes the CA certificate from the chain
// the controller presents, checks its SHA-256 against the pinned fingerprint
// and that it signed the server certificate; only then does it make the gRPC
// Enroll call with that CA as its only trust root (normal hostname checks).
// The private key is generated here and never leaves the host.
//
// Several addresses (replicas of one controller) are tried in order; the next one only when
// this one cannot be reached (BK_ERR_CONTROLLER_UNAVAILABLE). Every other answer — a wrong
// fingerprint, a used token — would be the same from every replica, so it stops the
// enrollment. All addresses are saved, so `run` rotates through them.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import {
  BulkheadError, VERSION, createCsr, loadProto, normalizeFingerprint, parseErrorString, type EnrollResponse__Output, type Logger,
} from '@bulkhead/shared';
import { controllersIdentity, saveCredentials, type AgentCredentials } from '../state/agent-state';
import { formatControllerList, parseControllerList, splitController } from '../link/controller-address';
import { controllerCredentials } from '../link/controller-credentials';

export interface EnrollOptions {
  /** HOST:PORT, or several (a list, or comma-separated): replicas of one controller, tried in order. */
  controller: string | readonly string[];
  token: string;
  caFingerprint: string;
  stateDir: string;
  hostname?: string;
  timeoutMs?: number;
  logger?: Logger;
}

function toPem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END CERTIFICATE-----\n`;
}

/** Fetches the controller's CA over TLS and verifies it against the pin. */
export async function fetchPinnedCa(controller: string, fingerprint: string, timeoutMs = 10_000): Promise<string> {
  const pin = normalizeFingerprint(fingerprint);
  const { host, port } = splitController(controller);
  const chain = await new Promise<tls.DetailedPeerCertificate>((resolve, reject) => {
    const sock = tls.connect({ host, port, servername: isIP(host) ? undefined : host, rejectUnauthorized: false, ALPNProtocols: ['h2'], timeout: timeoutMs });
    sock.once('secureConnect', () => {
      const c = sock.getPeerCertificate(true);
      sock.destroy();
      resolve(c);
    });
    sock.once('timeout', () => {
      sock.destroy();
      reject(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `TLS handshake with ${controller} timed out`));
    });
    sock.once('error', (err) => reject(new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `cannot reach controller ${controller}: ${err.message}`, { cause: err })));
  });
  if (!chain.raw) throw new BulkheadError('BK_ERR_CA_PIN_MISMATCH', `${controller} presented no certificate`);
  const server = new X509Certificate(chain.raw);
  const seen: string[] = [];
  for (let c: tls.DetailedPeerCertificate | undefined = chain; c?.raw; c = c.issuerCertificate === c ? undefined : c.issuerCertificate) {
    const x = new X509Certificate(c.raw);
    const fp = 'sha256:' + x.fingerprint256.replace(/:/g, '').toLowerCase();
    seen.push(fp);
    if (fp === pin) {
      if (!x.ca) throw new BulkheadError('BK_ERR_CA_PIN_MISMATCH', 'the pinned certificate is not a CA certificate');
      if (!server.verify(x.publicKey)) throw new BulkheadError('BK_ERR_CA_PIN_MISMATCH', 'the server certificate was not issued by the pinned CA');
      return toPem(c.raw);
    }
  }
  throw new BulkheadError('BK_ERR_CA_PIN_MISMATCH', `no certificate presented by ${controller} matches ${pin} (saw ${seen.join(', ')}); check --ca-fingerprint against \`bulkhead-controller ca-fingerprint\``);
}

export async function enroll(opts: EnrollOptions): Promise<AgentCredentials> {
  const controllers = parseControllerList(opts.controller);
  const failures: string[] = [];
  for (const controller of controllers) {
    try {
      return await enrollAt(controller, controllers, opts);
    } catch (err) {
      if (!(err instanceof BulkheadError) || err.code !== 'BK_ERR_CONTROLLER_UNAVAILABLE' || controllers.length === 1) throw err;
      failures.push(err.message);
      opts.logger?.warn({ controller, reason: err.message }, 'enrollment: controller unreachable; trying the next address');
    }
  }
  throw new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `no controller of ${formatControllerList(controllers)} could be reached: ${failures.join('; ')}`);
}

/** Enrolls at one address; `all` is what is saved. */
async function enrollAt(controller: string, all: string[], opts: EnrollOptions): Promise<AgentCredentials> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const caPem = await fetchPinnedCa(controller, opts.caFingerprint, timeoutMs);
  const host = opts.hostname ?? osHostname();
  const { keyPem, csrPem } = await createCsr(host);
  const proto = loadProto();
  const client = new proto.bulkhead.v1.Enrollment(controller, controllerCredentials(caPem));
  try {
    const res = await new Promise<EnrollResponse__Output>((resolve, reject) => {
      client.Enroll(
        { token: opts.token, csrPem, hostname: host, agentVersion: VERSION },
        { deadline: Date.now() + timeoutMs },
        (err, r) => (err ? reject(err) : r ? resolve(r) : reject(new Error('empty enrollment response'))),
      );
    }).catch((err: grpc.ServiceError | Error) => {
      const parsed = 'details' in err ? parseErrorString(err.details) : undefined;
      if (parsed) throw new BulkheadError(parsed.code, parsed.message);
      throw new BulkheadError('BK_ERR_CONTROLLER_UNAVAILABLE', `enrollment call to ${controller} failed: ${err.message}`, { cause: err });
    });
    if (new X509Certificate(res.caPem).fingerprint256 !== new X509Certificate(caPem).fingerprint256) {
      throw new BulkheadError('BK_ERR_CA_PIN_MISMATCH', 'controller returned a CA other than the pinned one');
    }
    const creds: AgentCredentials = {
      identity: {
        agentId: res.agentId,
        ...controllersIdentity(all),
        caFingerprint: normalizeFingerprint(opts.caFingerprint),
        enrolledAt: new Date().toISOString(),
        certNotAfter: new Date(res.notAfterMs).toISOString(),
      },
      keyPem,
      certPem: res.certificatePem,
      caPem,
    };
    saveCredentials(opts.stateDir, creds);
    opts.logger?.info({ agentId: res.agentId, controller, controllers: all }, 'enrolled');
    return creds;
  } finally {
    client.close();
  }
}
