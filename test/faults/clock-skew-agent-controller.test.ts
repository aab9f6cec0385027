// Fault: the controller's clock is 10 minutes ahead of or behind the agent's (and the
// operator's). The host clock cannot be changed in a test, so the controller process (init,
// serve, token create) runs under libfaketime (LD_PRELOAD, wall clock only); the agent, the
// test and its API calls keep the real clock.
//
// What a skew can break: certificates (the controller's server certificate and the agent's
// certificate are "not yet valid" for a peer whose clock is behind, unless issuance backdates
// notBefore), join tokens (their TTL is judged by the controller), short-lived API tokens
// (issued and judged by the controller), and the agent's renewal schedule (computed on its
// clock from the certificate's dates). Expected: enrollment, the link, reporting and the API
// all work; nothing produced is lost.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
import { denyPrivilegedPolicy, libfaketime, pluginCreate, skewedClockEnv } from '../helpers/fault-inject';
import { recordFault } from '../helpers/fault-report';

const DOCKER_HOST = process.env['BULKHEAD_TEST_DOCKER_HOST'];
const SKEWS: [string, number][] = [['+10m', 600_000], ['-10m', -600_000]];
const PER_SKEW = 6;

t.test('clock skew of ±10 min between controller and agent', { skip: !DOCKER_HOST ? 'needs BULKHEAD_TEST_DOCKER_HOST' : false }, async (t) => {
  // Not a skip: scripts/test.sh installs it, so its absence is a broken test machine.
  if (!libfaketime()) {
    t.fail('libfaketime is not installed (apt-get install faketime; scripts/test.sh does)');
    return;
  }
  let produced = 0;
  let delivered = 0;
  let worstRecover = 0;
  for (const [skew, skewMs] of SKEWS) {
    await t.test(`controller clock ${skew}`, async (t) => {
      const root = tempRoot();
      t.teardown(root.cleanup);
      const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s', env: skewedClockEnv(skew) });
      t.teardown(() => ctl.stop());
      // The controller really runs on the skewed clock: its CA was made "now" by its clock.
      const caFrom = new Date(new X509Certificate(ctl.caPem).validFrom).getTime();
      t.ok(Math.abs(caFrom + 3_600_000 - (Date.now() + skewMs)) < 120_000 || Math.abs(caFrom + 60_000 - (Date.now() + skewMs)) < 120_000, `the controller's clock is ${skew} (CA valid from ${new Date(caFrom).toISOString()})`);

      t.equal((await apiRequest(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, denyPrivilegedPolicy('skew'), 'application/yaml')).status, 200, 'API key accepted');
      // A short-lived token minted by the skewed controller works for a client on the real clock.
      const tok = await apiRequest<{ token: string; expiresAt: string }>(ctl.apiBase, 'POST', '/v1/auth/token', ctl.caPem, ctl.adminKey, JSON.stringify({ ttl: '5m' }));
      t.equal(tok.status, 200, `token minted: ${JSON.stringify(tok.body).slice(0, 200)}`);
      const who = await ctl.get<{ role?: string }>('/v1/auth/whoami', tok.body.token);
      t.equal(who.status, 200, `a 5-minute token is accepted (${JSON.stringify(who.body).slice(0, 160)})`);

      // Enrollment (a join token with a 5 minute TTL, judged by the skewed clock) and the link.
      const began = Date.now();
      const agent = await enrollAgent(ctl, root.dir, 'agent', DOCKER_HOST!, ['--audit-interval', '0']);
      const cert = new X509Certificate(readFileSync(join(agent.stateDir, 'agent.crt')));
      t.ok(new Date(cert.validFrom).getTime() <= Date.now(), `the agent certificate is valid now on the agent's clock (from ${cert.validFrom})`);
      agent.start();
      t.teardown(() => agent.stop());
      await waitFor('agent connected with the policy applied', async () => (await ctl.get<{ policy: { applied: boolean } | null; status: string }>(`/v1/agents/${agent.agentId}`)).body.policy?.applied, 30_000);
      worstRecover = Math.max(worstRecover, Date.now() - began);
      const renewal = await agent.daemon.waitForLog((l) => l['msg'] === 'certificate renewal scheduled', 10_000);
      const renewAt = Date.parse(String(renewal['renewAt']));
      t.ok(renewAt > Date.now() + 3_600_000, `renewal scheduled in the future, not at once (${String(renewal['renewAt'])})`);

      const names: string[] = [];
      for (let i = 0; i < PER_SKEW; i++) {
        const name = `fb-skew${skewMs > 0 ? 'p' : 'm'}-${i}`;
        t.equal((await pluginCreate(join(agent.stateDir, 'authz.sock'), name)).allow, false);
        names.push(name);
      }
      const seen = await waitFor('reports stored', async () => {
        const items = (await ctl.get<{ items: { containerName: string }[] }>('/v1/violations?limit=100')).body.items;
        const s = new Set(items.map((v) => v.containerName));
        return names.every((n) => s.has(n)) ? s : undefined;
      }, 20_000).catch(() => new Set<string>());
      produced += names.length;
      delivered += names.filter((n) => seen.has(n)).length;
      t.equal(names.filter((n) => !seen.has(n)).length, 0, 'no report lost');
      const agents = await ctl.get<{ items: { id: string; status: string }[] }>('/v1/agents');
      t.equal(agents.body.items.find((a) => a.id === agent.agentId)?.status, 'online', 'the agent is online (heartbeats judged on the controller clock)');
      t.notOk(agent.daemon.lines.some((l) => l['msg'] === 'controller link down'), 'the link never dropped');
    });
  }
  recordFault({
    fault: 'controller clock ±10 min from the agent (libfaketime): enroll, link, reports, API tokens',
    injected: SKEWS.length,
    produced,
    delivered,
    lost: produced - delivered,
    recoverMs: worstRecover,
    items: 'violation reports',
    note: 'recoverMs: from enroll to the agent online with its policy',
  });
});
