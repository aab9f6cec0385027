// /proc parsing (listening TCP sockets, fds, cmdline), dockerd flag parsing,
// and permission-bit comparison — the building blocks of the lockdown audit.
import t from 'tap';
import { parseDaemonHost, parseDockerdFlags, parseGoBool } from '../../src/lockdown/dockerd-flags';
import { describeBits, excessBits, formatMode, isAtMost, parseMode } from '../../src/lockdown/file-mode';
import { parseGroupFile, parsePasswdFile } from '../../src/lockdown/groups';
import { isLoopback, listeningTcp, parseProcNetTcp, pidsByName, readCmdline, socketInodes, tcpListenersOf, unixSocketInodes } from '../../src/lockdown/proc';
import { HostTree, TCP_HEADER, TCP6_HEADER, tcp6Line, tcpLine } from './fixtures/host-tree';

t.test('parseProcNetTcp reads LISTEN sockets, v4 and v6, with inodes', async (t) => {
  const v4 = TCP_HEADER + tcpLine(0, '0.0.0.0', 2375, 111) + tcpLine(1, '127.0.0.1', 2376, 222) + tcpLine(2, '10.1.2.3', 80, 333, '01');
  t.same(parseProcNetTcp(v4, 4), [
    { address: '0.0.0.0', port: 2375, family: 4, inode: 111 },
    { address: '127.0.0.1', port: 2376, family: 4, inode: 222 },
  ], 'ESTABLISHED (01) is not a listener');
  const v6 = TCP6_HEADER + tcp6Line(0, '::', 2377, 444) + tcp6Line(1, '::1', 2378, 555)
    + `  2: 0000000000000000FFFF00000100007F:0929 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1\n`
    + `  3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n`;
  t.same(parseProcNetTcp(v6, 6).map((l) => [l.address, l.port, l.inode]), [
    ['::', 2377, 444],
    ['::1', 2378, 555],
    ['::ffff:127.0.0.1', 2345, 666],
    ['2001:db8::1', 80, 777],
  ]);
  t.same(parseProcNetTcp('garbage\nnot a line\n', 4), []);
  t.same(parseProcNetTcp(`${TCP_HEADER}  0: ZZZZ:0050 00000000:0000 0A 0 0 0 0 0 0 1\n`, 4), [], 'bad hex is skipped');
});

t.test('isLoopback', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', 'localhost']) t.ok(isLoopback(a), a);
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1']) t.notOk(isLoopback(a), a);
});

t.test('process lookups under a fixture /proc', async (t) => {
  const h = new HostTree();
  t.teardown(() => h.close());
  h.process({ pid: 10, comm: 'dockerd', argv: ['/usr/bin/dockerd', '-H', 'fd://'], sockets: [111, 222], tcp: TCP_HEADER + tcpLine(0, '0.0.0.0', 2375, 111) + tcpLine(1, '0.0.0.0', 9999, 999) });
  h.process({ pid: 11, comm: 'containerd', argv: ['containerd'] });
  h.process({ pid: 12, comm: 'dockerd', argv: ['dockerd'] });
  h.file('proc/self', 'not a pid');
  h.file('proc/net/unix', 'Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/docker.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 4243 /run/docker.sock\n0000000000000000: 00000002 00000000 00010000 0001 01 5000 /run/other.sock\n0000000000000000: 00000002 00000000 00010000 0001 01 5001\n');
  const proc = h.path('proc');
  t.same(await pidsByName(proc, 'dockerd'), [10, 12]);
  t.same(await pidsByName(h.path('nope'), 'dockerd'), []);
  t.same(await readCmdline(proc, 10), ['/usr/bin/dockerd', '-H', 'fd://']);
  t.same(await readCmdline(proc, 404), []);
  t.same([...(await socketInodes(proc, 10))].sort(), [111, 222]);
  t.same([...(await socketInodes(proc, 404))], []);
  t.same(await tcpListenersOf(proc, 10), [{ address: '0.0.0.0', port: 2375, family: 4, inode: 111 }], 'only sockets the process holds');
  t.same((await listeningTcp(proc, 10)).length, 2);
  t.same(await listeningTcp(proc, undefined), [], 'no proc/net/tcp → none');
  t.same([...(await unixSocketInodes(proc, '/run/docker.sock'))].sort(), [4242, 4243]);
  t.same([...(await unixSocketInodes(h.path('nope'), '/run/docker.sock'))], []);
});

