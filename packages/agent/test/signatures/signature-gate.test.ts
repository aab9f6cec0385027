// The signature gate and the authz decider's use of it, with a stand-in
// verifier that answers what each case needs (the real verifier against a
// real registry and real cosign/skopeo signatures: test/e2e/image-signature.test.ts).
// What is checked here: which rules ask for a verdict, that a cached verdict
// keeps the create synchronous, that an uncached one is awaited within the
// deadline, that key files are read (and a missing one fails closed), and
// that monitor rules are verified for the report after the answer.
import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import type Dockerode from 'dockerode';
import { createLogger, parsePolicy, type SignatureRequirement, type SignatureVerdict } from '@bulkhead/shared';
import { AuthzDecider, type AuthzDecisionReport } from '../../src/authz/authz-decider';
import { parseAuthzRequest, type AuthzDecision } from '../../src/authz/plugin-server';
import type { PolicyState } from '../../src/policy/policy-holder';
import { SignatureGate, type VerifierLike } from '../../src/signatures/signature-gate';

const logger = createLogger({ name: 'signature-gate-test', level: 'silent' });
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const REG = '127.0.0.1:5999';

function policy(mode: 'enforce' | 'monitor', keyLine: string, extra = ''): PolicyState {
  const p = parsePolicy(`
apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: sig }
spec:
  rules:
    - id: images.signed
      description: signed
      severity: critical
      mode: ${mode}
      action: { type: stop }
      scope: { images: ["${REG}/*"] }
      check:
        type: image-signature
        keys: [${keyLine}]
${extra}
`, 'sig.yaml');
  return { policy: p, scans: new Map(), version: 1, source: 'bundle', sha256: 'x', projectLabel: 'bulkhead.project' };
}

const IMAGES: Record<string, Partial<Dockerode.ImageInspectInfo>> = {
  [`${REG}/shop/web:1`]: { Id: 'sha256:web1', RepoDigests: [`${REG}/shop/web@${D1}`], Config: { User: '1000', Env: [] } as never },
  [`${REG}/shop/web:2`]: { Id: 'sha256:web2', RepoDigests: [`${REG}/shop/web@${D2}`], Config: { User: '1000', Env: [] } as never },
  [`${REG}/shop/local:1`]: { Id: 'sha256:local', RepoDigests: [], Config: { User: '1000', Env: [] } as never },
  'other.example/x:1': { Id: 'sha256:other', RepoDigests: [], Config: { User: '1000', Env: [] } as never },
};

class StubVerifier implements VerifierLike {
  cache = new Map<string, SignatureVerdict>();
  calls: { repoDigest: string; req: SignatureRequirement; deadline: number | undefined }[] = [];
  delayMs = 0;
  answer: (repoDigest: string) => SignatureVerdict['status'] = (rd) => (rd.endsWith(D1) ? 'verified' : 'unsigned');
  peek(repoDigest: string): SignatureVerdict | undefined {
    return this.cache.get(repoDigest);
  }
  async verify(repoDigest: string, req: SignatureRequirement, opts?: { deadline?: number }): Promise<SignatureVerdict> {
    this.calls.push({ repoDigest, req, deadline: opts?.deadline });
    const wait = Math.min(this.delayMs, Math.max(0, (opts?.deadline ?? Infinity) - Date.now()));
    await new Promise((r) => setTimeout(r, wait));
    const status = wait < this.delayMs ? 'unreachable' : this.answer(repoDigest);
    const v: SignatureVerdict = {
      status, repoDigest, signers: status === 'verified' ? [req.keys[0]!.name] : [], checkedAt: Date.now(),
      message: status === 'unreachable' ? 'registry 127.0.0.1:5999 did not answer in time' : `no signature by key ${req.keys[0]!.name} for ${repoDigest}`,
    };
    if (status !== 'unreachable') this.cache.set(repoDigest, v);
    return v;
  }
}

