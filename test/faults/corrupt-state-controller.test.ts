// Fault: a file the controller reads at start is truncated or overwritten with garbage. A real
// data directory is built (init, an agent enrolled, violations acknowledged), the controller
// stopped, and for every file and damage the real controller is started on a damaged copy.
//
// Expected: it refuses to start, at once, with an error naming the file — without changing
// the store, so restoring the file brings back everything it had acknowledged; never a
// stack trace, never a controller that starts on an empty store as if freshly installed.
import t from 'tap';
import { cpSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CONTROLLER_BIN, Daemon, apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
import { denyPrivilegedPolicy, pluginCreate } from '../helpers/fault-inject';
import { recordFault } from '../helpers/fault-report';

const DOCKER_HOST = process.env['BULKHEAD_TEST_DOCKER_HOST'];
const REPORTS = 5;

type Damage = 'empty' | 'half' | 'garbage';
const damage = (path: string, how: Damage): void => {
  const size = statSync(path).size;
  if (how === 'empty') truncateSync(path, 0);
  else if (how === 'half') truncateSync(path, Math.max(0, Math.floor(size / 2) - 7));
  else writeFileSync(path, randomBytes(Math.max(size, 256)));
};

const CASES: [string, Damage[], RegExp][] = [
  ['ca.key', ['half', 'garbage'], /ca\.key/],
  ['ca.crt', ['empty', 'garbage'], /ca\.crt/],
  ['server.key', ['half', 'garbage'], /server\.key/],
  ['server.crt', ['half', 'garbage'], /server\.crt/],
  ['token-signing.key', ['empty', 'garbage'], /token-signing\.key/],
  ['bulkhead.db', ['empty', 'half', 'garbage'], /bulkhead\.db/],
];

t.test('damaged controller data files', { skip: !DOCKER_HOST ? 'needs BULKHEAD_TEST_DOCKER_HOST' : false }, async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  t.equal((await apiRequest(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, denyPrivilegedPolicy('corrupt-ctl'), 'application/yaml')).status, 200);
  const agent = await enrollAgent(ctl, root.dir, 'agent', DOCKER_HOST!, ['--audit-interval', '0']);
  agent.start();
  t.teardown(() => agent.stop());
  await waitFor('policy applied', async () => (await ctl.get<{ policy: { applied: boolean } | null }>(`/v1/agents/${agent.agentId}`)).body.policy?.applied, 30_000);
  const names: string[] = [];
  for (let i = 0; i < REPORTS; i++) {
    names.push(`fb-ctl-${i}`);
    t.equal((await pluginCreate(join(agent.stateDir, 'authz.sock'), names[i]!)).allow, false);
  }
  const stored = async (): Promise<Set<string>> => new Set((await ctl.get<{ items: { containerName: string }[] }>('/v1/violations?limit=500')).body.items.map((v) => v.containerName));
  await waitFor('reports stored (acknowledged)', async () => names.every((n) => stored().then((s) => s.has(n))) && (await stored()).size >= REPORTS, 20_000);
  await agent.stop();
  await ctl.stop();
  const dataDir = ctl.dataDir;
  const pristine = join(root.dir, 'pristine');
  cpSync(dataDir, pristine, { recursive: true });

  let injected = 0;
  let worstExitMs = 0;
  for (const [file, hows, names_] of CASES) {
    for (const how of hows) {
      rmSync(dataDir, { recursive: true, force: true });
      cpSync(pristine, dataDir, { recursive: true });
      const path = join(dataDir, file);
      damage(path, how);
      injected++;
      const dbBefore = file === 'bulkhead.db' ? undefined : readFileSync(join(dataDir, 'bulkhead.db'));
      const began = Date.now();
      const d = Daemon.start('controller', CONTROLLER_BIN, ['serve', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0']);
      const outcome = await Promise.race([
        d.exited.then((c) => ({ exited: c })),
        d.waitForLog((l) => l['msg'] === 'controller ready', 15_000).then(() => ({ exited: 'ready' as const }), () => ({ exited: 'hung' as const })),
      ]);
      if (outcome.exited === 'ready' || outcome.exited === 'hung') await d.stop();
      worstExitMs = Math.max(worstExitMs, Date.now() - began);
      const said = d.raw.trim().split('\n').filter((l) => !l.startsWith('{"level":20') && !l.startsWith('{"level":30')).join(' | ').slice(0, 400);
      t.ok(typeof outcome.exited === 'number' && outcome.exited !== 0, `${file} ${how}: refused to start (${String(outcome.exited)}): ${said}`);
      t.match(d.raw, names_, `${file} ${how}: the error names the file`);
      t.notMatch(d.raw, /^\s+at .+:\d+:\d+\)?$/m, `${file} ${how}: no stack trace`);
      if (dbBefore) t.same(readFileSync(join(dataDir, 'bulkhead.db')), dbBefore, `${file} ${how}: the store is untouched`);
    }
  }

  // The undamaged data directory still has everything the controller acknowledged.
  rmSync(dataDir, { recursive: true, force: true });
  cpSync(pristine, dataDir, { recursive: true });
  await ctl.restart();
  const after = await stored();
  const lost = names.filter((n) => !after.has(n)).length;
  t.equal(lost, 0, 'every acknowledged report is there after restoring');
  recordFault({
    fault: 'controller data files truncated or garbage, controller started on each',
    injected,
    produced: names.length,
    delivered: names.length - lost,
    lost,
    recoverMs: null,
    items: 'acknowledged violation reports',
    note: `each damaged start refused naming the file, slowest exit ${worstExitMs} ms`,
  });
});