t.test('parseDockerdFlags: short and long forms, = and separate values, bools, repeats', async (t) => {
  const f = parseDockerdFlags([
    '/usr/sbin/dockerd', '-H', 'fd://', '--host=tcp://0.0.0.0:2375', '-H=unix:///x.sock', '--tlsverify', '--icc=false', '--iptables=false',
    '--insecure-registry', 'reg:5000', '--insecure-registry=reg2:5000', '-D', '--log-level', 'warn', '--live-restore=true', '--userland-proxy=0',
    '--authorization-plugin=authz', '--config-file', '/etc/d.json', '--', 'stray',
  ]);
  t.same(f.all('host'), ['fd://', 'tcp://0.0.0.0:2375', 'unix:///x.sock']);
  t.equal(f.bool('tlsverify'), true);
  t.equal(f.bool('icc'), false);
  t.equal(f.bool('iptables'), false);
  t.equal(f.bool('debug'), true, '-D');
  t.equal(f.bool('live-restore'), true);
  t.equal(f.bool('userland-proxy'), false, '0 is false');
  t.equal(f.bool('tls'), undefined);
  t.same(f.all('insecure-registry'), ['reg:5000', 'reg2:5000']);
  t.equal(f.last('log-level'), 'warn');
  t.equal(f.last('config-file'), '/etc/d.json');
  t.ok(f.has('authorization-plugin'));
  t.notOk(f.has('nope'));
  t.same(f.all('nope'), []);
  const g = parseDockerdFlags(['--data-root', '--debug']);
  t.equal(g.last('data-root'), '', 'a value flag followed by a flag has an empty value');
  t.same(parseDockerdFlags([]).values.size, 0);
  t.equal(parseGoBool('True'), true);
  t.equal(parseGoBool('yes'), false, 'Go does not accept yes');
});

t.test('parseDaemonHost', async (t) => {
  t.same(parseDaemonHost('unix:///var/run/docker.sock'), { raw: 'unix:///var/run/docker.sock', kind: 'unix', path: '/var/run/docker.sock' });
  t.same(parseDaemonHost('unix://'), { raw: 'unix://', kind: 'unix', path: '/var/run/docker.sock' });
  t.same(parseDaemonHost('/run/d.sock').kind, 'unix');
  t.same(parseDaemonHost('tcp://0.0.0.0:2376'), { raw: 'tcp://0.0.0.0:2376', kind: 'tcp', host: '0.0.0.0', port: 2376 });
  t.same(parseDaemonHost('tcp://:2375'), { raw: 'tcp://:2375', kind: 'tcp', host: '', port: 2375 });
  t.same(parseDaemonHost('tcp://[::1]:2375'), { raw: 'tcp://[::1]:2375', kind: 'tcp', host: '::1', port: 2375 });
  t.same(parseDaemonHost('127.0.0.1:2375'), { raw: '127.0.0.1:2375', kind: 'tcp', host: '127.0.0.1', port: 2375 });
  t.same(parseDaemonHost('tcp://host'), { raw: 'tcp://host', kind: 'tcp', host: 'host', port: 2375 });
  t.equal(parseDaemonHost('fd://').kind, 'fd');
  t.equal(parseDaemonHost('ssh://me@host').kind, 'ssh');
  t.equal(parseDaemonHost('npipe:////./pipe/docker').kind, 'npipe');
  t.equal(parseDaemonHost('weird thing').kind, 'other');
});

t.test('permission bits, not numbers: 644 = 0644 ≥ 0600; 0646 and 0744 exceed 0644', async (t) => {
  for (const allowed of [0o644, '644', '0644', '0o644']) {
    t.ok(isAtMost(0o644, allowed), `0644 ≤ ${String(allowed)}`);
    t.ok(isAtMost(0o600, allowed), `0600 ≤ ${String(allowed)}`);
    t.ok(isAtMost(0o400, allowed), `0400 ≤ ${String(allowed)}`);
    t.ok(isAtMost(0o640, allowed), `0640 ≤ ${String(allowed)}`);
    t.notOk(isAtMost(0o646, allowed), `0646 has other-write`);
    t.notOk(isAtMost(0o744, allowed), `0744 has owner-execute (digit 7 > 6 but numerically 744 > 644 is the wrong reason)`);
    t.notOk(isAtMost(0o611, allowed), `0611 is numerically < 644 but has execute bits`);
    t.notOk(isAtMost(0o4644, allowed), 'setuid is beyond 0644');
  }
  t.equal(excessBits(0o666, 0o660), 0o006);
  t.same(describeBits(0o006), ['other read', 'other write']);
  t.same(describeBits(0o7000), ['setuid', 'setgid', 'sticky']);
  t.equal(formatMode(0o660), '0660');
  t.equal(formatMode(0o4755), '04755');
  t.equal(formatMode(0o7), '0007');
  t.equal(parseMode(0o17777), 0o7777, 'numbers are masked to permission bits');
  t.throws(() => parseMode('rw-r--r--'), /not an octal mode/);
  t.throws(() => parseMode('0999'), /not an octal mode/);
});

t.test('group and passwd parsing', async (t) => {
  t.same(parseGroupFile('# c\n\ndocker:x:999:a, b ,\nbad\nnogid:x:x:\n'), [{ name: 'docker', gid: 999, members: ['a', 'b'] }]);
  t.same(parsePasswdFile('# c\nroot:x:0:0::/:/bin/sh\nbad:x:y:0\nshort:x\n'), [{ name: 'root', uid: 0, gid: 0 }]);
});