function setup(st: PolicyState, verifier = new StubVerifier(), budget = 1500) {
  const reports: AuthzDecisionReport[] = [];
  const gate = new SignatureGate({ verifier, logger });
  const docker = {
    getImage: (ref: string) => ({
      inspect: async () => {
        const img = IMAGES[ref];
        if (!img) throw Object.assign(new Error('No such image'), { statusCode: 404 });
        return img as Dockerode.ImageInspectInfo;
      },
    }),
    getContainer: () => ({ inspect: async (): Promise<Dockerode.ContainerInspectInfo> => { throw Object.assign(new Error('No such container'), { statusCode: 404 }); } }),
    getExec: () => ({ inspect: async (): Promise<Dockerode.ExecInspectInfo> => { throw Object.assign(new Error('No such exec'), { statusCode: 404 }); } }),
  };
  const decider = new AuthzDecider({
    policy: () => st, containers: { get: () => undefined, inventory: () => [] }, docker, logger, signatures: gate, signatureBudgetMs: budget,
    onDecision: (r) => reports.push(r),
  });
  const req = (image: string) => parseAuthzRequest(JSON.stringify({
    RequestMethod: 'POST', RequestUri: '/v1.41/containers/create?name=web', RequestBody: Buffer.from(JSON.stringify({ Image: image, User: '1000' })).toString('base64'),
  }));
  const ask = async (image: string): Promise<AuthzDecision> => {
    const d = await decider.decide(req(image));
    await new Promise((r) => setTimeout(r, 20));
    return d;
  };
  return { decider, ask, req, verifier, reports };
}

t.test('enforce: signed allowed, unsigned denied naming the key and the digest; the second create is synchronous', async (t) => {
  const s = setup(policy('enforce', `{ name: prod-signer, pem: ${JSON.stringify(PEM)} }`));
  t.same(await s.ask(`${REG}/shop/web:1`), { allow: true }, 'signed digest allowed');
  t.equal(s.verifier.calls.length, 1, 'verified once');
  t.equal(s.verifier.calls[0]!.repoDigest, `${REG}/shop/web@${D1}`, 'the repo digest of the local image, not the tag');
  t.equal(s.verifier.calls[0]!.req.keys[0]!.pem, PEM);
  const d = await s.ask(`${REG}/shop/web:2`);
  t.equal(d.allow, false, 'unsigned digest denied');
  t.match(d.msg, /\[images\.signed\] \(critical\).*no signature by key prod-signer for 127\.0\.0\.1:5999\/shop\/web@sha256:2{64}/);
  // Both verdicts cached: the image inspect is cached too, so the decision is synchronous.
  const sync = s.decider.decide(s.req(`${REG}/shop/web:1`));
  t.notOk(sync instanceof Promise, 'cached verdict and image: answered synchronously');
  t.same(sync, { allow: true });
  t.equal(s.verifier.calls.length, 2, 'no new verification for cached digests');
  const local = await s.ask(`${REG}/shop/local:1`);
  t.equal(local.allow, false, 'no repo digest: unsigned');
  t.match(local.msg, /no repo digest for its repository/);
  t.equal(s.verifier.calls.length, 2, 'nothing to ask a registry about an image without repo digest');
  t.same(await s.ask('other.example/x:1'), { allow: true }, 'out of scope: not judged');
  t.equal(s.verifier.calls.length, 2);
});

t.test('a registry that does not answer within the budget: refused (fail-closed), not hung', async (t) => {
  const v = new StubVerifier();
  v.delayMs = 5000;
  const s = setup(policy('enforce', `{ name: prod-signer, pem: ${JSON.stringify(PEM)} }`), v, 300);
  const t0 = performance.now();
  const d = await s.ask(`${REG}/shop/web:1`);
  const took = performance.now() - t0;
  t.equal(d.allow, false);
  t.match(d.msg, /could not verify .*did not answer in time \(the rule fails closed\)/);
  t.ok(took < 2000, `answered inside the plugin timeout (${took.toFixed(0)} ms)`);
  t.ok(v.calls[0]!.deadline! - Date.now() < 400, 'the verifier was given the request deadline (wall clock)');
  const open = setup(policy('enforce', `{ name: prod-signer, pem: ${JSON.stringify(PEM)} }`, '        failClosed: false'), v, 300);
  t.same(await open.ask(`${REG}/shop/web:1`), { allow: true }, 'failClosed: false lets it through');
});

