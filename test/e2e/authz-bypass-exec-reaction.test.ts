// Authorization-plugin bypasses, end to end — class 11: the REACTION path
// must see execs. A root or privileged `docker exec` that gets past
// prevention (an engine without the plugin, an agent run with --no-authz, or
// any request form the plugin misreads) runs a process with more than its
// container was allowed; before, the agent neither recorded nor acted on it,
// because it judged containers only.
//
// Here dockerd runs WITHOUT the plugin and the real agent with --no-authz
// (test/helpers/authz-bypass-stack.ts, reaction only), so every exec below
// really runs; the policy is the host-safety rules, and the proof is what the
// engine and the controller say afterwards:
//   - rules in monitor mode: a root exec is RECORDED at the controller (the
//     reaction door's source, not authz) and nothing is done to the container;
//   - rules in enforce mode (kill): the container of a root exec is KILLED
//     (inspect: not running, SIGKILL's exit code 137) and the violation
//     recorded with the kill and its result; a privileged exec likewise where
//     this machine can run one at all;
//   - benign controls: an exec as the container's own user, and one as uid
//     1000, change nothing and are never recorded.
import t from 'tap';
import { engineVersions, hostSafetyPolicy, sleep, startBypassStack, type BypassStack, type Violation } from '../helpers/authz-bypass-stack';
import { LABEL_ARGS, TEST_IMAGE, TEST_IMAGE_USER1000 } from '../helpers/engine';
import { waitFor } from '../helpers/processes';

/** The reaction door's sources (the authz door reports "authz"). */
const REACTION_SOURCES = ['exec', 'reaction', 'reconcile'];

async function running(s: BypassStack, tag: string, image = TEST_IMAGE_USER1000): Promise<string> {
  const name = s.name(tag);
  await s.dockerOk(['run', '-d', '--name', name, '--network', 'none', ...LABEL_ARGS, ...(image === TEST_IMAGE ? ['--user', '1000'] : []), image, 'sleep', '300']);
  return name;
}

const recordsFor = async (s: BypassStack, name: string): Promise<Violation[]> => (await s.violations()).filter((v) => v.containerName === name);

function describe(v: Violation): string {
  return `${v.ruleId} ${v.mode} source=${v.source} action=${v.action ? `${v.action.type}/${v.action.result}` : 'none'}`;
}

