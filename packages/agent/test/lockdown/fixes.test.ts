// Lockdown fixes on fixture sockets: off by default, each switchable, only
// tightening, with a record of what changed; dry run; refusals.
import t from 'tap';
import { statSync } from 'node:fs';
import { auditHost } from '../../src/lockdown/audit-host';
import { applyLockdownFixes, LOCKDOWN_FIX_NAMES } from '../../src/lockdown/fixes';
import { GROUPS, HostTree, PASSWD } from './fixtures/host-tree';

const NOW = () => Date.parse('2026-11-28T12:00:00Z');

function modeOf(p: string): string {
  return `0${(statSync(p).mode & 0o7777).toString(8)}`;
}

t.test('nothing runs unless switched on', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, PASSWD);
  const sock = await h.socket('run/docker.sock', 0o666, { uid: 1000, gid: 50 });
  t.same(await applyLockdownFixes({ fixes: {}, hostRoot: h.root }), []);
  t.same(await applyLockdownFixes({ fixes: { dockerSocketMode: false }, hostRoot: h.root }), []);
  t.equal(modeOf(sock), '0666');
  t.same(LOCKDOWN_FIX_NAMES, ['dockerSocketOwnership', 'dockerSocketMode', 'containerdSocketOwnership', 'containerdSocketMode']);
});

t.test('socket to root:docker 0660: audit, fix, re-audit; records say what changed', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, PASSWD);
  const sock = await h.socket('run/docker.sock', 0o666, { uid: 1000, gid: 50 });
  const ctd = await h.socket('run/containerd/containerd.sock', 0o677, { uid: 0, gid: 999 });
  const before = await auditHost({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  const fixable = before.filter((f) => f.fixable);
  t.same(fixable.map((f) => f.id).sort(), ['containerd-socket.group', 'containerd-socket.mode', 'docker-socket.group', 'docker-socket.mode', 'docker-socket.owner']);
  const wanted = Object.fromEntries(fixable.map((f) => [f.fix!, true]));
  const dry = await applyLockdownFixes({ fixes: wanted, hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', dryRun: true, now: NOW });
  t.ok(dry.every((r) => r.dryRun && r.changed), 'dry run reports changes');
  t.match(dry[0]!.message, /^dockerSocketOwnership: would chown alice:staff → root:docker on \/var\/run\/docker\.sock$/);
  t.equal(modeOf(sock), '0666', 'dry run changes nothing');
  const records = await applyLockdownFixes({ fixes: wanted, hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock', now: NOW });
  t.same(records.map((r) => [r.fix, r.changed, r.before?.owner, r.before?.group, r.before?.mode, r.after?.owner, r.after?.group, r.after?.mode]), [
    ['dockerSocketOwnership', true, 'alice', 'staff', '0666', 'root', 'docker', '0666'],
    ['dockerSocketMode', true, 'root', 'docker', '0666', 'root', 'docker', '0660'],
    ['containerdSocketOwnership', true, 'root', 'docker', '0677', 'root', 'root', '0677'],
    ['containerdSocketMode', true, 'root', 'root', '0677', 'root', 'root', '0660'],
  ]);
  t.ok(records.every((r) => r.at === '2026-11-28T12:00:00.000Z' && r.error === undefined && /docker\.socket|config\.toml/.test(r.persist)));
  t.match(records[0]!.message, /\(.*\/run\/docker\.sock\)$/, 'names the real path behind the /var/run symlink');
  t.equal(modeOf(sock), '0660');
  t.equal(statSync(sock).gid, 999);
  t.equal(statSync(ctd).gid, 0);
  const after = await auditHost({ hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.same(after.filter((f) => f.fixable), [], 're-audit: nothing left to fix');
  const again = await applyLockdownFixes({ fixes: wanted, hostRoot: h.root, dockerSocketPath: '/var/run/docker.sock' });
  t.ok(again.every((r) => !r.changed && /already root:/.test(r.message)), 'idempotent');
});

t.test('the mode fix only tightens: 0600 stays 0600; sticky/setgid bits are cleared', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts(GROUPS, PASSWD);
  const sock = await h.socket('run/docker.sock', 0o600, { uid: 0, gid: 0 });
  const r = await applyLockdownFixes({ fixes: { dockerSocketMode: true }, hostRoot: h.root, dockerSocketPath: '/run/docker.sock' });
  t.equal(r[0]!.changed, false);
  t.equal(modeOf(sock), '0600');
  const s2 = await h.socket('run/d2.sock', 0o3666, { uid: 0, gid: 0 });
  await applyLockdownFixes({ fixes: { dockerSocketMode: true }, hostRoot: h.root, dockerSocketPath: '/run/d2.sock' });
  t.equal(modeOf(s2), '0660');
});

t.test('refusals are recorded: missing path, not a socket, no docker group', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.accounts('root:x:0:\n', PASSWD);
  h.file('run/docker.sock', 'a regular file', 0o666);
  await h.socket('run/other.sock', 0o666, { uid: 0, gid: 0 });
  const a = await applyLockdownFixes({ fixes: { dockerSocketMode: true, containerdSocketMode: true }, hostRoot: h.root, dockerSocketPath: '/run/docker.sock', containerdSocketPath: '/run/nope.sock' });
  t.match(a[0]!.error, /not a socket; refusing/);
  t.equal(modeOf(h.path('run/docker.sock')), '0666', 'a regular file is never touched');
  t.match(a[1]!.error, /does not exist/);
  const b = await applyLockdownFixes({ fixes: { dockerSocketOwnership: true }, hostRoot: h.root, dockerSocketPath: '/run/other.sock' });
  t.match(b[0]!.error, /group "docker" does not exist/);
  t.equal(b[0]!.changed, false);
  const c = await applyLockdownFixes({ fixes: { dockerSocketOwnership: true }, hostRoot: h.root, dockerSocketPath: '/run/other.sock', dockerGroup: 'root' });
  t.equal(c[0]!.changed, false, 'already root:root');
});
