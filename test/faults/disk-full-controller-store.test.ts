// Fault: the file system under the controller's data directory (its SQLite store, WAL and
// keys) is full. The data directory is a small tmpfs mounted by the test; each round fills
// it while a real agent reports violations (denied requests on its plugin socket), then
// frees the space.
//
// Expected: the controller stays up; it refuses what it cannot store with a clear error (in
// its log, and to the API client as a problem document, not a hang); it acknowledges nothing
// it did not store, so the agent keeps those reports spooled and delivers them once space is
// back — nothing lost, nothing stored twice; reads keep being answered meanwhile.
import t from 'tap';
import { join } from 'node:path';
import { apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
import { alive, denyPrivilegedPolicy, fillFs, freeSpace, isRoot, mountTmpfs, pluginCreate } from '../helpers/fault-inject';
import { recordFault } from '../helpers/fault-report';

const DOCKER_HOST = process.env['BULKHEAD_TEST_DOCKER_HOST'];
const ROUNDS = 3;
const PER_ROUND = 10;

interface Violation {
  id: string;
  containerName: string;
}

t.test('disk full under the controller data directory', { skip: !DOCKER_HOST ? 'needs BULKHEAD_TEST_DOCKER_HOST' : !isRoot() ? 'needs root (mount)' : false }, async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const dataDir = join(root.dir, 'controller');
  mountTmpfs(t, dataDir, '16m');

  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const put = (yaml: string) => apiRequest<{ version: number; code?: string; detail?: string; title?: string }>(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, yaml, 'application/yaml');
  t.equal((await put(denyPrivilegedPolicy('store-full'))).status, 200);
  const agent = await enrollAgent(ctl, root.dir, 'agent', DOCKER_HOST!, ['--audit-interval', '0']);
  const socket = join(agent.stateDir, 'authz.sock');
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('agent online with the policy', async () => (await ctl.get<{ policy: { applied: boolean } | null }>(`/v1/agents/${agent.agentId}`)).body.policy?.applied, 30_000);
  const pid = ctl.daemon.child.pid;

  const names: string[] = [];
  let worstRecover = 0;
  let lost = 0;
  const errors = new Set<string>();
  for (let round = 1; round <= ROUNDS; round++) {
    const filler = fillFs(dataDir);
    const logFrom = ctl.daemon.lines.length;
    for (let i = 0; i < PER_ROUND; i++) {
      const name = `fb-store-r${round}-${i}`;
      t.equal((await pluginCreate(socket, name)).allow, false, `${name} refused by the agent`);
      names.push(name);
    }
    // The store cannot take them: the controller says why and acknowledges nothing.
    // Other errors may come first and are fine (e.g. the audit entry of the previous round's
    // PUT, written after its answer, failing on the disk just filled): the store's own
    // error must say what is wrong.
    const storeFull = (l: Record<string, unknown>): boolean => l['level'] === 50 && /out of disk space/.test(String(l['msg'])) && /SQLITE_FULL|disk is full|ENOSPC/i.test(JSON.stringify(l));
    const failed = await waitFor('the controller logs the failed write', async () => ctl.daemon.lines.slice(logFrom).find(storeFull), 20_000).catch(() => undefined);
    const others = ctl.daemon.lines.slice(logFrom).filter((l) => l['level'] === 50 && !storeFull(l)).map((l) => String(l['msg']));
    t.ok(failed, `round ${round}: the controller's log says the store is out of disk space${others.length ? ` (other errors: ${[...new Set(others)].join('; ')})` : ''}`);
    if (failed) errors.add(String(failed['msg']));
    // The agent is told why, and keeps the reports.
    await agent.daemon.waitForLog((l) => l['msg'] === 'controller link down' && l['code'] === 'BK_ERR_STORE_FULL', 20_000);
    // An API write gets a clear answer, not a hang; reads are still served.
    const w = await put(denyPrivilegedPolicy('store-full', `round ${round}`));
    t.match({ status: w.status, code: w.body.code }, { status: 507, code: 'BK_ERR_STORE_FULL' }, `round ${round}: a write is refused with a problem document naming the cause (${w.status} ${String(w.body.code)}: ${String(w.body.detail ?? w.body.title)})`);
    const r = await ctl.get('/v1/agents');
    t.equal(r.status, 200, `round ${round}: reads are answered with the disk full`);
    t.ok(alive(pid) && ctl.daemon.child.exitCode === null, `round ${round}: the controller is up`);

    freeSpace(filler);
    const freed = Date.now();
    const want = new Set(names);
    const seen = await waitFor(`round ${round}: all reports stored`, async () => {
      const items = (await ctl.get<{ items: Violation[] }>('/v1/violations?limit=500')).body.items;
      const s = new Set(items.filter((v) => want.has(v.containerName)).map((v) => v.containerName));
      return s.size === want.size ? s : undefined;
    }, 60_000).catch(async () => new Set((await ctl.get<{ items: Violation[] }>('/v1/violations?limit=500')).body.items.map((v) => v.containerName)));
    worstRecover = Math.max(worstRecover, Date.now() - freed);
    lost = names.filter((n) => !seen.has(n)).length;
    t.equal(lost, 0, `round ${round}: nothing lost`);
    t.equal((await put(denyPrivilegedPolicy('store-full', `after round ${round}`))).status, 200, `round ${round}: writes work again`);
  }
  t.equal(ctl.daemon.child.pid, pid, 'the same controller process throughout');
  const all = (await ctl.get<{ items: Violation[] }>('/v1/violations?limit=500')).body.items.filter((v) => v.containerName.startsWith('fb-store-'));
  const dup = all.length - new Set(all.map((v) => v.containerName)).size;
  t.equal(dup, 0, 'each report stored once');
  const integrity = await ctl.get<{ status: string }>('/v1/agents');
  t.equal(integrity.status, 200);
  recordFault({
    fault: 'controller data dir full (16 MiB tmpfs, SQLite) while an agent reports',
    injected: ROUNDS,
    produced: names.length,
    delivered: names.length - lost,
    lost,
    recoverMs: worstRecover,
    items: 'violation reports',
    duplicates: dup,
    note: `controller said: ${[...errors].join('; ').slice(0, 160)}`,
  });
});
