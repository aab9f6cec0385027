// Fault: a file the agent reads at start is truncated or overwritten with garbage (a crash
// mid-copy, a bad disk, a hand edit). The agent's state directory is built for real (enroll,
// a policy bundle, reports spooled while the controller was away), copied, and for every file
// and damage the real agent is started on a damaged copy.
//
// Expected: credentials it cannot run without (identity, key, certificate, pinned CA) stop it
// at once with an error naming the file and what to do — before it changes anything, so the
// spool is untouched; anything else (policy bundle, spool, audit outbox, quarantine and image
// memories) is logged naming the file and the agent starts, reconnects, gets its policy again
// and delivers every intact spooled report. Never a crash with a stack trace.
import t from 'tap';
import { cpSync, existsSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { AGENT_BIN, Daemon, apiRequest, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
import { denyPrivilegedPolicy, pluginCreate } from '../helpers/fault-inject';
import { recordFault } from '../helpers/fault-report';

const DOCKER_HOST = process.env['BULKHEAD_TEST_DOCKER_HOST'];
const SPOOLED = 6;

type Damage = 'empty' | 'half' | 'garbage';
const damage = (path: string, how: Damage): void => {
  const size = existsSync(path) ? statSync(path).size : 0;
  if (how === 'empty') truncateSync(path, 0);
  // Mid-line, as a crash or a short copy leaves it (an exact line boundary would look whole).
  else if (how === 'half') truncateSync(path, Math.max(0, Math.floor(size / 2) - 7));
  else writeFileSync(path, randomBytes(Math.max(size, 256)));
};

/** Files the agent cannot run without: it must stop, saying which and what to do. */
const FATAL: [string, Damage[]][] = [
  ['identity.json', ['empty', 'garbage']],
  ['agent.key', ['half', 'garbage']],
  ['agent.crt', ['half', 'garbage']],
  ['ca.crt', ['empty', 'garbage']],
];
/** Files it recovers from: logged, and it runs on. */
const RECOVERABLE: [string, Damage[], RegExp][] = [
  ['policy-bundle.json', ['half', 'garbage'], /persisted policy bundle is (unreadable|malformed|corrupt)/],
  ['spool/violations.jsonl', ['half', 'garbage'], /spool: ignoring damaged lines/],
  ['spool/audit.json', ['garbage'], /audit outbox: ignoring a damaged report file/],
  ['quarantine.json', ['garbage'], /quarantine memory unreadable/],
  ['holds.json', ['garbage'], /enforcement holds unreadable/],
  ['image-last-used.json', ['garbage'], /image last-use memory unreadable/],
];

t.test('damaged agent state files', { skip: !DOCKER_HOST ? 'needs BULKHEAD_TEST_DOCKER_HOST' : false }, async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  t.equal((await apiRequest(ctl.apiBase, 'PUT', '/v1/policies', ctl.caPem, ctl.adminKey, denyPrivilegedPolicy('corrupt'), 'application/yaml')).status, 200);
  const socket = join(root.dir, 'authz.sock');
  const runArgs = ['--audit-interval', '0', '--authz-socket', socket];
  const agent = await enrollAgent(ctl, root.dir, 'agent', DOCKER_HOST!, runArgs);
  agent.start();
  await waitFor('policy applied', async () => (await ctl.get<{ policy: { applied: boolean } | null }>(`/v1/agents/${agent.agentId}`)).body.policy?.applied, 30_000);
  await agent.daemon.waitForLog((l) => l['msg'] === 'image last-use memory written' || l['msg'] === 'connected to controller', 10_000);
  // Reports made while the controller is away wait in the spool.
  await ctl.stop();
  const names: string[] = [];
  for (let i = 0; i < SPOOLED; i++) {
    names.push(`fb-corrupt-${i}`);
    t.equal((await pluginCreate(socket, names[i]!)).allow, false);
  }
  await agent.stop();
  const pristine = join(root.dir, 'pristine');
  cpSync(agent.stateDir, pristine, { recursive: true });
  t.ok(readFileSync(join(pristine, 'spool/violations.jsonl'), 'utf8').split('\n').filter(Boolean).length >= SPOOLED, 'reports spooled');
  await ctl.restart();

  let injected = 0;
  const start = (): Daemon => Daemon.start('agent', AGENT_BIN, ['run', '--state-dir', agent.stateDir, '--docker-host', DOCKER_HOST!, '--reconcile-interval', '5s', '--metrics-listen', '127.0.0.1:0', ...runArgs]);
  const restore = (): void => {
    rmSync(agent.stateDir, { recursive: true, force: true });
    cpSync(pristine, agent.stateDir, { recursive: true });
  };

  for (const [file, hows] of FATAL) {
    for (const how of hows) {
      restore();
      const path = join(agent.stateDir, file);
      damage(path, how);
      injected++;
      const spoolBefore = readFileSync(join(agent.stateDir, 'spool/violations.jsonl'));
      const d = start();
      const code = await Promise.race([d.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 15_000))]);
      if (code === 'running') await d.stop();
      t.not(code, 'running', `${file} ${how}: the agent stops instead of running on damaged credentials`);
      t.not(code, 0, `${file} ${how}: exit code ${String(code)}`);
      t.ok(d.raw.includes(path), `${file} ${how}: the error names the file: ${d.raw.trim().split('\n').slice(-1)[0]?.slice(0, 300)}`);
      t.notMatch(d.raw, /^\s+at .+:\d+:\d+\)?$/m, `${file} ${how}: no stack trace`);
      t.match(d.raw, /enroll/, `${file} ${how}: says to enroll again`);
      t.same(readFileSync(join(agent.stateDir, 'spool/violations.jsonl')), spoolBefore, `${file} ${how}: the spool is untouched`);
    }
  }

  const recovery: number[] = [];
  for (const [file, hows, said] of RECOVERABLE) {
    for (const how of hows) {
      restore();
      const path = join(agent.stateDir, file);
      damage(path, how);
      injected++;
      const began = Date.now();
      const d = start();
      try {
        const connected = await Promise.race([
          d.waitForLog((l) => l['msg'] === 'connected to controller', 20_000),
          d.exited.then((c) => { throw new Error(`exited with ${String(c)}: ${d.raw.slice(-1500)}`); }),
        ]);
        t.ok(connected, `${file} ${how}: the agent runs and reconnects`);
        const line = d.lines.find((l) => said.test(String(l['msg'])));
        t.ok(line, `${file} ${how}: logged ${String(said)}`);
        t.ok(line && JSON.stringify(line).includes(path), `${file} ${how}: the log line names the file`);
        // The policy comes back from the controller: prevention works again.
        await waitFor(`${file} ${how}: policy enforced again`, async () => (await pluginCreate(socket, `fb-probe-${injected}`)).allow === false, 15_000);
        recovery.push(Date.now() - began);
      } finally {
        await d.stop();
      }
    }
  }

  // Every report spooled before the damage arrived (from the runs whose spool was intact).
  const got = await waitFor('spooled reports at the controller', async () => {
    const items = (await ctl.get<{ items: { containerName: string }[] }>('/v1/violations?limit=500')).body.items;
    const seen = new Set(items.map((v) => v.containerName));
    return names.every((n) => seen.has(n)) ? seen : undefined;
  }, 20_000).catch(async () => new Set((await ctl.get<{ items: { containerName: string }[] }>('/v1/violations?limit=500')).body.items.map((v) => v.containerName)));
  const lost = names.filter((n) => !got.has(n)).length;
  t.equal(lost, 0, 'no spooled report lost');
  recordFault({
    fault: 'agent state files truncated or garbage, agent restarted on each',
    injected,
    produced: names.length,
    delivered: names.length - lost,
    lost,
    recoverMs: Math.max(...recovery),
    items: 'spooled violation reports',
    note: `${FATAL.reduce((n, [, h]) => n + h.length, 0)} damaged credentials refused at start naming the file; ${recovery.length} other damages recovered`,
  });
});
