// The controller's gRPC port against clients that hold it or hammer it:
// connections that never finish TLS or never send the HTTP/2 preface are
// dropped after their bounds (and the descriptors come back) while a real
// Enroll keeps answering; Enroll checks the token before it parses a CSR,
// limits attempts per client address with RESOURCE_EXHAUSTED, and refuses a
// request over its small size limit. Everything runs on 127.0.0.1.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCsr, createLogger, loadProto, parseErrorString } from '../../packages/shared/src/index';
import { initPki, type ControllerPki } from '../../packages/controller/src/pki/data-dir';
import { openStore } from '../../packages/controller/src/store/open-store';
import { startGrpcServer, type GrpcServerOptions, type RunningGrpcServer } from '../../packages/controller/src/grpc/grpc-server';
import { createJoinToken } from '../../packages/controller/src/enrollment/join-tokens';
import type { Store } from '../../packages/controller/src/store/store';
import { recordBadInput } from '../helpers/bad-input-report';

const silent = createLogger({ name: 'test', level: 'silent' });

interface Stack {
  pki: ControllerPki;
  store: Store;
  server: RunningGrpcServer;
  enroll: (req: { token: string; csrPem: string; hostname?: string }) => Promise<{ code: number; details: string; ms: number; agentId?: string }>;
}

async function stack(t: tap.Test, extra: Partial<GrpcServerOptions> = {}): Promise<Stack> {
  const dir = t.testdir();
  const pki = await initPki(join(dir, 'ctl'), ['localhost', '127.0.0.1']);
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'ctl', 'bulkhead.db') });
  const server = await startGrpcServer({ listen: '127.0.0.1:0', store, pki, logger: silent, ...extra });
  const proto = loadProto();
  const client = new proto.bulkhead.v1.Enrollment(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(pki.ca.certPem)));
  t.teardown(async () => {
    client.close();
    await server.shutdown();
    await store.close();
  });
  const enroll: Stack['enroll'] = (req) =>
    new Promise((resolve) => {
      const started = Date.now();
      client.Enroll({ token: req.token, csrPem: req.csrPem, hostname: req.hostname ?? 'web-01', agentVersion: 'test' }, { deadline: Date.now() + 10_000 }, (err, res) => {
        const ms = Date.now() - started;
        if (err) resolve({ code: err.code, details: err.details, ms });
        else resolve({ code: grpc.status.OK, details: '', ms, agentId: res!.agentId });
      });
    });
  return { pki, store, server, enroll };
}

const fdCount = (): number => readdirSync('/proc/self/fd').length;

function closed(s: Socket): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => s.once('close', () => resolve(Date.now() - started)));
}

const UNKNOWN_TOKEN = `bkj_${'0'.repeat(16)}_${'A'.repeat(43)}`;

t.test('connections that say nothing are dropped; Enroll keeps answering meanwhile', async (t) => {
  const s = await stack(t, { idleConnectionMs: 1000, handshakeTimeoutMs: 1000 });
  // Warm the canary's channel so its own connection is not what we time.
  await s.enroll({ token: UNKNOWN_TOKEN, csrPem: 'x' });
  const before = fdCount();

  // 25 TCP connections that never start TLS, 25 that finish TLS (ALPN h2) and never send the preface.
  const raw = Array.from({ length: 25 }, () => netConnect(s.server.port, '127.0.0.1'));
  const tlsUp = await Promise.all(
    Array.from({ length: 25 }, () => new Promise<Socket>((resolve, reject) => {
      const c = tlsConnect({ host: '127.0.0.1', port: s.server.port, ALPNProtocols: ['h2'], ca: s.pki.ca.certPem, servername: 'localhost' }, () => resolve(c));
      c.on('error', reject);
    })),
  );
  const all = [...raw, ...tlsUp];
  for (const c of all) {
    c.on('error', () => undefined);
    c.resume(); // read (and drop) what the server sends, so its FIN is seen
  }
  const closes = all.map(closed);
  t.ok(fdCount() >= before + 50, `50 connections held open (fds ${before} → ${fdCount()})`);

  // While they are held, a real Enroll still gets its refusal quickly.
  const canary = await s.enroll({ token: UNKNOWN_TOKEN, csrPem: 'x' });
  t.equal(canary.code, grpc.status.UNAUTHENTICATED, 'canary Enroll answered');
  // Quickly, not after the held connections: 250 ms alone, up to ~1 s under CI load.
  t.ok(canary.ms < 2500, `canary answered in ${canary.ms} ms (< 2500; the held connections last 5 s+)`);

  const waited = await Promise.race([
    Promise.all(closes),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000)),
  ]);
  t.not(waited, 'timeout', 'every silent connection was closed by the server within 5 s');
  // grpc-js checks idleness on a timer of the same period, so an idle session lives up to twice its bound.
  if (waited !== 'timeout') t.ok(Math.max(...waited) < 3000, `last one closed after ${Math.max(...waited)} ms (bounds 1 s; idle checks may take 2)`);
  // Measured before any client-side destroy(): the server closed them all.
  await new Promise((r) => setTimeout(r, 100));
  t.ok(fdCount() <= before + 2, `descriptors came back (${before} → ${fdCount()})`);
  const last = waited === 'timeout' ? null : Math.max(...waited);
  recordBadInput({
    category: 'gRPC framing', input: '25 TCP connections without TLS + 25 TLS without the HTTP/2 preface', expected: 'closed within 1-2 s; Enroll answers',
    got: last === null ? 'not closed within 5 s' : `closed, last after ${last} ms`, refusedAsDocumented: last !== null && last < 3000, ms: last, canaryMs: canary.ms, stalled: canary.ms >= 250,
  });
  for (const c of all) c.destroy();
});

