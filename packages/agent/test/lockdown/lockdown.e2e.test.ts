// The lockdown audit and fixes against a REAL private dockerd (its own
// socket, chmod'ed here), started with an extra loopback TCP listener so the
// TCP checks see a real command line and a real listening socket, among the
// other engines that may run on this machine.
import t from 'tap';
import { chmodSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createServer } from 'node:net';
import { startPrivateEngine, LABEL_ARGS, removeLabelledContainers } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { auditHost } from '../../src/lockdown/audit-host';
import { applyLockdownFixes } from '../../src/lockdown/fixes';
import { runHostAudit } from '../../src/cis/host-audit';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test('private engine: socket mode finding, TCP listener, socket mount; fix; re-audit', async (t) => {
  const port = await freePort();
  const engine = await startPrivateEngine({ dockerdArgs: ['-H', `tcp://127.0.0.1:${port}`], t });
  t.teardown(() => removeLabelledContainers(engine));
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const sock = engine.socketPath;
  await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `sockmount-${process.pid}`, '-v', `${sock}:/var/run/docker.sock`, engine.image, 'sleep', '300']);

  chmodSync(sock, 0o666);
  const before = await auditHost({ docker, dockerSocketPath: sock });
  const mode = before.find((f) => f.id === 'docker-socket.mode');
  t.equal(mode?.severity, 'critical', 'world-writable socket');
  t.equal(mode?.fix, 'dockerSocketMode');
  const tcp = before.find((f) => f.id === 'daemon.tcp-configured');
  t.equal(tcp?.severity, 'high', 'loopback TCP without TLS');
  t.same((tcp?.evidence as { listening: string[] }).listening, [`127.0.0.1:${port}`], 'the listening socket dockerd holds, read from /proc');
  t.equal((tcp?.evidence as { source: string }).source, 'cmdline');
  const mount = before.find((f) => f.id === 'container.docker-socket');
  t.equal((mount?.evidence as { name: string }).name, `sockmount-${process.pid}`);
  t.equal(mount?.severity, 'critical');
  t.ok(before.some((f) => f.id === 'daemon.no-authorization-plugin'));

  const records = await applyLockdownFixes({ fixes: { dockerSocketOwnership: true, dockerSocketMode: true }, dockerSocketPath: sock });
  t.same(records.map((r) => [r.fix, r.changed, r.before?.mode, r.after?.mode, r.after?.owner, r.after?.group, r.error]), [
    ['dockerSocketOwnership', false, '0666', '0666', 'root', 'docker', undefined],
    ['dockerSocketMode', true, '0666', '0660', 'root', 'docker', undefined],
  ]);
  t.equal(statSync(sock).mode & 0o777, 0o660);
  const after = await auditHost({ docker, dockerSocketPath: sock });
  t.same(after.filter((f) => f.id.startsWith('docker-socket.')), [], 're-audit: the socket is fixed');
  t.ok(after.some((f) => f.id === 'container.docker-socket'), 'the mount is a policy matter, not a fix');
  t.equal((await engine.docker(['version', '--format', '{{.Server.Version}}'])).code, 0, 'the engine still answers on its socket');

  // The periodic run as the agent does it: audit, due fixes, re-audit, CIS, message.
  chmodSync(sock, 0o666);
  const run = await runHostAudit({ docker, dockerSocketPath: sock, fixes: { dockerSocketMode: true, containerdSocketMode: true } });
  t.same(run.fixes.map((r) => [r.fix, r.changed]), [['dockerSocketMode', true]], 'only the fix whose finding is present runs');
  t.notOk(run.lockdown.some((f) => f.id === 'docker-socket.mode'), 'reported findings are the state after the fix');
  const r316 = run.cis.tests.flatMap((x) => x.results).find((x) => x.id === '3.16');
  t.equal(r316?.result, 'PASS');
  t.equal(run.message.score, run.cis.summary.percent);
  t.same(JSON.parse(run.message.fixesJson!).length, 1);
  const quiet = await runHostAudit({ docker, dockerSocketPath: sock });
  t.same(quiet.fixes, [], 'no fixes unless switched on');

  // Its containerd is private too (scripts/engine.sh starts dockerd with --containerd=DIR/ctd/containerd.sock):
  // the audit checks that socket, not /run/containerd/containerd.sock, and the fix acts on it.
  const ctd = join(dirname(sock), 'ctd', 'containerd.sock');
  chmodSync(ctd, 0o666);
  const ctdRun = await runHostAudit({ docker, dockerSocketPath: sock, fixes: { containerdSocketMode: true } });
  t.same(ctdRun.fixes.map((r) => [r.fix, r.path, r.changed]), [['containerdSocketMode', ctd, true]], "the fix acts on dockerd's containerd socket");
  t.equal(statSync(ctd).mode & 0o777, 0o660);
  t.notOk(ctdRun.lockdown.some((f) => f.id.startsWith('containerd-socket.')), 're-audit: fixed, and found (no .missing finding)');
});
