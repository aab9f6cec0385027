import t from 'tap';
import { useEngine } from '../helpers/engine';
import { waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from '../e2e/stack';
t.test('dbg', async (t) => {
  const engine = await useEngine(t);
  const root = tempRoot();
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '3s' });
  t.teardown(() => ctl.stop());
  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost, ['--reconcile-interval', '2s']);
  agent.start();
  t.teardown(() => agent.stop());
  const conn = () => agent.daemon.lines.filter((l) => l['msg'] === 'connected to controller').length;
  await waitFor('c', async () => conn() > 0, 30000);
  for (let i = 0; i < 2; i++) {
    const t0 = Date.now();
    ctl.daemon.child.kill('SIGKILL');
    await ctl.restart(() => new Promise((r) => setTimeout(r, 300)));
    const t1 = Date.now();
    const ok = await waitFor('re', async () => conn() > i + 1, 40000).then(() => true, () => false);
    t.comment(`restart ${t1 - t0} ms, reconnect ${ok} ${Date.now() - t1} ms`);
    const ready = ctl.daemon.lines.find((l) => l['msg'] === 'controller ready');
    t.comment(`ctl first line ${JSON.stringify(ctl.daemon.lines[0]).slice(0, 200)} ready ${JSON.stringify(ready).slice(0, 300)}`);
  }
  t.comment(agent.daemon.lines.filter((l) => /link|controller/.test(String(l['msg']))).map((l) => `${l['time']} ${l['msg']} ${String(l['reason'] ?? '')} ${String(l['retryInMs'] ?? '')}`).join('\n'));
});
