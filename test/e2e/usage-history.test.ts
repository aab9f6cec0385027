// End to end, recent usage history: real processes only — a private dockerd, the built agent
// (cgroup read every second, reports every 2 s) and the built controller
// (`serve --usage-history-interval 1s`) with its HTTPS API and the built `bulkhead` CLI:
//   - a container whose memory grows (so every report carries it) gets ≥ 2 history points
//     from the server after a few report intervals, oldest first, with growing memory;
//   - GET /v1/containers/:agent/:id/usage is scoped like the container: a key limited to
//     another project gets 404, one limited to the container's project gets the points;
//   - `bulkhead containers usage` prints them; removing the container empties the history.
// Timing appears only as generous hang bounds.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { LABEL_ARGS, removeLabelledContainers, useEngine } from '../helpers/engine';
import { apiRequest, OPS_BIN, run, waitFor } from '../helpers/processes';
import { enrollAgent, startController, tempRoot } from './stack';

const HANG_MS = 90_000;

interface History {
  agentId: string;
  containerId: string;
  intervalSeconds: number;
  windowSeconds: number;
  points: Array<{ at: string; cpuPercent: number | null; memoryBytes: number | null; pids: number | null }>;
}

t.test('usage history: kept by the controller from real agent reports, scoped like the container, shown by the CLI', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine));
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir, { heartbeatInterval: '500ms', offlineAfter: '5s', serveArgs: ['--usage-history-interval', '1s'] });
  t.teardown(() => ctl.stop());
  const agent = await enrollAgent(ctl, root.dir, 'agent', engine.dockerHost, ['--no-authz', '--usage-interval', '1s', '--usage-report-interval', '2s']);
  agent.start();
  t.teardown(() => agent.stop());
  await agent.daemon.waitForLog((l) => l['msg'] === 'usage monitor started');

  const run_ = randomBytes(4).toString('hex');
  const name = `bk-history-${run_}`;
  // 2 MiB more shared memory a second: the agent's report filter sends it every report.
  const started = await engine.docker([
    'run', '-d', '--network', 'none', '--name', name, ...LABEL_ARGS, '--label', 'bulkhead.project=shop', '--tmpfs', '/fill:size=200m',
    engine.image, 'sh', '-c', 'i=0; while [ $i -lt 90 ]; do dd if=/dev/zero of=/fill/f$i bs=1M count=2 2>/dev/null; i=$((i+1)); sleep 1; done; sleep 600',
  ]);
  t.equal(started.code, 0, `started: ${started.stderr.trim()}`);
  const id = started.stdout.trim();

  const hist = (key?: string) => ctl.get<History & { code?: string }>(`/v1/containers/${agent.agentId}/${name}/usage`, key);
  const h = await waitFor('≥ 3 points from the server', async () => {
    const r = await hist();
    return r.status === 200 && r.body.points.length >= 3 ? r.body : undefined;
  }, HANG_MS, 500);
  t.match(h, { agentId: agent.agentId, containerId: id, intervalSeconds: 1, windowSeconds: 60 });
  const times = h.points.map((p) => Date.parse(p.at));
  t.ok(times.every((x, i) => i === 0 || x > times[i - 1]!), `oldest first, at most one per second: ${h.points.map((p) => p.at.slice(11, 19)).join(' ')}`);
  t.ok(h.points.every((p) => p.memoryBytes !== null && p.memoryBytes > 0 && p.pids !== null && p.pids >= 1), 'memory and pids in every point');
  t.ok(h.points.at(-1)!.memoryBytes! > h.points[0]!.memoryBytes!, `memory grows across the points (${h.points[0]!.memoryBytes} → ${h.points.at(-1)!.memoryBytes})`);
  t.ok(Math.abs(Date.now() - times.at(-1)!) < HANG_MS, 'the newest point is recent');

  // Scope: project-scoped keys minted through the API.
  const mint = async (projects: string[]) => {
    const r = await apiRequest<{ key: string }>(ctl.apiBase, 'POST', '/v1/keys', ctl.caPem, ctl.adminKey, JSON.stringify({ name: `viewer-${projects.join('-')}`, role: 'viewer', projects }));
    // The answer holds the key's secret: only its status goes into the test's output.
    t.equal(r.status, 201, `key for ${projects.join(',')} minted`);
    return r.body.key;
  };
  const other = await mint(['payments']);
  const denied = await hist(other);
  t.equal(denied.status, 404, "a key of another project: 404, as for the container's detail");
  t.equal(denied.body.code, 'BK_ERR_NOT_FOUND');
  t.equal((await ctl.get(`/v1/containers/${agent.agentId}/${name}`, other)).status, 404, 'the detail answers the same');
  const own = await hist(await mint(['shop']));
  t.equal(own.status, 200, 'a key of its project: 200');
  t.ok(own.body.points.length >= 3, 'with the points');

  // The CLI, as shipped.
  const cli = await run(OPS_BIN, ['containers', 'usage', agent.agentId, name], { BULKHEAD_API: ctl.apiBase, BULKHEAD_CA: ctl.caFile, BULKHEAD_API_KEY: ctl.adminKey });
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, new RegExp(`Container ${id.slice(0, 12)} on ${agent.agentId}: \\d+ points, one per 1 s, last 1 min kept`));
  t.match(cli.stdout, /^Memory: +[▁▂▃▄▅▆▇█]{3,}/m, 'a memory sparkline of ≥ 3 points');
  t.match(cli.stdout, /TIME \(UTC\) +CPU +MEM/, 'and the table');

  // Removed: its history goes with it.
  t.equal((await engine.docker(['rm', '-f', id])).code, 0);
  await waitFor('history gone', async () => {
    const r = await hist();
    return r.status === 404 || (r.status === 200 && r.body.points.length === 0);
  }, HANG_MS, 500);
  t.pass('removed: no history');
});