t.test('Enroll checks the token before the CSR, and a bad CSR leaves the token usable', async (t) => {
  const s = await stack(t);
  // An unknown token with a CSR that would take effort to judge: the token decides.
  const bad = await s.enroll({ token: UNKNOWN_TOKEN, csrPem: '-----BEGIN CERTIFICATE REQUEST-----\n' + 'A'.repeat(4000) + '\n-----END CERTIFICATE REQUEST-----\n' });
  t.equal(bad.code, grpc.status.UNAUTHENTICATED);
  t.equal(parseErrorString(bad.details)?.code, 'BK_ERR_TOKEN_INVALID', 'refused for the token, not the CSR');
  recordBadInput({
    category: 'gRPC framing', input: 'Enroll with an unknown token and a 4 KB garbage CSR', expected: 'UNAUTHENTICATED BK_ERR_TOKEN_INVALID',
    got: `${grpc.status[bad.code]} ${parseErrorString(bad.details)?.code ?? ''}`, refusedAsDocumented: parseErrorString(bad.details)?.code === 'BK_ERR_TOKEN_INVALID', ms: bad.ms, canaryMs: null, stalled: false,
  });

  const { token } = await createJoinToken(s.store, 60_000, new Date());
  const garbled = await s.enroll({ token, csrPem: 'not a csr' });
  t.equal(parseErrorString(garbled.details)?.code, 'BK_ERR_CSR_INVALID', 'a live token with a bad CSR: the CSR is refused');
  const { csrPem } = await createCsr('web-01');
  const ok = await s.enroll({ token, csrPem });
  t.equal(ok.code, grpc.status.OK, 'the token was not burnt by the bad CSR');
  t.match(ok.agentId, /^agt_/);
  const again = await s.enroll({ token, csrPem });
  t.equal(parseErrorString(again.details)?.code, 'BK_ERR_TOKEN_USED', 'and it is single-use');
});

t.test('Enroll attempts are limited per client address', async (t) => {
  const s = await stack(t, { enrollment: { perAddress: 5, windowMs: 60_000 } });
  for (let i = 0; i < 5; i++) {
    const r = await s.enroll({ token: UNKNOWN_TOKEN, csrPem: 'x' });
    t.equal(r.code, grpc.status.UNAUTHENTICATED, `attempt ${i + 1} judged on its token`);
  }
  const limited = await s.enroll({ token: UNKNOWN_TOKEN, csrPem: 'x' });
  t.equal(limited.code, grpc.status.RESOURCE_EXHAUSTED, 'sixth attempt: RESOURCE_EXHAUSTED');
  t.equal(parseErrorString(limited.details)?.code, 'BK_ERR_RATE_LIMITED');
  t.match(limited.details, /at most 5 per 60 s; retry in \d+ s/, 'the message names the limit and the wait');
  recordBadInput({
    category: 'gRPC framing', input: '6 Enroll attempts from one address (limit 5)', expected: 'RESOURCE_EXHAUSTED BK_ERR_RATE_LIMITED',
    got: `${grpc.status[limited.code]} ${parseErrorString(limited.details)?.code ?? ''}`, refusedAsDocumented: limited.code === grpc.status.RESOURCE_EXHAUSTED, ms: limited.ms, canaryMs: null, stalled: false,
  });
  const { token } = await createJoinToken(s.store, 60_000, new Date());
  const { csrPem } = await createCsr('web-02');
  const good = await s.enroll({ token, csrPem });
  t.equal(good.code, grpc.status.RESOURCE_EXHAUSTED, 'even a good token waits out the window from that address');
});

t.test('Enroll refuses a request over its size limit without decoding it', async (t) => {
  const s = await stack(t);
  const { token } = await createJoinToken(s.store, 60_000, new Date());
  const big = await s.enroll({ token, csrPem: 'x'.repeat(20 * 1024) });
  t.equal(big.code, grpc.status.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED');
  t.equal(parseErrorString(big.details)?.code, 'BK_ERR_TOO_LARGE');
  t.match(big.details, /the limit is 16384 bytes/);
  recordBadInput({
    category: 'gRPC framing', input: 'Enroll of 20 KiB (limit 16 KiB)', expected: 'RESOURCE_EXHAUSTED BK_ERR_TOO_LARGE',
    got: `${grpc.status[big.code]} ${parseErrorString(big.details)?.code ?? ''}`, refusedAsDocumented: big.code === grpc.status.RESOURCE_EXHAUSTED, ms: big.ms, canaryMs: null, stalled: false,
  });
  const { csrPem } = await createCsr('web-03');
  t.equal((await s.enroll({ token, csrPem })).code, grpc.status.OK, 'a normal request with the same token still enrolls');
});