t.test('key files: read from the host; a missing one makes the rule fail closed, naming the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-sig-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'release.pub');
  writeFileSync(file, PEM);
  const s = setup(policy('enforce', `{ name: release, file: ${file} }`));
  t.same(await s.ask(`${REG}/shop/web:1`), { allow: true });
  t.equal(s.verifier.calls[0]!.req.keys[0]!.pem, PEM, 'the file content is the key');
  const missing = setup(policy('enforce', `{ name: release, file: ${join(dir, 'nope.pub')} }`));
  const d = await missing.ask(`${REG}/shop/web:1`);
  t.equal(d.allow, false);
  t.match(d.msg, /nope\.pub cannot be read: ENOENT/);
  t.equal(missing.verifier.calls.length, 0, 'no registry call without the key');
});

t.test('monitor: answered at once, verified for the report afterwards', async (t) => {
  const v = new StubVerifier();
  v.delayMs = 50;
  const s = setup(policy('monitor', `{ name: prod-signer, pem: ${JSON.stringify(PEM)} }`), v);
  const d = s.decider.decide(s.req(`${REG}/shop/web:2`));
  t.same(d, { allow: true }, 'allowed synchronously: monitor rules never refuse');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(s.reports.length, 1, 'one report');
  t.equal(s.reports[0]!.denied, false);
  t.match(s.reports[0]!.findings[0]!.message, /no signature by key prod-signer for .*@sha256:2{64}/, 'the report carries the verified verdict, not "not verified in time"');
});

t.test('reaction door: a registry outage keeps the last verdict, or defers; admission still fails closed', async (t) => {
  const v = new StubVerifier();
  const gate = new SignatureGate({ verifier: v, logger });
  const st = policy('enforce', `{ name: prod-signer, pem: ${JSON.stringify(PEM)} }`);
  const facts = (digest: string) => ({
    id: 'c1', name: 'web', imageRef: `${REG}/shop/web:1`, imageId: 'sha256:x', imageDigest: `${REG}/shop/web@${digest}`, repoDigests: { values: [`${REG}/shop/web@${digest}`] },
  }) as never;
  const now = new Date();
  const verified = await gate.resolve(st.policy!, facts(D1), undefined, now, undefined, 'reaction');
  t.equal([...verified.values()][0]!.status, 'verified', 'first: verified against the registry');
  v.cache.clear();
  v.answer = () => 'unreachable' as never;
  v.delayMs = 0;
  // A registry that cannot be asked: the stub answers unreachable.
  v.verify = async (repoDigest: string) => ({ status: 'unreachable', repoDigest, signers: [], message: 'registry down', checkedAt: Date.now() });
  const kept = await gate.resolve(st.policy!, facts(D1), undefined, now, undefined, 'reaction');
  t.equal([...kept.values()][0]!.status, 'verified', 'reaction: the last decisive verdict is kept during the outage');
  const never = await gate.resolve(st.policy!, facts(D2), undefined, now, undefined, 'reaction');
  const nv = [...never.values()][0]!;
  t.equal(nv.status, 'unreachable');
  t.equal(nv.defer, true, 'reaction: never judged before → deferred, not a violation');
  const { evaluate } = await import('@bulkhead/shared');
  t.same(evaluate(st.policy!, { container: facts(D2) }, { now, signatures: never }), [], 'a deferred verdict finds nothing');
  const admission = await gate.resolve(st.policy!, facts(D2), undefined, now);
  t.notOk([...admission.values()][0]!.defer, 'admission never defers');
  t.equal(evaluate(st.policy!, { container: facts(D2) }, { now, signatures: admission }).length, 1, 'and the create is refused (fail closed)');
});