for (const version of engineVersions()) {
  t.test(`dockerd ${version}: the reaction path sees execs`, async (t) => {
    const s = await startBypassStack(t, { version, authz: false, policy: (x) => hostSafetyPolicy({ ...x, mode: 'monitor' }) });

    await t.test('monitor mode: a root exec is recorded, nothing is done', async (t) => {
      const c = await running(s, 'm-root');
      const ok = await running(s, 'm-ok');
      const ex = await s.docker(['exec', '-d', '-u', '0', c, 'sleep', '300']);
      t.equal(ex.code, 0, `the root exec runs (no plugin on this engine): ${ex.stderr.trim()}`);
      const benign = await s.docker(['exec', ok, 'id', '-u']);
      t.equal(benign.stdout.trim(), '1000', 'control: an exec as the container user runs as uid 1000');
      const rec = await waitFor('the root exec recorded at the controller', async () =>
        (await recordsFor(s, c)).find((v) => v.ruleId === 'hs.root-user'), 8_000, 200).catch(() => undefined);
      t.ok(rec, 'the root exec is recorded at the controller (rule hs.root-user)', { records: (await recordsFor(s, c)).map(describe) });
      if (rec) {
        t.equal(rec.mode, 'monitor', '  in monitor mode');
        t.ok(REACTION_SOURCES.includes(rec.source), `  by the reaction door (source ${rec.source})`);
        t.ok(rec.action === null || rec.action.type === 'none' || rec.action.result === 'skipped', `  and not acted on (${JSON.stringify(rec.action)})`);
      }
      await sleep(500);
      t.equal((await s.container(c))?.State.Status, 'running', 'the container keeps running (monitor mode)');
      t.same((await recordsFor(s, ok)).map(describe), [], 'control: nothing recorded for the container with only a non-root exec');
    });

    await s.applyPolicy(hostSafetyPolicy({ engineSocket: s.engine.socketPath, mode: 'enforce' }));

    await t.test('enforce mode: the container of a root exec is killed, and the kill recorded', async (t) => {
      for (const [tag, user] of [['e-root', '0'], ['e-plus0', '+0'], ['e-name', 'root']] as const) {
        const c = await running(s, tag);
        const before = await s.container(c);
        // No plugin on this engine: dockerd starts it. (The CLI may still report an error:
        // the kill can land while runc is setting the exec up.)
        const ex = await s.docker(['exec', '-d', '-u', user, c, 'sleep', '300']);
        t.comment(`exec -u ${user}: the CLI says exit ${ex.code} ${ex.stderr.trim()}`);
        // The kill and its record together, within a budget that keeps a file that finds
        // nothing inside the runner's per-file timeout (normally both take < 1 s).
        await waitFor(`the container of exec -u ${user} killed and the kill recorded`, async () => {
          const i = await s.container(c);
          return i && !i.State.Running && (await recordsFor(s, c)).some((v) => v.ruleId === 'hs.root-user' && v.mode === 'enforce');
        }, 8_000, 100).catch(() => undefined);
        const now = await s.container(c);
        t.same(now && { running: now.State.Running, exitCode: now.State.ExitCode }, { running: false, exitCode: 137 }, `exec -u ${user}: the container was killed (inspect: not running, SIGKILL)`);
        t.equal(now?.State.StartedAt, before?.State.StartedAt, `exec -u ${user}: and not restarted`);
        const rec = (await recordsFor(s, c)).find((v) => v.ruleId === 'hs.root-user' && v.mode === 'enforce');
        t.ok(rec, `exec -u ${user}: recorded at the controller (rule hs.root-user, enforce)`, { records: (await recordsFor(s, c)).map(describe) });
        if (rec) {
          t.ok(REACTION_SOURCES.includes(rec.source), `  by the reaction door (source ${rec.source})`);
          t.same(rec.action && [rec.action.type, rec.action.result], ['kill', 'ok'], '  with the kill and its result');
        }
      }
    });

    await t.test('enforce mode: a privileged exec', async (t) => {
      const c = await running(s, 'e-priv');
      const ex = await s.docker(['exec', '-d', '--privileged', c, 'sleep', '300']);
      t.comment(`exec --privileged: the CLI says exit ${ex.code} ${ex.stderr.trim()}`);
      await waitFor('the container of the privileged exec killed and the kill recorded', async () => {
        const i = await s.container(c);
        return i && !i.State.Running && (await recordsFor(s, c)).some((v) => v.ruleId === 'hs.privileged' && v.mode === 'enforce');
      }, 8_000, 100).catch(() => undefined);
      const dead = await s.container(c).then((i) => (i && !i.State.Running ? i : undefined));
      if (!dead && /unable to apply caps: operation not permitted/.test(ex.stderr)) {
        // Where dockerd's own capability bounding set is partial (this sandbox drops
        // CAP_SYS_RESOURCE), runc cannot start a privileged process: nothing ran.
        t.comment('a privileged exec cannot run on this machine; only "nothing ran, nothing was done" can be shown');
        t.equal((await s.container(c))?.State.Status, 'running', 'the container is left alone (no privileged process ever ran)');
        return;
      }
      t.equal(dead?.State.ExitCode, 137, 'the container of the privileged exec was killed (inspect: not running, SIGKILL)');
      const rec = (await recordsFor(s, c)).find((v) => v.ruleId === 'hs.privileged' && v.mode === 'enforce');
      t.ok(rec && REACTION_SOURCES.includes(rec.source), `recorded at the controller by the reaction door (rule hs.privileged, source ${rec?.source})`, { records: (await recordsFor(s, c)).map(describe) });
      t.same(rec?.action && [rec.action.type, rec.action.result], ['kill', 'ok'], '  with the kill and its result');
    });

    await t.test('enforce mode: benign execs change nothing', async (t) => {
      const own = await running(s, 'e-ok-own');
      const uid = await running(s, 'e-ok-uid', TEST_IMAGE);
      const a = await s.docker(['exec', own, 'sh', '-c', 'id -u; sleep 1']);
      const b = await s.docker(['exec', '-u', '1000', uid, 'id', '-u']);
      const c = await s.docker(['exec', '-d', '-u', '+1000:0', uid, 'sleep', '300']);
      t.same([a.stdout.trim(), b.stdout.trim(), c.code], ['1000', '1000', 0], 'control: execs as the image user, as uid 1000, as +1000:0 run');
      await sleep(1500);
      const [i1, i2] = [await s.container(own), await s.container(uid)];
      t.same([i1?.State.Status, i2?.State.Status], ['running', 'running'], 'control: both containers keep running (inspect)');
      t.same([...(await recordsFor(s, own)), ...(await recordsFor(s, uid))].map(describe), [], 'control: nothing recorded for them');
    });
  });
}
